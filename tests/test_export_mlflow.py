"""``perfstudy export mlflow`` into a real local MLflow tracking store (SQLite), read back with
MlflowClient: params, metrics, per-epoch steps, tags, and idempotence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_report import cli_main, make_store

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # mlflow's SQLAlchemy use


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    try:
        import mlflow  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("mlflow missing in CI: pip install 'perfstudy[mlflow]'")
        pytest.skip("optional extra not installed: pip install 'perfstudy[mlflow]'")
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("mlflow")
    store = make_store(tmp / "t.db")
    store.close()
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    from perfstudy.report.mlflow import export

    first = export(str(tmp / "t.db"), uri)
    client = MlflowClient(tracking_uri=uri)
    return tmp, uri, first, client


def _runs(client, name="t"):
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_every_done_run_once(exported):
    _, _, first, client = exported
    assert (first.experiment, first.logged, first.skipped, first.replaced) == ("t", 27, 0, 0)
    runs = _runs(client)
    keys = [r.data.tags["perfstudy.key"] for r in runs]
    assert len(runs) == 27 and len(set(keys)) == 27
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_params_metrics_tags_and_steps(exported):
    _, _, _, client = exported
    runs = _runs(client)
    shared = next(r for r in runs if r.data.tags["perfstudy.experiments"] == "grid pin")
    p = shared.data.params
    assert (p["model"], p["optimizer"], p["batch_size"], p["lr"], p["seed"]) == \
        ("resnet18", "adam", "16", "0.001", "0")
    m = shared.data.metrics
    assert m["test_acc"] == 99.4 and m["test_acc_last"] == 99.35
    assert m["best_val_acc"] == 99.3 and m["best_epoch"] == 3
    assert m["train_ms"] == 30_000 and m["n_test"] == 10_000
    tags = shared.data.tags
    assert tags["provenance.torch"] == "2.14.1" and tags["provenance.device_name"] == "NVIDIA H200"
    assert tags["mlflow.source.git.commit"] == "abc1234"
    assert tags["extra.engine"] == "resident" and tags["perfstudy.study"] == "t"
    run_id = shared.info.run_id
    val = client.get_metric_history(run_id, "val_acc")
    assert [(h.step, h.value) for h in sorted(val, key=lambda h: h.step)] == \
        [(1, 98.2), (2, 98.9), (3, 99.3)]
    loss = client.get_metric_history(run_id, "train_loss")
    assert [round(h.value, 4) for h in sorted(loss, key=lambda h: h.step)] == [0.5, 0.25, 0.1667]
    secs = client.get_metric_history(run_id, "epoch_seconds")
    assert sorted(h.step for h in secs) == [1, 2, 3] and {h.value for h in secs} == {10.0}
    svm = next(r for r in runs if r.data.params.get("kernel") == "poly"
               and r.data.params["C"] == "10.0")
    assert svm.data.metrics["test_acc"] == 97.6 and svm.data.metrics["n_support"] == 1000
    assert client.get_metric_history(svm.info.run_id, "val_acc") == []
    flops = next(r for r in runs if r.data.tags["perfstudy.kind"] == "flops"
                 and r.data.params["model"] == "resnet50" and r.data.params["variant"] == "native")
    assert flops.data.metrics["macs"] == 1_046_800_000 and flops.data.metrics["params"] == 23.52e6


def test_second_export_logs_nothing_and_replaces_half_runs(exported, capsys):
    tmp, uri, _, client = exported
    assert cli_main(["export", "mlflow", "--tracking-uri", uri, "--db", str(tmp / "t.db")]) == 0
    assert capsys.readouterr().out.strip() == (
        f"mlflow: experiment 't' at {uri}: 0 run(s) logged, 27 already there (skipped)")
    assert len(_runs(client)) == 27
    # an export cut short: the run carries its key but never reached FINISHED
    victim = _runs(client)[0]
    key = victim.data.tags["perfstudy.key"]
    client.set_terminated(victim.info.run_id, "FAILED")
    from perfstudy.report.mlflow import export

    again = export(str(tmp / "t.db"), uri)
    assert (again.logged, again.skipped, again.replaced) == (1, 26, 1)
    runs = _runs(client)
    assert len(runs) == 27
    assert [r.info.status for r in runs if r.data.tags["perfstudy.key"] == key] == ["FINISHED"]


def test_other_experiment_name_and_study(exported):
    tmp, uri, _, client = exported
    from perfstudy.errors import UsageError
    from perfstudy.report.mlflow import export

    out = export(str(tmp / "t.db"), uri, experiment="other", study="t")
    assert (out.experiment, out.logged) == ("other", 27)
    assert len(_runs(client, "other")) == 27
    with pytest.raises(UsageError, match="no study 'x' stored"):
        export(str(tmp / "t.db"), uri, study="x")


def test_without_mlflow_one_line_error(tmp_path):
    """In a process where mlflow cannot be imported, the CLI says how to get it, in one line."""
    code = ("import sys; sys.modules['mlflow'] = None; "
            f"sys.path[:0] = [{str(TESTS)!r}, {str(SRC)!r}]; "
            "from test_report import cli_main; "
            f"sys.exit(cli_main(['export', 'mlflow', '--tracking-uri', 'sqlite:///x.db', "
            f"'--db', {str(tmp_path / 't.db')!r}]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == ("perfstudy: error: MLflow export needs mlflow, which is not "
                                  "installed: pip install 'perfstudy[mlflow]'")
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "t.db").exists()
