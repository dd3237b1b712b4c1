"""Executors: the process pool stores the same results as the local executor, and a failing
run is stored as failed while the study goes on."""

import os

from perfstudy.study import spec as studies
from perfstudy.study.executors import execute_plan
from perfstudy.study.plan import plan
from perfstudy.study.store import Store

STUDY = """
name: pool
experiments:
  svm:
    kind: svm
    fixed: {dataset: mnist, train_subset: 300, eval_subset: 200}
    grid: {kernel: [rbf, poly], C: [1.0, 10.0], degree: [2], backend: [sklearn, torch]}
"""


def run_study(tmp_path, name, executor, workers=None, text=STUDY):
    (tmp_path / f"{name}.yaml").write_text(text)
    s = studies.load(tmp_path / f"{name}.yaml")
    store = Store(tmp_path / f"{name}.db")
    p = plan(s, s.runs(), store)
    out = execute_plan(p, store, executor, workers)
    return out, {r.key: r for r in store.rows()}


def test_pool_matches_local(tmp_path):
    out_local, local = run_study(tmp_path, "local", "local")
    out_pool, pool = run_study(tmp_path, "pool", "pool", workers=2)
    assert out_local.done == out_pool.done == 8 and out_pool.failed == 0
    assert local.keys() == pool.keys()
    for key in local:
        a, b = local[key].result, pool[key].result
        assert pool[key].status == "done"
        assert (a.test_acc, a.val_acc, a.n_support) == (b.test_acc, b.val_acc, b.n_support)
        if os.cpu_count() == 2:  # 2 workers sharing 2 CPUs: one thread each in every pool
            assert b.provenance["torch_threads"] == 1 and b.provenance["blas_threads"] == 1
    assert all(r.pid != os.getpid() for r in pool.values())  # fitted in worker processes


def test_a_failing_run_is_stored_and_the_study_goes_on(tmp_path, monkeypatch):
    # A corrupt data folder for one dataset only: its runs fail, the others succeed.
    text = STUDY.replace("dataset: mnist, ", "").replace("grid: {", "grid: {dataset: "
                                                         "[mnist, fashion-mnist], ")
    bad = tmp_path / "data"
    (bad / "fashion-mnist").mkdir(parents=True)
    (bad / "fashion-mnist" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    real = os.environ["PERFSTUDY_DATA_DIR"]
    (bad / "mnist").symlink_to(os.path.join(real, "mnist"))
    monkeypatch.setenv("PERFSTUDY_DATA_DIR", str(bad))
    out, rows = run_study(tmp_path, "fail", "local", text=text)
    assert out.done == 8 and out.failed == 8
    failed = [r for r in rows.values() if r.status == "failed"]
    assert {r.config["dataset"] for r in failed} == {"fashion-mnist"}
    assert all("DataError" in r.error and "fashion-mnist" in r.error for r in failed)
