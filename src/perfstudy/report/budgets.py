"""Experiments that repeat another's settings with another number of epochs (the seed's 5
against 10 epochs): their matching cells side by side in one table, with the difference."""

from __future__ import annotations

import math

from perfstudy.report import labels
from perfstudy.report.document import Cell, Table
from perfstudy.report.experiments import Experiment, Group
from perfstudy.report.seed_compare import cell_yardstick
from perfstudy.report.stats import signed, verdict
from perfstudy.report.tables import Context, acc_cell

SHOWN = ("dataset", "model", "batch_size", "optimizer", "lr")


def _key(g: Group) -> str:
    return repr(sorted((k, v) for k, v in g.config.items() if k != "epochs"))


def pairs(short: Experiment, long: Experiment) -> list[tuple[Group, Group]]:
    """Groups of ``short`` and ``long`` with the same config but fewer epochs in ``short``."""
    by_key = {_key(g): g for g in long.groups}
    return [(g, by_key[_key(g)]) for g in short.groups
            if _key(g) in by_key and g.config.get("epochs", 0) < by_key[_key(g)].config.get(
                "epochs", 0)]


def epoch_tables(exp: Experiment, ctx: Context) -> list[Table]:
    """For ``exp``: a table per experiment of the study that trains its settings longer."""
    out = []
    for other in ctx.dl_experiments():
        if other.study != exp.study or other is exp or not (matched := pairs(exp, other)):
            continue
        a, b = matched[0][0].config.get("epochs"), matched[0][1].config.get("epochs")
        keys = [k for k in SHOWN if len({repr(s.config.get(k)) for s, _ in matched}) > 1]
        cols = [labels.KEYS.get(k, k) for k in keys] + [
            f"{a} epochs (%) · {exp.name}", f"{b} epochs (%) · {other.name}", "Δ (pp)"]
        t = Table(f"{ctx.prefix}{exp.name}-vs-{other.name}", f"{a} vs {b} epochs: "
                  f"{exp.name} beside the matching {other.name} cells", cols)
        for s, lg in matched:
            cells: list[Cell | str] = [labels.value(k, s.config.get(k)) for k in keys]
            cells += [acc_cell(s), acc_cell(lg), _diff(s, lg)]
            t.add(cells)
        t.notes.append("Same settings but the number of epochs; test accuracy at each run's "
                       "best-validation epoch. Δ = the longer minus the shorter, judged against "
                       "the two cells' noise (repeats' spread, else binomial standard errors).")
        out.append(t)
    return out


def _diff(short: Group, long: Group) -> Cell:
    a, b = short.summary("test_acc"), long.summary("test_acc")
    if a is None or b is None:
        return Cell("–", "missing")
    ya, yb = cell_yardstick(short, a, None), cell_yardstick(long, b, None)
    yard = math.hypot(ya, yb) if ya and yb else None
    d = b.mean - a.mean
    v = verdict(d, yard)
    return Cell(signed(d) + (" ⚠" if v == "beyond noise" else ""),
                "flag num" if v == "beyond noise" else "num",
                f"{v}" + (f": {abs(d) / yard:.1f}× the yardstick ({yard:.2f} pp)" if yard else ""))
