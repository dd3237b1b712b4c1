"""Where a study's time went, from its store and the records of its sittings
(``benchmarks/study_call.py``): per experiment, the runs done and their training, setup and
evaluation time (a pack's shared time counted once), the sittings' wall time and the GPU's
idle share (NVML samples at 0 %).

    PYTHONPATH=src python benchmarks/seed_h200_summary.py docs/results/seed-h200/seed.db \\
        docs/results/seed-h200/sitting-*.json [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from perfstudy.study.store import Store  # noqa: E402


def experiment_times(rows) -> dict[str, dict]:
    """experiment -> runs, done, resumed, training/setup/evaluation seconds, on which devices."""
    out: dict[str, dict] = defaultdict(lambda: {"runs": 0, "done": 0, "resumed": 0, "train": 0.0,
                                                "setup": 0.0, "eval": 0.0, "devices": set()})
    packs_seen: set[tuple] = set()
    for r in rows:
        e = out[r.experiments[0]]
        e["runs"] += 1
        if r.status != "done" or r.result is None:
            continue
        res = r.result
        e["done"] += 1
        e["resumed"] += r.attempts > 1
        e["eval"] += (res.eval_ms or 0) / 1e3
        if res.provenance.get("device"):
            e["devices"].add(res.provenance["device"])
        pack = tuple(res.extra.get("pack_members") or (r.key,))
        if pack not in packs_seen:  # a pack's training and setup are shared by its runs
            packs_seen.add(pack)
            e["train"] += (res.train_ms or 0) / 1e3
            e["setup"] += (res.setup_ms or 0) / 1e3
    return out


def sittings(paths: list[Path]) -> dict:
    recs = [json.loads(p.read_text()) for p in paths]
    samples = [u for r in recs for _, u in r["samples"]]
    return {"n": len(recs), "wall_s": sum(r["wall_s"] for r in recs),
            "stopped": sum(r["stopped_at_deadline"] for r in recs),
            "idle": sum(u == 0 for u in samples) / len(samples) if samples else None,
            "samples": len(samples)}


def table(db: Path, records: list[Path]) -> str:
    rows = Store(db, create=False).rows()
    times = experiment_times(rows)
    lines = ["| experiment | runs done | resumed after an interruption | devices | training s "
             "| setup s | evaluation s |", "|---|---|---|---|---|---|---|"]
    for name, e in times.items():
        lines.append(f"| {name} | {e['done']}/{e['runs']} | {e['resumed']} | "
                     f"{', '.join(sorted(e['devices'])) or '–'} | {e['train']:.1f} | "
                     f"{e['setup']:.1f} | {e['eval']:.1f} |")
    s = sittings(records)
    idle = "n/a" if s["idle"] is None else f"{100 * s['idle']:.1f} % of {s['samples']} samples"
    lines += ["", f"{s['n']} sitting(s), {s['stopped']} stopped at their deadline; wall time "
              f"{s['wall_s']:.1f} s in all; GPU idle {idle}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db")
    p.add_argument("records", nargs="*", help="the sittings' JSON records")
    p.add_argument("--out")
    a = p.parse_args()
    text = table(Path(a.db), [Path(r) for r in a.records])
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
