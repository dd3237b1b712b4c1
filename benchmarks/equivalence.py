"""Plain engine vs fast engine, cell by cell: mean and spread of test accuracy over seeds.

    perfstudy run studies/equivalence.yaml --db eq.db     # on a GPU machine
    PYTHONPATH=src python benchmarks/equivalence.py eq.db [--study equivalence] [--out FILE.md]

A cell is every config field except ``engine`` and ``seed`` (and the loader settings that
only the plain engine uses). Per cell and engine: each seed's test accuracy (best-validation
epoch), mean, sample standard deviation, and the difference of means against the plain
engine with its standard error; ``|diff| < 2 SE`` reads as equal within run-to-run spread.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict

from perfstudy.errors import UsageError
from perfstudy.study.store import Store

IGNORED = {"engine", "seed", "pin_memory", "num_workers"}


def cell_name(cfg: dict) -> str:
    parts = [
        cfg["model"],
        cfg["dataset"],
        f"b{cfg['batch_size']}",
        cfg["optimizer"],
        f"lr {cfg['lr']:g}",
        f"{cfg['epochs']} ep",
    ]
    if cfg.get("train_subset"):
        parts.append(f"{cfg['train_subset']:,} train")
    return ", ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db")
    p.add_argument("--study", default="equivalence")
    p.add_argument("--out")
    args = p.parse_args()
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    names: dict[tuple, str] = {}
    try:
        store = Store(args.db, create=False)
    except UsageError as e:
        print(f"equivalence: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    for row in store.rows(args.study, status="done"):
        cfg = row.config
        cell = tuple(sorted((k, str(v)) for k, v in cfg.items() if k not in IGNORED))
        names[cell] = cell_name(cfg)
        engine = row.result.extra.get("engine", cfg["engine"])
        cells[cell][engine].append((cfg["seed"], row.result.test_acc))
    lines = [
        "| cell | engine | test accuracy % by seed | mean | sd | diff vs plain (SE) |",
        "|---|---|---|---|---|---|",
    ]
    for cell, by_engine in cells.items():
        plain = [a for _, a in sorted(by_engine.get("plain", []))]
        for engine, runs in sorted(by_engine.items(), key=lambda kv: kv[0] != "plain"):
            accs = [a for _, a in sorted(runs)]
            mean = statistics.mean(accs)
            sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
            diff = ""
            if engine != "plain" and len(plain) > 1 and len(accs) > 1:
                se = math.sqrt(statistics.variance(plain) / len(plain) + sd**2 / len(accs))
                diff = f"{mean - statistics.mean(plain):+.2f} ({se:.2f})"
            seeds = ", ".join(f"{a:.2f}" for a in accs)
            lines.append(f"| {names[cell]} | {engine} | {seeds} | {mean:.2f} | {sd:.2f} | {diff} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
