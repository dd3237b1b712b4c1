"""The Ray executor on a real local Ray cluster of 3 nodes (``ray.cluster_utils.Cluster``),
shared by these tests: the quick study done once with the local executor's results, a worker
node killed mid-study and a driver killed outright without a run lost, duplicated or left
running, and GPU packs placed on declared (not real) GPUs beside CPU runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import ray.cloudpickle
from ray.cluster_utils import Cluster

from perfstudy.config import DLConfig
from perfstudy.errors import UsageError
from perfstudy.results import RunResult
from perfstudy.study import schedule
from perfstudy.study import spec as studies
from perfstudy.study.executors import execute_plan
from perfstudy.study.executors.ray_cluster import RayExecutor, resources
from perfstudy.study.plan import plan
from perfstudy.study.spec import Run
from perfstudy.study.store import Store

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests/

STUDY = """
name: small
experiments:
  svm:
    kind: svm
    fixed: {dataset: mnist, train_subset: 600, eval_subset: 300, backend: sklearn}
    grid: {kernel: [rbf, poly], C: [1.0, 10.0], degree: [2]}
  flops:
    kind: flops
    grid: {model: [resnet18, resnet32]}
  dl:
    kind: dl
    fixed: {model: resnet32, device: cpu, engine: plain, num_workers: 0, batch_size: 32,
            train_subset: 160, eval_subset: 100, epochs: 1}
    grid: {optimizer: [adam, sgd]}
"""
# 6 runs that each train for 10-20 s on this 2-core machine (3 at a time on the 3 nodes):
# long enough to be caught running, to kill a node or the driver under them
SLOW = """
name: slow
experiments:
  dl:
    kind: dl
    fixed: {model: resnet32, device: cpu, engine: plain, num_workers: 0, batch_size: 16,
            train_subset: 160, eval_subset: 100, epochs: 2}
    grid: {seed: [0, 1, 2, 3, 4, 5]}
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    c.specs = {}  # worker node id -> what it was started with (to start it again)
    for spec in ({"num_cpus": 2}, {"num_cpus": 2, "num_gpus": 2}):  # declared GPUs: no CUDA
        c.specs[c.add_node(**spec).node_id] = spec
    ray.init(address=c.address, logging_level="ERROR")
    yield c
    ray.shutdown()
    c.shutdown()


def _study(tmp_path: Path, text: str, name: str):
    (tmp_path / f"{name}.yaml").write_text(text)
    return studies.load(tmp_path / f"{name}.yaml")


def _run(study, db: Path, executor, **options):
    store = Store(db)
    p = plan(study, study.runs(), store, cuda=False)
    out = execute_plan(p, store, executor, **options)
    return out, {r.key: r for r in store.rows()}


def _rows_so_far(db: Path) -> list:
    """The store's rows while another process writes it (none before it exists)."""
    try:
        return Store(db, create=False).rows()
    except UsageError:  # not there yet, or being created
        return []


def _measured(r) -> tuple:
    res = r.result
    return (res.test_acc, res.val_acc, res.n_support, res.test_acc_last,
            [(e.train_loss, e.val_acc) for e in res.curve], res.extra.get("macs"))


def test_a_study_on_the_cluster_gives_the_local_executor_s_results(cluster, tmp_path):
    study = _study(tmp_path, STUDY, "s")
    out_local, local = _run(study, tmp_path / "local.db", "local")
    ex = RayExecutor(cpus_per_run=2)
    out_ray, remote = _run(study, tmp_path / "ray.db", ex)
    assert out_local.done == out_ray.done == 8 and out_ray.failed == 0
    assert local.keys() == remote.keys()
    for key, row in remote.items():
        assert row.status == "done" and row.attempts == 1, row
        assert row.placement.startswith("node "), row.placement
        # deterministic runs (libsvm, FLOPs counts, a seeded plain loop on 2 threads)
        assert _measured(row) == _measured(local[key]), row.config
    cpu_runs = [r for r in remote.values() if r.kind == "dl"]
    assert {r.result.provenance["torch_threads"] for r in cpu_runs} == {2}
    assert len({r.result.provenance["host"] for r in remote.values()}) == 1  # one machine here


