"""Our numbers beside the seed's: the seed column, the difference, the beyond-noise flag, and
the seed's oddities, each worded from the data (ours and the reference file's)."""

from __future__ import annotations

from perfstudy.report import labels
from perfstudy.report.document import Cell
from perfstudy.report.experiments import Experiment, Group
from perfstudy.report.seed_reference import MNIST_RECORD, SeedReference
from perfstudy.report.stats import Summary, binomial_se, signed, verdict

FLAG = "⚠"


def cell_yardstick(group: Group, summary: Summary | None, pooled: float | None) -> float | None:
    """The noise level a cell is judged by: the table's pooled run-to-run std where there are
    repeats, else the binomial standard error of this cell's own accuracy."""
    if pooled:
        return pooled
    if summary is None or not group.n_test:
        return None
    return binomial_se(summary.mean, group.n_test)


def seed_cells(ours: Summary | None, seed: float | None, yard: float | None,
               digits: int = 2) -> tuple[Cell, Cell]:
    """(seed value, ours − seed) cells; the difference is flagged when beyond noise."""
    if seed is None:
        return Cell("–", "missing"), Cell("–", "missing")
    seed_cell = Cell(f"{seed:.{digits}f}", "num")
    if ours is None:
        return seed_cell, Cell("–", "missing")
    d = ours.mean - seed
    v = verdict(d, yard)
    if v == "beyond noise":
        return seed_cell, Cell(f"{signed(d, digits)} {FLAG}", "flag num",
                               f"beyond noise: {abs(d) / yard:.1f}× the yardstick "
                               f"({yard:.2f} pp)")
    tip = f"{v}" + (f": {abs(d) / yard:.1f}× the yardstick ({yard:.2f} pp)" if yard else "")
    return seed_cell, Cell(signed(d, digits), "num", tip)


def budget_note(exp: Experiment, epochs: int, what: str) -> str | None:
    """Say so when our runs had a smaller budget than the seed's, before anyone reads the Δ."""
    ours_epochs = exp.fixed.get("epochs")
    subset = exp.fixed.get("train_subset")
    eval_subset = exp.fixed.get("eval_subset")
    if ours_epochs == epochs and not subset and not eval_subset:
        return None
    parts = [f"{ours_epochs} epoch{'s' if ours_epochs != 1 else ''}" if ours_epochs else
             "varying epochs"]
    if subset:
        parts.append(f"{subset:,} training images")
    if eval_subset:
        parts.append(f"{eval_subset:,}-image val/test subsets")
    return (f"Budget: ours {', '.join(parts)}; the seed {epochs} epochs on the full training "
            f"split{what}. Differences from the seed column are expected from the budget alone.")


def flagged_summary(pairs: list[tuple[str, Summary, float, float | None]],
                    lead: str = "Against the seed") -> str | None:
    """One sentence over a table's (label, ours, seed, yardstick) cells."""
    pairs = [p for p in pairs if p[1] is not None]
    if not pairs:
        return None
    diffs = [(lab, s.mean - seed, s, seed, y) for lab, s, seed, y in pairs]
    beyond = [d for d in diffs if verdict(d[1], d[4]) == "beyond noise"]
    unknown = [d for d in diffs if verdict(d[1], d[4]) == "noise unknown"]
    mean = sum(d[1] for d in diffs) / len(diffs)
    lab, d, s, seed, _ = max(diffs, key=lambda x: abs(x[1]))
    text = (f"{lead}: {len(beyond)} of {len(diffs)} cells differ beyond noise "
            f"({FLAG}); mean difference (ours − seed) {signed(mean)} pp; largest {signed(d)} pp "
            f"at {lab} (ours {s.mean:.2f} %, seed {seed:.2f} %).")
    if unknown:
        text += f" {len(unknown)} cell(s) could not be judged (no yardstick)."
    return text


def seed_best_note(ref_values: dict[str, float], ours: dict[str, Summary]) -> str | None:
    """Is the seed's best configuration also ours?"""
    both = [k for k in ref_values if k in ours]
    if len(both) < 2:
        return None
    seed_best = max(both, key=lambda k: ref_values[k])
    ranked = sorted(both, key=lambda k: -ours[k].mean)
    place = ranked.index(seed_best) + 1
    if place == 1:
        return (f"The seed's best cell, {seed_best} ({ref_values[seed_best]:.2f} %), is our best "
                f"too ({ours[seed_best].mean:.2f} %).")
    return (f"The seed's best cell, {seed_best} ({ref_values[seed_best]:.2f} %), ranks "
            f"{place} of {len(ranked)} here ({ours[seed_best].mean:.2f} %; our best: "
            f"{ranked[0]}, {ours[ranked[0]].mean:.2f} %).")


def mnist_record_note(ref: SeedReference, ours: dict[tuple, Summary]) -> str | None:
    """The seed's MNIST figures above the best published single-model accuracy (~99.8 %)."""
    above = sorted(((k, v) for k, v in ref.q1a.items()
                    if k[0] == "mnist" and v > MNIST_RECORD), key=lambda kv: -kv[1])
    if not above:
        return None
    parts = []
    for (_, model, batch, opt, lr), v in above:
        label = labels.config({"model": model, "optimizer": opt, "lr": lr, "batch_size": batch},
                              ["model", "optimizer", "lr", "batch_size"])
        mine = ours.get((model, batch, opt, lr))
        parts.append(f"{v:.2f} % ({label}; ours {mine.mean:.2f} %)" if mine
                     else f"{v:.2f} % ({label}; not run here)")
    return (f"Seed oddity: the seed's MNIST {'; '.join(parts)} "
            f"{'is' if len(parts) == 1 else 'are'} above the best published single-model MNIST "
            f"accuracy (about {MNIST_RECORD:.1f} %), from a plain ResNet in 10 epochs; treat "
            "such figures with suspicion.")


def resnet32_note(ref: SeedReference, ours: dict[str, list[float]]) -> str | None:
    """The seed's ResNet-32 near chance level (10 classes), against ours."""
    seed = [v for k, v in ref.q2_acc.items() if k[1] == "resnet32"]
    mine = ours.get("resnet32")
    if not seed or not mine:
        return None
    text = (f"Seed oddity: the seed's ResNet-32 reached only {min(seed):.2f}–{max(seed):.2f} % "
            "on Fashion-MNIST (chance is 10 %), far below its ResNet-18 and ResNet-50. ")
    lo, hi = min(mine), max(mine)
    others = [v for m, vs in ours.items() if m != "resnet32" for v in vs]
    rng = f"{lo:.2f}–{hi:.2f} %" if hi > lo else f"{lo:.2f} %"
    if lo > 50 and (not others or lo > 0.8 * max(others)):
        text += f"Ours trains normally: {rng}."
    else:
        text += f"Ours: {rng}" + (f" (other models up to {max(others):.2f} %)." if others
                                  else ".")
    return text
