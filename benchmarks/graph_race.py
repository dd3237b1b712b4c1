"""The cuBLAS-workspace race between CUDA graphs replayed concurrently, shown both ways.

    PYTHONPATH=src python benchmarks/graph_race.py [--rounds 200]

Four graphs of skinny bf16 matrix products (ResNet-50's classifier shape, as ``FusedLinear``
computes it) replay together, each on its own stream, ``--rounds`` times; a round is wrong
when some product is off its fp32 reference by more than bf16 rounding allows. Captured on
torch's one default capture stream, the graphs share a cuBLAS workspace and race on it;
captured each on its own stream (``graphed.capture(..., stream=s)``, what packing does), they
do not. Output of 2026-11-29 on one H200: docs/performance.md. Needs CUDA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_graphed import _bad_rounds, _graphs  # noqa: E402  (the test's own workload)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    args = p.parse_args()
    for own in (False, True):
        where = "own capture streams" if own else "one shared capture stream"
        bad = _bad_rounds(_graphs(4, own_streams=own), rounds=args.rounds)
        print(f"{where}: {bad} of {args.rounds} rounds with wrong products", flush=True)


if __name__ == "__main__":
    main()
