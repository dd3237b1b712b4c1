"""Start-up time of the commands that only read: ``perfstudy --help`` and ``perfstudy status``.

    python benchmarks/startup.py [--repeat 7] [--db STORE] [--src SRC]

Each command runs ``--repeat`` times as a fresh ``python -m perfstudy`` process (the first run
is untimed: it fills the OS file cache); the table gives the median and the range of the wall
time, and whether torch was imported (``python -X importtime``). ``--src`` points at another
checkout's ``src`` (to measure an older commit the same way).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "perfstudy", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def imports_torch(args: list[str], env: dict) -> bool:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "perfstudy", *args],
                         env=env, capture_output=True, text=True)
    return any(re.search(r"\|\s+torch$", line.rstrip()) for line in out.stderr.splitlines())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--db", default=str(ROOT / "docs/results/seed-q1a-h200/store.db"))
    p.add_argument("--src", default=str(ROOT / "src"))
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": args.src}
    print(f"{args.src}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| command | median s | min-max s | imports torch |\n|---|---|---|---|")
    for cmd in (["--help"], ["status", "--db", args.db]):
        timed(cmd, env)
        ts = [timed(cmd, env) for _ in range(args.repeat)]
        print(f"| perfstudy {' '.join(cmd[:1])} | {statistics.median(ts):.2f} | "
              f"{min(ts):.2f}-{max(ts):.2f} | {imports_torch(cmd, env)} |")


if __name__ == "__main__":
    main()
