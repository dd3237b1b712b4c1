"""Time to accuracy, as DAWNBench reports it: training time until a target accuracy is first
reached. Read from each run's per-epoch curve: the cumulative epoch seconds (training only,
evaluation excluded) up to the first epoch whose validation accuracy reaches the target. The
test split is evaluated only at the end of a run, so validation accuracy stands in for it.
"""

from __future__ import annotations

from perfstudy.report import labels
from perfstudy.report.document import Cell, Table
from perfstudy.report.experiments import Group
from perfstudy.report.stats import Summary
from perfstudy.report.tables import Context, packed_note

DEFAULT_TARGETS = {"mnist": 99.0, "fashion-mnist": 90.0}
# the settings a configuration is named by, where they differ between the table's rows
DESCRIBE = ["model", "variant", "weights", "optimizer", "lr", "momentum", "weight_decay",
            "batch_size", "device", "engine", "epochs", "train_subset", "pin_memory",
            "num_workers"]


def time_to_target(result, target: float) -> tuple[float, int] | None:
    """(seconds, epoch) at which validation accuracy first reached ``target``; None if never."""
    total = 0.0
    for e in result.curve:
        total += e.seconds
        if e.val_acc >= target:
            return total, e.epoch
    return None


def _label(g: Group, keys: list[str]) -> str:
    parts = []
    for k in keys:
        v = g.device if k == "device" else g.config.get(k)
        parts.append(labels.setting(k, v) if k != "epochs" else f"{v} ep.")
    return " · ".join(parts)


def _groups(ctx: Context, dataset: str) -> list[tuple[str, Group]]:
    """Every DL group on ``dataset`` once, with the experiment(s) it belongs to."""
    seen: dict[str, tuple[list[str], Group]] = {}
    for e in ctx.dl_experiments():
        for g in e.groups:
            if g.config.get("dataset") != dataset or not any(r.result and r.result.curve
                                                            for r in g.done):
                continue
            key = repr(sorted(g.config.items()))
            seen.setdefault(key, ([], g))[0].append(e.name)
    return [(" ".join(names), g) for names, g in seen.values()]


def tta_tables(ctx: Context) -> tuple[list[Table], list[str]]:
    tables, sentences = [], []
    datasets = []
    for e in ctx.dl_experiments():
        for d in e.values("dataset"):
            if d not in datasets:
                datasets.append(d)
    for d in datasets:
        target = ctx.targets.get(d)
        entries = _groups(ctx, d)
        if target is None or not entries:
            continue
        keys = [k for k in DESCRIBE
                if len({repr(g.device if k == "device" else g.config.get(k))
                        for _, g in entries}) > 1]
        rows = _rows(entries, target)
        t = Table(f"{ctx.prefix}tta-{d}", f"Time to {target:g} % validation accuracy, "
                  f"{labels.dataset(d)}", ["Experiment", "Configuration", "Time to target (s)",
                                           "Epoch", "Best val (%)"])
        for _, names, g, secs, epoch, k, n, best_val in rows:
            if secs is None:
                time_cell = Cell("not reached", "missing")
            else:
                txt = secs.text(1) + (f" ({k} of {n} reached)" if k < n else "")
                time_cell = Cell(txt, "num")
            same = epoch is not None and (epoch.std is None or epoch.std == 0)
            t.add([names, _label(g, keys) or "–", time_cell,
                   Cell(f"{epoch.mean:.0f}" if same else epoch.text(1) if epoch else "–", "num"),
                   Cell(f"{best_val:.2f}", "num")])
        t.notes.append("Cumulative training seconds of the epochs up to the first one whose "
                       "validation accuracy reached the target (evaluation time excluded). "
                       "Times from different devices or budgets are not comparable.")
        note = packed_note([g for _, g in entries])
        if note:
            t.notes.append(note)
        tables.append(t)
        sentences.append(_sentence(rows, target, d, keys))
    return tables, sentences


def _rows(entries, target: float) -> list[tuple]:
    """Per configuration, fastest first: (seconds, experiments, group, seconds summary, epoch
    summary, runs that reached the target, runs, best validation accuracy)."""
    rows = []
    for exp_names, g in entries:
        hits = [time_to_target(r.result, target) for r in g.done]
        reached = [h for h in hits if h]
        best_val = max(e.val_acc for r in g.done for e in r.result.curve)
        secs = Summary.of(h[0] for h in reached)
        epoch = Summary.of(h[1] for h in reached)
        rows.append((secs.mean if secs else float("inf"), exp_names, g, secs, epoch,
                     len(reached), len(hits), best_val))
    return sorted(rows, key=lambda r: r[0])


def _sentence(rows: list[tuple], target: float, dataset: str, keys: list[str]) -> str:
    done = [r for r in rows if r[3] is not None]
    if not done:
        return (f"**Time to {target:g} % ({labels.dataset(dataset)})**: not reached by any of "
                f"{len(rows)} configurations (best validation accuracy "
                f"{max(r[7] for r in rows):.2f} %).")
    _, names, g, secs, epoch, *_ = done[0]
    return (f"**Time to {target:g} % ({labels.dataset(dataset)})**: fastest "
            f"{_label(g, keys) or names} ({names}) in {secs.text(1)} s (epoch "
            f"{epoch.mean:.0f}); {len(done)} of {len(rows)} configurations reached the target"
            + (f", {len(rows) - len(done)} never did." if len(done) < len(rows) else "."))
