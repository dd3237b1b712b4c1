"""The command line: --json documents, error paths (one line, exit 2, no traceback)."""

import json
import os
import subprocess
import sys

import pytest

from perfstudy.cli import main

QUICK = __import__("pathlib").Path(__file__).parents[1] / "studies" / "quick.yaml"


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "perfstudy", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "vgg16"], "invalid choice: 'vgg16'"),
        (["train", "--dataset", "cifar10"], "invalid choice: 'cifar10'"),
        (["train", "--optimizer", "adamw"], "invalid choice: 'adamw'"),
        (["train", "--lr", "0"], "learning rate must be > 0 and <= 100, got 0.0"),
        (["train", "--lr", "-0.1"], "learning rate must be > 0"),
        (["train", "--batch-size", "0"], "batch size must be >= 1 and <= 65536, got 0"),
        (["train", "--batch-size", "ten"], "invalid int value: 'ten'"),
        (["svm", "--kernel", "sigmoid2"], "invalid choice: 'sigmoid2'"),
        (["svm", "--C", "-1"], "C must be > 0"),
        (["svm", "--svm-backend", "cuml"], "unknown SVM backend 'cuml'"),
        (["flops", "--model", "resnet18", "--input", "3x224"], "3x224"),
        (["run", "no-such-study.yaml"], "no-such-study.yaml: no such study file"),
        (["status", "--db", "/nonexistent/x.db"], "no results store here"),
        (["run", str(QUICK), "--executor", "pool", "--compile"],
         "--compile does not apply to --executor pool (it applies to local, ray)"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the error shown without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    r = run_cli("train", "--device", "cuda", "--train-subset", "100", "--epochs", "1")
    assert r.returncode == 2
    assert r.stderr.strip() == ("perfstudy: error: --device cuda asked for, but no CUDA GPU "
                                "is visible to PyTorch")


def test_no_data_and_no_network(tmp_path):
    env = {"PERFSTUDY_DATA_DIR": str(tmp_path / "empty"), "HOME": str(tmp_path),
           # an unroutable proxy: the download fails fast and for certain, as offline
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    r = run_cli("data", "check", "--dataset", "mnist", env=env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "mnist" in r.stderr and "download" in r.stderr.lower()


def test_a_study_without_its_data_stops_before_any_run(tmp_path):
    # one line and exit 2, the runs left pending (not one failed run per config)
    env = {"PERFSTUDY_DATA_DIR": str(tmp_path / "empty"), "HOME": str(tmp_path),
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    db = tmp_path / "r.db"
    r = run_cli("run", str(QUICK), "--only", "q1a", "--db", str(db), "--quiet", env=env)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("perfstudy: error: fashion-mnist not found in ")
    s = run_cli("status", "--db", str(db), "--json", env=env)
    (row,) = json.loads(s.stdout)["experiments"]
    assert row["failed"] == 0 and row["done"] == 0 and row["pending"] == row["runs"] > 0


def test_data_check_json(capsys):
    assert main(["data", "check", "--dataset", "mnist", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["name"] == "mnist"
    assert doc["sizes"] == {"train": 49000, "val": 7000, "test": 14000}
    assert all(f["ok"] for f in doc["files"].values())
    assert doc["files"]["train-images-idx3-ubyte.gz"]["md5"] == "6bbc9ace898e44ae57da46a324031adb"
    assert sum(doc["class_counts"]["test"]) == 14000


def test_flops_json(capsys):
    assert main(["flops", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    r18 = {(r["variant"], tuple(r["input"])): r for r in rows if r["model"] == "resnet18"}
    assert r18[("imagenet", (3, 224, 224))]["macs"] == 1_813_566_464
    assert r18[("native", (1, 28, 28))]["macs"] == 455_800_832
    assert all(r["flops"] == 2 * r["macs"] for r in rows)
    assert {r["model"] for r in rows} == {"resnet18", "resnet32", "resnet50"}


def test_train_json_subprocess_prints_only_json():
    r = run_cli("train", "--dataset", "mnist", "--model", "resnet32", "--batch-size", "32",
                "--optimizer", "adam", "--lr", "1e-3", "--epochs", "2", "--num-workers", "0",
                "--train-subset", "200", "--eval-subset", "100", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout holds the JSON document and nothing else
    assert doc["kind"] == "dl" and doc["config"]["model"] == "resnet32"
    assert [e["epoch"] for e in doc["curve"]] == [1, 2]
    assert doc["best_epoch"] in (1, 2)
    assert doc["extra"]["n_train"] == 200 and doc["extra"]["n_test"] == 100
    assert doc["train_ms"] > 0 and doc["images_per_s"] > 0 and doc["eval_ms"] > 0
    assert doc["provenance"]["device"] == "cpu" and doc["provenance"]["torch"]
    assert 0 <= doc["test_acc"] <= 100 and 0 <= doc["test_acc_last"] <= 100


def test_svm_json(capsys):
    assert main(["svm", "--dataset", "mnist", "--kernel", "rbf", "--C", "10",
                 "--train-subset", "500", "--eval-subset", "300", "--svm-backend", "sklearn",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "svm" and doc["config"]["C"] == 10.0
    assert doc["extra"]["backend"] == "sklearn"
    assert doc["extra"]["n_train"] == 500 and doc["extra"]["n_test"] == 300
    assert 80 < doc["test_acc"] <= 100
    assert 100 < doc["n_support"] <= 500
    assert doc["train_ms"] > 0 and doc["extra"]["predict_test_ms"] > 0


def test_status_eta_splits_a_pack_s_time_among_its_runs(tmp_path, capsys):
    from perfstudy.config import DLConfig
    from perfstudy.results import RunResult
    from perfstudy.study.spec import Run
    from perfstudy.study.store import Store

    store = Store(tmp_path / "r.db")
    cfgs = [DLConfig(lr=10.0 ** -k, seed=s) for k in (2, 3) for s in range(8)]
    store.add("s", [Run("q", c) for c in cfgs])
    for c in cfgs[:8]:  # one pack of 8 done: each run's span is the pack's 400 s
        store.claim(c.key())
        store.finish(c.key(), RunResult(kind="dl", config=c.to_dict(), extra={"pack_size": 8}))
    store.db.execute("UPDATE runs SET started_at=1000, finished_at=1400 WHERE status='done'")
    assert main(["status", "--db", str(tmp_path / "r.db"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["experiments"]
    assert (row["done"], row["pending"]) == (8, 8)
    assert row["eta_s"] == pytest.approx(400.0)  # 8 more runs, a pack's time; not 8 packs'


@pytest.mark.parametrize("argv", [["--help"], ["status", "--db", "store.db"], ["runs", "--help"]])
def test_commands_that_only_read_start_without_torch(tmp_path, argv):
    # torch (with CUDA) takes seconds to import: --help, status and runs must not pay for it
    from perfstudy.config import DLConfig
    from perfstudy.study.spec import Run
    from perfstudy.study.store import Store

    Store(tmp_path / "store.db").add("s", [Run("e", DLConfig())])
    code = ("import sys; from perfstudy.cli import main\n"
            f"try: main({argv!r})\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'sklearn', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]


def test_without_a_terminal_each_finished_run_is_one_line(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("experiments:\n  f:\n    kind: flops\n    grid: {model: [resnet18, "
                     "resnet32]}\n")
    r = run_cli("run", str(study), "--db", str(tmp_path / "r.db"))
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("[")]
    assert lines == ["[1/2] done   f · model=resnet18 variant=native",
                     "[2/2] done   f · model=resnet32 variant=native"], r.stderr
    assert "\x1b[" not in r.stderr  # no terminal escape codes in a log
    quiet = run_cli("run", str(study), "--db", str(tmp_path / "q.db"), "--quiet")
    assert not [x for x in quiet.stderr.splitlines() if x.startswith("[")]


def test_runs_shows_a_few_columns_and_more_on_request(tmp_path, capsys):
    from perfstudy.config import DLConfig
    from perfstudy.study.spec import Run
    from perfstudy.study.store import Store

    store = Store(tmp_path / "r.db")
    store.add("s", [Run("e", DLConfig(lr=lr)) for lr in (1e-3, 1e-4)])
    store.close()
    assert main(["runs", "--db", str(tmp_path / "r.db"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and len(rows[0]) > 30  # json and csv: every column
    assert main(["runs", "--db", str(tmp_path / "r.db"), "--columns", "key,lr,status",
                 "--format", "json"]) == 0
    assert [list(r) for r in json.loads(capsys.readouterr().out)] == [["key", "lr", "status"]] * 2
    assert main(["runs", "--db", str(tmp_path / "r.db")]) == 0
    header = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("┃"))
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "key", "experiments", "status", "lr"]  # what differs, and no result yet


def test_runs_filter_on_a_column_the_runs_lack_is_an_error(tmp_path, capsys):
    from perfstudy.config import DLConfig
    from perfstudy.study.spec import Run
    from perfstudy.study.store import Store

    store = Store(tmp_path / "r.db")
    store.add("s", [Run("e", DLConfig(lr=lr)) for lr in (1e-3, 1e-4)])
    store.close()
    db = str(tmp_path / "r.db")
    assert main(["runs", "--db", db, "--filter", "experiments=e", "--filter", "lr=0.0001",
                 "--format", "json"]) == 0
    assert [r["lr"] for r in json.loads(capsys.readouterr().out)] == [1e-4]
    assert main(["runs", "--db", db, "--filter", "experiment=e"]) == 2
    err = capsys.readouterr().err
    assert "--filter: no column 'experiment' (the experiments a run belongs to: " \
        "experiments=NAME)" in err and len(err.splitlines()) == 1
