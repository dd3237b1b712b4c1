"""The same study with ``--executor local`` and ``--executor ray`` on one GPU host: wall time,
and how long the GPU sat idle.

    PYTHONPATH=src python benchmarks/ray_overlap.py [--study benchmarks/ray_overlap.yaml]
        [--executors local,ray] [--limit 290] [--out FILE.md]

Each executor runs ``perfstudy run STUDY --executor E`` as a user would, on a fresh store,
timed from start to exit (Ray's start-up included). From the store: the span of the GPU runs
(first claim to last result) and of the CPU runs; from NVML (when available), the GPU's
utilisation sampled every 0.2 s: the idle share is the fraction of samples at 0 %. Target:
with Ray, the CPU runs cost no extra wall time (wall ~ the GPU part alone).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gpu_sampler import GpuSampler, span  # noqa: E402
from perfstudy.study.store import Store  # noqa: E402


def measure(executor: str, study: str, limit: float) -> dict:
    db = Path(tempfile.mkdtemp()) / f"{executor}.db"
    cmd = [sys.executable, "-m", "perfstudy", "run", study, "--executor", executor, "--db",
           str(db), "--quiet"]
    sampler = GpuSampler()
    sampler.start()
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  filter(None, (str(ROOT / "src"), os.environ.get("PYTHONPATH"))))})
        code, tail = done.returncode, (done.stderr or done.stdout).strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        code, tail = "timeout", [f"stopped after {limit:.0f} s"]
    wall = time.perf_counter() - t0
    sampler.stop.set()
    rows = Store(db, create=False).rows() if db.exists() else []
    finished = [r for r in rows if r.status == "done"]
    gpu = [r for r in finished if r.result.provenance.get("device") == "cuda"]
    cpu = [r for r in finished if r.result.provenance.get("device") == "cpu"]
    return {"executor": executor, "exit": code, "wall_s": wall, "done": len(finished),
            "runs": len(rows), "gpu_span_s": span(gpu), "cpu_span_s": span(cpu),
            "gpu_idle_share": sampler.idle_share(), "samples": len(sampler.samples),
            "last_line": " ".join(tail)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default=str(ROOT / "benchmarks/ray_overlap.yaml"))
    p.add_argument("--executors", default="local,ray")
    p.add_argument("--limit", type=float, default=290.0, help="seconds per executor at most")
    p.add_argument("--out")
    args = p.parse_args()
    lines = [f"`benchmarks/ray_overlap.py`, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{os.cpu_count()} CPUs", "",
             "| executor | exit | runs done | wall s | GPU runs' span s | CPU runs' span s | "
             "GPU idle (NVML samples at 0 %) |", "|---|---|---|---|---|---|---|"]
    for ex in args.executors.split(","):
        m = measure(ex, args.study, args.limit)
        idle = "–" if m["gpu_idle_share"] is None else \
            f"{100 * m['gpu_idle_share']:.0f} % of {m['samples']}"
        lines.append(f"| {ex} | {m['exit']} | {m['done']}/{m['runs']} | {m['wall_s']:.1f} | "
                     f"{m['gpu_span_s']:.1f} | {m['cpu_span_s']:.1f} | {idle} |")
        print(lines[-1], "--", m["last_line"], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