def test_a_worker_node_killed_mid_study_loses_and_duplicates_nothing(cluster, tmp_path):
    study = _study(tmp_path, SLOW, "slow")
    db = tmp_path / "slow.db"
    killed = []

    def kill_a_busy_worker_node():
        """SIGKILL the raylet (and the workers) of the first worker node running a run."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            rows = [r for r in _rows_so_far(db) if r.status == "running"]
            nodes = {n.node_id[:8]: n for n in cluster.worker_nodes}
            busy = [n for r in rows for k, n in nodes.items() if f"({k})" in (r.placement or "")]
            if busy:
                cluster.remove_node(busy[0], allow_graceful=False)
                killed.append(busy[0].node_id)
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_a_busy_worker_node)
    watcher.start()
    try:
        out, rows = _run(study, db, RayExecutor(cpus_per_run=2))
    finally:
        watcher.join()
        for node_id in killed:  # the next tests get the cluster they expect
            spec = cluster.specs.pop(node_id)
            cluster.specs[cluster.add_node(**spec).node_id] = spec
    assert killed, "no run was placed on a worker node"
    assert out.done == 6 and out.failed == 0
    assert len(rows) == 6 and all(r.status == "done" and r.attempts == 1 for r in rows.values())
    assert all(len(r.result.curve) == 2 for r in rows.values())


def _slow_study_command(cluster, tmp_path: Path) -> tuple[Path, list[str]]:
    """The SLOW study's ``perfstudy run`` on the cluster, as a user types it, and its store."""
    (tmp_path / "slow.yaml").write_text(SLOW)
    db = tmp_path / "r.db"
    return db, [sys.executable, "-m", "perfstudy", "run", str(tmp_path / "slow.yaml"), "--db",
                str(db), "--executor", "ray", "--address", cluster.address, "--cpus-per-run",
                "2", "--quiet"]


def test_a_driver_killed_outright_is_resumed_by_the_same_command(cluster, tmp_path):
    db, cmd = _slow_study_command(cluster, tmp_path)
    child = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert child.poll() is None, "the study ended before it was killed"
            statuses = [r.status for r in _rows_so_far(db)]
            if "done" in statuses and "running" in statuses:
                break
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    before = {r.key: r for r in Store(db, create=False).rows()}
    done_before = {k: r.finished_at for k, r in before.items() if r.status == "done"}
    assert done_before and any(r.status == "running" for r in before.values())
    again = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "killed mid-way earlier will be redone" in again.stderr
    after = {r.key: r for r in Store(db, create=False).rows()}
    assert len(after) == 6 and all(r.status == "done" for r in after.values())
    for key, finished in done_before.items():  # done before the kill: not trained again
        assert after[key].finished_at == finished and after[key].attempts == 1
    redone = [r for k, r in after.items() if k not in done_before]
    assert redone and all(r.attempts >= 1 for r in redone)


