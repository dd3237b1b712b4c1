"""One sitting of a long study: ``perfstudy run ARGS...`` until it ends or until a deadline,
when it gets SIGTERM as from a user's ``kill`` (its runs in flight are stored interrupted and
resume from their checkpoints next time), with the GPU's utilisation sampled meanwhile.

    PYTHONPATH=src python benchmarks/study_call.py --deadline 540 --record call-1.json \\
        --log call-1.log -- studies/seed.yaml --executor ray --db seed.db

``--detach`` starts that sitting in a new session and returns at once: it then outlives the
device call that started it, and later calls only wait for it (``--wait SECONDS``, which
returns when the record is written or the seconds have passed) or stop it (``--stop``, which
sends the sitting SIGTERM). A study that needs several calls then never stops between them.

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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from gpu_sampler import GpuSampler  # noqa: E402

GRACE_S = 60.0  # after SIGTERM: time to store the interrupted runs and stop Ray


def sit(args: list[str], deadline: float, log: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, (str(ROOT / "src"), os.environ.get("PYTHONPATH"))))}
    cmd = [sys.executable, "-m", "perfstudy", "run", *args]
    asked = threading.Event()  # SIGTERM to this process: stop the sitting as at the deadline
    signal.signal(signal.SIGTERM, lambda *_: asked.set())
    sampler = GpuSampler()
    sampler.start()
    start, stopped = time.time(), False
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None and time.time() - start < deadline and not asked.is_set():
            time.sleep(0.5)
        if proc.poll() is None:
            stopped = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        code = proc.wait()
    end = time.time()
    sampler.stop.set()
    sampler.join()
    return {"command": cmd[2:], "start": start, "end": end, "wall_s": end - start,
            "exit": code, "stopped_at_deadline": stopped, "gpu_idle_share": sampler.idle_share(),
            "samples": [[round(t, 2), u] for t, u in sampler.samples]}


def detach(argv: list[str], record: Path) -> None:
    """This command again without --detach, in a new session (it outlives its caller)."""
    rest = [a for a in argv if a != "--detach"]
    with record.with_suffix(".wrapper.log").open("w") as out:
        proc = subprocess.Popen([sys.executable, __file__, *rest], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    record.with_suffix(".pid").write_text(str(proc.pid))
    print(f"sitting started in the background (pid {proc.pid}); record: {record}")


def wait(record: Path, seconds: float, stop: bool) -> None:
    pid = int(record.with_suffix(".pid").read_text())
    if stop:
        os.kill(pid, signal.SIGTERM)
    t0 = time.time()
    while not record.exists() and time.time() - t0 < seconds:
        time.sleep(1.0)
    print(f"sitting {'ended' if record.exists() else 'still running'} after waiting "
          f"{time.time() - t0:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deadline", type=float, help="seconds before SIGTERM")
    p.add_argument("--record", required=True, help="JSON file for this sitting's record")
    p.add_argument("--log", help="file for perfstudy's output")
    p.add_argument("--detach", action="store_true", help="run the sitting in the background")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="wait for a detached sitting's record, at most SECONDS")
    p.add_argument("--stop", action="store_true", help="--wait, after SIGTERM to the sitting")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then perfstudy run's arguments")
    a = p.parse_args()
    if a.wait is not None or a.stop:
        return wait(Path(a.record), a.wait or GRACE_S + 5, a.stop)
    if a.deadline is None or a.log is None:
        p.error("--deadline and --log are needed to start a sitting")
    if a.detach:
        return detach(sys.argv[1:], Path(a.record))
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    rec = sit(args, a.deadline, Path(a.log))
    Path(a.record).write_text(json.dumps(rec))
    idle, n = rec["gpu_idle_share"], len(rec["samples"])
    gpu = "n/a" if idle is None else f"{100 * idle:.0f} % of {n} samples"
    stop = " (stopped at the deadline)" if rec["stopped_at_deadline"] else ""
    print(f"exit {rec['exit']} after {rec['wall_s']:.1f} s{stop}; GPU idle {gpu}")

if __name__ == "__main__":
    main()
