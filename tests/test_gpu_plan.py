"""The dry plan of a study's GPU work on N GPUs (``perfstudy run --dry-run --gpus N``), timed by
the packs measured on the H200 in docs/results/seed-h200/seed.db."""

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
    assert slot.seconds == pytest.approx(573.2, abs=0.1)  # the pack's wall time in the store


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
    assert "GPU plan: 32 runs in 4 units on 2 GPU(s)" in out.stdout
    assert "estimated GPU wall time" in out.stdout
    for bad, said in ((["--gpus", "2"], "use it with --dry-run"),
                      (["--dry-run", "--gpus", "0"], "--gpus must be >= 1"),
                      (["--dry-run", "--gpus", "2", "--timings", "/nonexistent.db"],
                       "--timings: /nonexistent.db")):
        out = _cli(*bad)
        assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