def test_sigterm_stops_the_study_with_its_runs_interrupted(cluster, tmp_path):
    db, cmd = _slow_study_command(cluster, tmp_path)
    child = subprocess.Popen(cmd, env=os.environ.copy(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            if "running" in [r.status for r in _rows_so_far(db)]:
                break
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "marked interrupted" in err
    rows = Store(db, create=False).rows()
    statuses = [r.status for r in rows]
    assert "interrupted" in statuses and "running" not in statuses
    assert len(rows) == 6  # resuming: as after a killed driver (the test above)


def placed(cfgs, options, data_dir, checkpoint, driver_node, tracker, keys):
    """A stand-in for ``run_task`` that trains nothing: it holds its resources for a moment and
    says where Ray put it (real GPUs are not needed to test where units go)."""
    ctx = ray.get_runtime_context()
    where = f"node {ctx.get_node_id()[:8]} · GPU {ray.get_gpu_ids()}"
    tracker.started.remote(keys, where)
    t0 = time.time()
    time.sleep(1.5)
    extra = {"gpus": ray.get_gpu_ids(), "cpus": ctx.get_assigned_resources().get("CPU"),
             "t0": t0, "t1": time.time(), "pack_size": len(cfgs)}
    return {"results": [RunResult("dl", c.to_dict(), extra=extra) for c in cfgs],
            "where": where}


def test_gpu_packs_go_to_declared_gpus_beside_cpu_runs(cluster, tmp_path):
    gpu = [Run("q1a", DLConfig(model="resnet18", device="cuda", seed=s, lr=lr), "auto")
           for s in range(4) for lr in (1e-3, 1e-4)]
    gpu += [Run("q1a", DLConfig(model="resnet50", device="cuda", seed=s), "auto")
            for s in range(4)]
    cpu = [Run("q2", DLConfig(model="resnet32", device="cpu", seed=s)) for s in range(2)]
    store = Store(tmp_path / "g.db")
    store.add("g", gpu + cpu)
    ex = RayExecutor(free_bytes=2**40, task=placed, cpus_per_run=2)
    out = ex.execute(gpu + cpu, store, None)
    rows = store.rows()
    assert out.done == 14 and out.failed == 0 and all(r.status == "done" for r in rows)
    packs = {r.key: r.result.extra for r in rows if r.config["device"] == "cuda"}
    # 2 GPUs: the two packs (8 ResNet-18s, 4 ResNet-50s), each on one GPU, at the same time
    assert sorted(e["pack_size"] for e in packs.values()) == [4] * 4 + [8] * 8
    spans = {(e["t0"], e["t1"], tuple(e["gpus"])) for e in packs.values()}
    assert sorted(g for _, _, g in spans) == [(0,), (1,)]
    (a0, a1, _), (b0, b1, _) = sorted(spans)
    assert b0 < a1  # overlapping: both GPUs busy at once
    cpu_extra = [r.result.extra for r in rows if r.config["device"] == "cpu"]
    assert all(e["gpus"] == [] and e["cpus"] == 2 for e in cpu_extra)
    assert any(c["t0"] < a1 for c in cpu_extra)  # CPU runs did not wait for the GPU packs
    assert {r.placement.split(" · ")[1] for r in rows if r.config["device"] == "cuda"} == {
        "GPU [0]", "GPU [1]"}


def stalls(cfgs, options, data_dir, checkpoint, driver_node, tracker, keys):
    """A stand-in for ``run_task`` that says it started, then trains for a long while."""
    tracker.started.remote(keys, "somewhere")
    time.sleep(60)


def test_an_interrupted_gpu_unit_is_cancelled_not_retried(cluster, tmp_path):
    from perfstudy.progress import NullProgress
    from perfstudy.study.executors.ray_cluster import _Driver

    unit = [Run("q1a", DLConfig(model="resnet18", device="cuda", seed=s), "auto")
            for s in range(2)]
    store = Store(tmp_path / "i.db")
    store.add("i", unit)
    driver = _Driver(RayExecutor(free_bytes=2**40, task=stalls), store, None, NullProgress(),
                     gpus=2, cpus=6, cpus_per_run=2)
    driver._submit(unit, None)
    (ref,) = driver.inflight
    deadline = time.monotonic() + 60
    while not any(r.placement for r in store.rows()) and time.monotonic() < deadline:
        driver._placements()
        time.sleep(0.2)
    driver._cancel()
    # cancelled before its worker was killed: Ray does not run (or announce) a retry
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=30)
    assert [r.status for r in store.rows()] == ["interrupted"] * 2


def test_without_real_gpus_the_free_memory_read_on_a_gpu_worker_packs_nothing(cluster,
                                                                              tmp_path):
    runs = [Run("q1a", DLConfig(model="resnet18", device="cuda", seed=s), "auto")
            for s in range(3)]
    store = Store(tmp_path / "p.db")
    store.add("p", runs)
    out = RayExecutor(task=placed, cpus_per_run=2).execute(runs, store, None)
    assert out.done == 3 and {r.result.extra["pack_size"] for r in store.rows()} == {1}


def test_packs_are_split_so_that_n_gpus_finish_together():
    r18 = [Run("q", DLConfig(model="resnet18", device="cuda", seed=s), "auto") for s in range(8)]
    r50 = [Run("q", DLConfig(model="resnet50", device="cuda", seed=s), "auto") for s in range(8)]
    units = schedule.units(r50 + r18, free_bytes=2**40)
    assert sorted(map(len, units)) == [8, 8]
    cost = [schedule.unit_work(u) for u in units]
    assert schedule.spread(units, 1) == sorted(units, key=schedule.unit_work, reverse=True)
    for gpus in (2, 4, 8):
        spread = schedule.spread(units, gpus)
        assert sorted(r.key for u in spread for r in u) == sorted(r.key for r in r18 + r50)
        costs = [schedule.unit_work(u) for u in spread]
        assert costs == sorted(costs, reverse=True)  # the costliest first
        finish = schedule.makespan(costs, gpus)
        assert finish <= schedule.makespan(cost, gpus)
        # no single unit holds the GPUs up: the longest is at most the ideal share + one unit
        assert finish <= sum(costs) / gpus + max(costs)
    assert len(schedule.spread(units, 8)) > 2  # 8 GPUs: the packs were split
    assert resources(units[0], gpus=True, cpus_per_run=4) == {"num_gpus": 1, "num_cpus": 1}
    cpu_run = [Run("q", DLConfig(device="cpu"))]
    assert resources(cpu_run, gpus=True, cpus_per_run=4) == {"num_gpus": 0, "num_cpus": 4}


def test_a_worker_without_the_data_fails_its_runs_with_the_data_error(cluster, tmp_path):
    study = _study(tmp_path, STUDY.split("  flops:")[0], "nodata")
    store = Store(tmp_path / "n.db")
    p = plan(study, study.runs(), store, cuda=False)
    t0 = time.monotonic()
    out = RayExecutor(cpus_per_run=2).execute(p.todo, store, str(tmp_path / "absent"))
    assert out.failed == 4 and out.done == 0 and time.monotonic() - t0 < 120
    for r in store.rows():
        first = r.error.splitlines()[0]
        assert r.status == "failed" and first == (
            f"DataError: data dir {tmp_path / 'absent'}: no such folder"), r.error


def test_without_ray_the_executor_is_a_one_line_error(tmp_path):
    quick = str(Path(__file__).parents[1] / "studies/quick.yaml")
    code = ("import sys; sys.modules['ray'] = None\n"
            "from perfstudy.cli import main\n"
            f"raise SystemExit(main(['run', {quick!r}, '--executor', 'ray', '--db', "
            f"{str(tmp_path / 'r.db')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == (
        "perfstudy: error: --executor ray needs Ray: pip install 'perfstudy[ray]'")
    assert not (tmp_path / "r.db").exists()


def test_an_address_that_no_cluster_answers_is_a_one_line_error_and_no_store(tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    quick = str(Path(__file__).parents[1] / "studies/quick.yaml")
    for address, said in ((f"127.0.0.1:{port}", f"cannot reach a Ray cluster at "
                           f"127.0.0.1:{port}: Connection refused"),
                          ("1.2.3.4:99999", "expected auto or HOST:PORT (a port 1-65535)"),
                          ("", "expected auto or HOST:PORT")):
        r = subprocess.run([sys.executable, "-m", "perfstudy", "run", quick, "--executor", "ray",
                            "--address", address, "--db", str(tmp_path / "r.db")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.splitlines()) == 1, \
            r.stderr
        assert not (tmp_path / "r.db").exists()
