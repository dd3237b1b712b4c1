"""The models' GMACs per image at the input sizes that could explain the seed's "FLOPs" figures.

    PYTHONPATH=src python benchmarks/flops_table.py [--out docs/flops.md]

Counted by ``perfstudy.dl.flops.count`` (``torch.utils.flop_counter`` on the meta device: exact
and deterministic, seconds on a CPU). Columns: the ``imagenet`` variant (7x7/s2 stem and
max-pool) at 3x224x224 and 1x224x224; the ``native`` network (3x3/s1 stem, no max-pool) fed a
3x224x224 image; the ``native`` variant at the 1x28x28 the study trains on; the seed's figure.
Then the square input size at which each stem reaches the seed's figure.
"""

from __future__ import annotations

import argparse
import time

from perfstudy.config import MODELS
from perfstudy.dl.flops import count
from perfstudy.report.seed_reference import load

COLUMNS = (("imagenet", (3, 224, 224)), ("imagenet", (1, 224, 224)),
           ("native", (3, 224, 224)), ("native", (1, 28, 28)))


def gmacs(model: str, variant: str, shape) -> float:
    return count(model, variant, shape).macs / 1e9


def closest_side(model: str, variant: str, target: float) -> str:
    """The square side, 32 to 320, whose 3-channel count is closest to ``target`` GMACs (the
    count grows with the side, up to the stride's rounding: bisection, then a scan)."""
    lo, hi = 32, 320
    if gmacs(model, variant, (3, hi, hi)) < target:
        return f"> {hi}"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if gmacs(model, variant, (3, mid, mid)) < target else (lo, mid)
    # the count steps with the stride's rounding, so look around the crossing
    near = range(max(32, lo - 8), min(320, hi + 8) + 1)
    return str(min(near, key=lambda s: abs(gmacs(model, variant, (3, s, s)) - target)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out")
    args = p.parse_args()
    seed = load().flops
    lines = [f"GMACs per image, 10 classes (`benchmarks/flops_table.py`, "
             f"{time.strftime('%Y-%m-%d')}):", "",
             "| model | " + " | ".join(f"{v} {'x'.join(map(str, s))}" for v, s in COLUMNS)
             + " | seed's \"GFLOPs\" | side for the seed's figure (imagenet stem, native stem) |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for m in MODELS.names():
        cells = [f"{gmacs(m, v, s):.4f}" for v, s in COLUMNS]
        sides = (f"{closest_side(m, 'imagenet', seed[m])}, {closest_side(m, 'native', seed[m])}"
                 if m in seed else "")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {seed.get(m, '')} | {sides} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
