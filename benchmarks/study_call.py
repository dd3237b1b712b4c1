"""One sitting of a long study: ``perfstudy run ARGS...`` until it ends or until a deadline,
when it gets SIGTERM as from a user's ``kill`` (its runs in flight are stored interrupted and
resume from their checkpoints next time), with the GPU's utilisation sampled meanwhile.

    PYTHONPATH=src python benchmarks/study_call.py --deadline 540 --record call-1.json \\
        --log call-1.log -- studies/seed.yaml --executor ray --db seed.db

The record (JSON): the command, start and end (epoch seconds), wall time, exit code, whether
the deadline stopped it, and the NVML samples ``[[time, util %], ...]``. A study run over
several sittings (one device call each) is summed from these records by
``benchmarks/seed_h200_summary.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from gpu_sampler import GpuSampler  # noqa: E402

GRACE_S = 60.0  # after SIGTERM: time to store the interrupted runs and stop Ray


def sit(args: list[str], deadline: float, log: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, (str(ROOT / "src"), os.environ.get("PYTHONPATH"))))}
    cmd = [sys.executable, "-m", "perfstudy", "run", *args]
    sampler = GpuSampler()
    sampler.start()
    start, stopped = time.time(), False
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
    end = time.time()
    sampler.stop.set()
    sampler.join()
    return {"command": cmd[2:], "start": start, "end": end, "wall_s": end - start,
            "exit": code, "stopped_at_deadline": stopped, "gpu_idle_share": sampler.idle_share(),
            "samples": [[round(t, 2), u] for t, u in sampler.samples]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deadline", type=float, required=True, help="seconds before SIGTERM")
    p.add_argument("--record", required=True, help="JSON file for this sitting's record")
    p.add_argument("--log", required=True, help="file for perfstudy's output")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then perfstudy run's arguments")
    a = p.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    rec = sit(args, a.deadline, Path(a.log))
    Path(a.record).write_text(json.dumps(rec))
    idle, n = rec["gpu_idle_share"], len(rec["samples"])
    gpu = "n/a" if idle is None else f"{100 * idle:.0f} % of {n} samples"
    stop = " (stopped at the deadline)" if rec["stopped_at_deadline"] else ""
    print(f"exit {rec['exit']} after {rec['wall_s']:.1f} s{stop}; GPU idle {gpu}")

if __name__ == "__main__":
    main()
