"""The dry plan of a study's GPU work on N GPUs (``perfstudy run --dry-run --gpus N``), timed by
the packs measured on the H200 in docs/results/seed-h200/seed.db."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from perfstudy.study import gpu_plan, schedule
from perfstudy.study import spec as studies
from perfstudy.study.executors.ray_cluster import on_gpu
from perfstudy.study.store import Store

ROOT = Path(__file__).resolve().parents[1]
H200 = ROOT / "docs/results/seed-h200/seed.db"
H200_GIB = 139


def _units(only):
    runs = [r for r in studies.load(ROOT / "studies/seed.yaml", only=only).runs()
            if on_gpu(r.config, True)]
    return schedule.units(runs, None, H200_GIB * 2**30)


def test_a_measured_pack_is_planned_at_its_measured_wall_time():
    rates = gpu_plan.measured_rates(Store(H200, create=False).rows())
    b16 = [u for u in _units(["q1a"]) if u[0].config.model == "resnet50"
           and u[0].config.batch_size == 16]
    assert len(b16) == 1 and len(b16[0]) == 8
    (slot,) = gpu_plan.plan_gpus(b16, 1, rates)
    assert slot.measured_rate
    # the median of the two ResNet-50 batch-16 packs measured in the store: q1a's pack of 8
    # for 10 epochs, 573.21 s of wall time, and q1a_5_epochs' pack of 4 for 5 epochs, 153.46 s,
    # which is 2 x 2**0.55 times less work by the cost model
    assert slot.seconds == pytest.approx((573.21 + 153.46 * 2 * 2**schedule.PACK_SCALING) / 2,
                                         abs=0.05)


def test_more_gpus_finish_sooner_and_share_the_work():
    rates = gpu_plan.measured_rates(Store(H200, create=False).rows())
    units = _units(["q1a", "q1a_5_epochs"])
    ends = {}
    for n in (1, 2, 4):
        slots = gpu_plan.plan_gpus(units, n, rates)
        assert sorted(r.key for s in slots for r in s.unit) == sorted(
            r.key for u in units for r in u)  # every run once
        assert {s.gpu for s in slots} == set(range(n))
        ends[n] = max(s.ends for s in slots)
    one = sum(s.seconds for s in gpu_plan.plan_gpus(units, 1, rates))
    assert ends[1] == pytest.approx(one)
    assert one / 2 <= ends[2] < ends[1] and one / 4 <= ends[4] < ends[2]
    # without measurements: work only, no seconds
    assert all(s.seconds is None and s.work > 0 for s in gpu_plan.plan_gpus(units, 2, {}))


def _cli(*args):
    cmd = [sys.executable, "-m", "perfstudy", "run", str(ROOT / "studies/seed.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_the_command_prints_the_plan_and_refuses_bad_input():
    out = _cli("--dry-run", "--gpus", "2", "--timings", str(H200), "--only", "q1a")
    assert out.returncode == 0, out.stderr
    assert "GPU plan: 32 runs, in 4 units on 2 GPU(s) of 139 GiB" in out.stdout
    assert "estimated GPU wall time" in out.stdout and "the GPUs busy" in out.stdout
    # on 8 GPUs the packs are split: the header counts the units planned
    out = _cli("--dry-run", "--gpus", "8", "--only", "q1a")
    assert out.returncode == 0, out.stderr
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("│")]
    assert f"GPU plan: 32 runs, in {len(rows)} units on 8 GPU(s)" in out.stdout and len(rows) > 4
    assert "work only" in out.stdout
    for bad, said in ((["--gpus", "2"], "use it with --dry-run"),
                      (["--dry-run", "--gpus", "0"], "--gpus must be >= 1"),
                      (["--dry-run", "--gpus", "2", "--timings", "/nonexistent.db"],
                       "--timings: /nonexistent.db"),
                      (["--dry-run", "--timings", str(H200)], "add --gpus"),
                      (["--dry-run", "--gpu-memory", "80"], "add --gpus")):
        out = _cli(*bad)
        assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr


def test_the_plan_leaves_out_runs_done_in_the_store(tmp_path):
    # the H200 store as it stood after sitting 3: 87 of the seed study's 90 runs done, 3 of
    # Q2's GPU runs left (sitting 4, commit f4d3b9f, ran them; here they are pending again)
    db = tmp_path / "seed.db"
    db.write_bytes(H200.read_bytes())
    con = sqlite3.connect(db)
    with con:
        n = con.execute("UPDATE runs SET status = 'pending', result = NULL, finished_at = NULL "
                        "WHERE json_extract(result, '$.provenance.git_commit') LIKE 'f4d3b9f%'"
                        ).rowcount
    con.close()
    assert n == 3
    before = db.read_bytes()
    out = _cli("--dry-run", "--gpus", "1", "--timings", str(H200), "--db", str(db))
    assert out.returncode == 0, out.stderr
    said = " ".join(out.stdout.split())  # the table's title wraps at the terminal's width
    assert f"GPU plan: 3 runs, 75 already done in {db} left out, in 3 units" in said
    assert out.stdout.count(" q2 ") == 3
    listed = _cli("--dry-run", "--db", str(db))
    assert f"90 runs in 6 experiment(s) of study seed; 87 already done in {db}, 3 to run" in \
        " ".join(listed.stdout.split())
    assert db.read_bytes() == before  # read, not written
    done = _cli("--dry-run", "--gpus", "1", "--only", "q1a", "--db", str(db))
    assert done.returncode == 2 and "every GPU run of this selection is already done" in \
        done.stderr


def test_a_timings_store_without_gpu_runs_is_refused(tmp_path):
    from perfstudy.config import DLConfig
    from perfstudy.study.spec import Run

    db = tmp_path / "cpu.db"
    Store(db).add("s", [Run("e", DLConfig(device="cpu"))])
    out = _cli("--dry-run", "--gpus", "1", "--timings", str(db))
    assert out.returncode == 2
    assert f"--timings {db}: no finished GPU runs to take times from" in out.stderr


EXPLANATIONS = ROOT / "docs/results/seed-explanations-h200/explanations.db"


def _explanation_units(variant):
    study = studies.load(ROOT / "studies/seed_explanations.yaml")
    runs = [r for r in study.runs() if r.config.weights == "none" and r.config.variant == variant]
    return schedule.units(runs, None, H200_GIB * 2**30)


def test_a_224_pack_is_timed_by_224_runs_not_by_the_native_ones():
    # the ResNet-50 224x224 pack of 2 trained in 348.28 s of pack wall time on the H200; the
    # native ResNet-50s' rate (seconds per FLOP) would put it near 3x that
    (unit,) = _explanation_units("imagenet")
    assert len(unit) == 2
    rates = gpu_plan.measured_rates(Store(EXPLANATIONS, create=False).rows())
    (slot,) = gpu_plan.plan_gpus([unit], 1, rates)
    assert slot.measured_rate and slot.seconds == pytest.approx(348.28, abs=0.01)
    (native,) = gpu_plan.plan_gpus(_explanation_units("native"), 1, rates)
    assert native.measured_rate and native.seconds == pytest.approx(192.81, abs=0.01)
    # from the seed study's store alone (native runs only) it falls back to the model's rate,
    # and says so: not measured like it
    seed_rates = gpu_plan.measured_rates(Store(H200, create=False).rows())
    (guess,) = gpu_plan.plan_gpus([unit], 1, seed_rates)
    assert not guess.measured_rate and guess.seconds > 2 * 348.28
