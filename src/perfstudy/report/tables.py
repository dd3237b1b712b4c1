"""The report's tables, in the seed's own layouts (Q1(a), Q1(b), Q2, FLOPs) or, for any other
experiment, a generic table of the keys it varies.

Accuracy is always the test accuracy of the best-validation epoch's weights, with the
last-epoch figure beside it; a cell over repeated runs reads ``mean ± std (n)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from perfstudy.report import labels
from perfstudy.report.document import Cell, Table
from perfstudy.report.experiments import Experiment, Group
from perfstudy.report.seed_compare import budget_note, cell_yardstick, seed_cells
from perfstudy.report.seed_reference import SeedReference
from perfstudy.report.stats import accuracy_yardstick, pooled_std


@dataclass
class Context:
    """What tables and analysis of one study share."""

    experiments: list[Experiment]
    ref: SeedReference
    targets: dict[str, float] = field(default_factory=dict)
    prefix: str = ""  # table-id prefix when a report covers several studies
    headlines: list = field(default_factory=list)  # analysis.Headline per table, for the summary

    def dl_experiments(self) -> list[Experiment]:
        return [e for e in self.experiments if e.kind == "dl"]


def panels(exp: Experiment) -> list[tuple[str | None, list[Group]]]:
    """A per-dataset layout's panels: one per dataset, in the study's order."""
    if "dataset" in exp.varying:
        return [(d, exp.subset(dataset=d)) for d in exp.values("dataset")]
    return [(exp.fixed.get("dataset"), exp.groups)]


def table_id(ctx: Context, exp: Experiment, dataset: str | None, suffix: str = "") -> str:
    parts = [ctx.prefix + exp.name]
    if dataset and "dataset" in exp.varying:
        parts.append(dataset)
    if suffix:
        parts.append(suffix)
    return "-".join(parts)


def ordered(groups: list[Group], key) -> list:
    out: list = []
    for g in groups:
        k = key(g)
        if k not in out:
            out.append(k)
    return out


def best_group(groups: list[Group], metric: str = "test_acc") -> Group | None:
    scored = [(g.summary(metric), g) for g in groups]
    scored = [(s.mean, g) for s, g in scored if s is not None]
    return max(scored, key=lambda t: t[0])[1] if scored else None


def acc_cell(group: Group | None, metric: str = "test_acc", best: Group | None = None) -> Cell:
    if group is None:
        return Cell("–", "missing", "not part of this experiment")
    s = group.summary(metric)
    if s is None:
        return Cell(group.missing, "missing")
    return Cell(s.text(), "best num" if group is best else "num")


def ms_cell(group: Group | None, metric: str = "train_ms") -> Cell:
    if group is None:
        return Cell("–", "missing")
    s = group.summary(metric)
    return Cell(s.text(0, thousands=True), "num") if s else Cell(group.missing, "missing")


def panel_yardstick(groups: list[Group]):
    best = best_group(groups)
    s = best.summary("test_acc") if best else None
    return accuracy_yardstick([g.summary("test_acc") for g in groups],
                              s.mean if s else None, best.n_test if best else None)


def packed_note(groups: list[Group]) -> str | None:
    """For a table that shows training times: which of its runs trained in a pack, whose
    time is then the pack's shared wall time."""
    done = [r for g in groups for r in g.done]
    packed = [r for r in done if (r.result.extra.get("pack_size") or 1) > 1]
    if not packed:
        return None
    sizes = sorted({r.result.extra["pack_size"] for r in packed})
    return (f"{len(packed)} of {len(done)} runs here trained in a pack (of "
            f"{', '.join(map(str, sizes))} runs at once on one GPU): their time is the pack's "
            "wall time, shared with the pack's other runs, not the time the run would take "
            "alone.")


def _pooled(groups: list[Group]) -> float | None:
    p = pooled_std(g.summary("test_acc") for g in groups)
    return p[0] if p else None


# -- Q1(a) -------------------------------------------------------------------------------------
PIN_NA = "n/a"
PIN_NA_NOTE = ("pin_memory n/a: these runs had no DataLoader (the fast engine keeps the data "
               "on the GPU, the cpu engine in memory), so the setting had no effect; "
               "results.csv keeps the configured value.")


def pin_text(g: Group) -> str:
    """The pin_memory cell: the configured value, or n/a where every finished run says the
    setting did not apply (its ``extra["pin_memory"]`` note, e.g. "n/a (data resident on
    GPU)")."""
    notes = [r.result.extra.get("pin_memory") for r in g.done]
    if notes and all(isinstance(n, str) and n.startswith("n/a") for n in notes):
        return PIN_NA
    return labels.value("pin_memory", g.config.get("pin_memory"))


def q1a_tables(exp: Experiment, ctx: Context) -> list[Table]:
    out = []
    for dataset, groups in panels(exp):
        models = ordered(groups, lambda g: g.config.get("model"))
        rows = ordered(groups, lambda g: (g.config.get("batch_size"), g.config.get("optimizer"),
                                          g.config.get("lr")))
        has_seed = any(ctx.ref.q1a_acc(g.config) is not None for g in groups)
        pooled = _pooled(groups)
        best = best_group(groups)
        cols = ["Batch", "Optimizer", "LR"]
        for m in models:
            cols += [f"{labels.model(m)} acc (%)", f"{labels.model(m)} last ep. (%)"]
            if has_seed:
                cols += [f"{labels.model(m)} seed (%)", f"{labels.model(m)} Δ"]
        cols.append("pin_memory")
        t = Table(table_id(ctx, exp, dataset), f"Q1(a): {labels.dataset(dataset)} test accuracy"
                  f" ({exp.name})", cols)
        for batch, opt, lr in rows:
            cells: list[Cell | str] = [labels.value("batch_size", batch),
                                       labels.value("optimizer", opt), labels.value("lr", lr)]
            in_row = [g for g in groups if (g.config.get("batch_size"), g.config.get("optimizer"),
                                            g.config.get("lr")) == (batch, opt, lr)]
            for m in models:
                g = next((x for x in in_row if x.config.get("model") == m), None)
                cells += [acc_cell(g, best=best), acc_cell(g, "test_acc_last")]
                if has_seed:
                    s = g.summary("test_acc") if g else None
                    seed = ctx.ref.q1a_acc(g.config) if g else None
                    cells += list(seed_cells(s, seed, cell_yardstick(g, s, pooled)
                                             if g else None))
            cells.append(" / ".join(ordered(in_row, pin_text)))
            t.add(cells)
        t.notes.append("Yardstick: " + panel_yardstick(groups).text + ".")
        if any(pin_text(g) == PIN_NA for g in groups):
            t.notes.append(PIN_NA_NOTE)
        if has_seed:
            note = budget_note(exp, ctx.ref.budget.get("q1a", {}).get("epochs", 10), "")
            if note:
                t.notes.append(note)
        out.append(t)
    return out


# -- Q1(b) -------------------------------------------------------------------------------------
def q1b_tables(exp: Experiment, ctx: Context) -> list[Table]:
    groups = exp.groups
    has_seed = any(ctx.ref.q1b_row(g.config) for g in groups)
    cols = ["Dataset", "Kernel", "C", "Degree", "Accuracy (%)"]
    if has_seed:
        cols += ["Seed (%)", "Δ"]
    cols += ["Train time (ms)"] + (["Seed time (ms)"] if has_seed else []) + ["Support vectors"]
    t = Table(table_id(ctx, exp, None), f"Q1(b): SVM results ({exp.name})", cols)
    bests = {d: best_group(gs) for d, gs in panels(exp)}
    pooled = {d: _pooled(gs) for d, gs in panels(exp)}
    for g in groups:
        c = g.config
        d = c.get("dataset")
        cells: list[Cell | str] = [labels.value("dataset", d), labels.value("kernel", c["kernel"]),
                                   labels.value("C", c.get("C")),
                                   labels.value("degree", c.get("degree")
                                                if c.get("kernel") == "poly" else 0),
                                   acc_cell(g, best=bests.get(d))]
        ref = ctx.ref.q1b_row(c)
        if has_seed:
            s = g.summary("test_acc")
            cells += list(seed_cells(s, ref[0] if ref else None,
                                     cell_yardstick(g, s, pooled.get(d))))
        cells.append(ms_cell(g))
        if has_seed:
            cells.append(Cell(f"{ref[1]:,.0f}", "num") if ref else Cell("–", "missing"))
        sv = g.summary("n_support")
        cells.append(Cell(sv.text(0, thousands=True), "num") if sv else Cell(g.missing,
                                                                               "missing"))
        t.add(cells)
    for d, gs in panels(exp):
        t.notes.append(f"Yardstick ({labels.dataset(d)}): {panel_yardstick(gs).text}.")
    backends = sorted({f"{r.result.extra.get('backend', '?')} on "
                       f"{'the GPU' if r.result.provenance.get('device') == 'cuda' else 'the CPU'}"
                       for g in exp.groups for r in g.done})
    t.notes.append(f"Train time is the fit time (backend: {', '.join(backends)}); the seed's "
                   "times come from another machine and solver, so compare their ratios rather "
                   "than their values.")
    return [t]


# -- Q2 ----------------------------------------------------------------------------------------
def q2_rows(groups: list[Group]) -> list[tuple]:
    """(device, batch, optimizer, lr) rows, the CPU and the GPU arm of every setting, also
    where one arm has no runs in the store yet (its cells say pending)."""
    settings = ordered(groups, lambda g: (g.config.get("batch_size"), g.config.get("optimizer"),
                                          g.config.get("lr")))
    arms = ["cpu", "cuda"] + [d for d in ordered(groups, lambda g: g.device)
                              if d not in ("cpu", "cuda")]
    return [(d, *s) for d in arms for s in settings]


def q2_find(groups: list[Group], row: tuple, model: str) -> Group | None:
    return next((g for g in groups if (g.device, g.config.get("batch_size"),
                                       g.config.get("optimizer"), g.config.get("lr")) == row
                 and g.config.get("model") == model), None)


def speedup(groups: list[Group], row: tuple, model: str) -> float | None:
    """CPU time / GPU time for the GPU row ``row`` against its CPU twin."""
    if row[0] != "cuda":
        return None
    gpu, cpu = q2_find(groups, row, model), q2_find(groups, ("cpu", *row[1:]), model)
    a = cpu.summary("train_ms") if cpu else None
    b = gpu.summary("train_ms") if gpu else None
    return a.mean / b.mean if a and b and b.mean > 0 else None


def q2_tables(exp: Experiment, ctx: Context) -> list[Table]:
    out = []
    for dataset, groups in panels(exp):
        models = ordered(groups, lambda g: g.config.get("model"))
        rows = q2_rows(groups)
        refs = {(r, m): ctx.ref.q2_row(g.config, r[0])
                for r in rows for m in models if (g := q2_find(groups, r, m))}
        has_seed = any(refs.values())
        pooled = _pooled(groups)
        best = best_group(groups)
        head = ["Compute", "Batch", "Optimizer", "LR"]
        acc_cols, time_cols = list(head), list(head)
        for m in models:
            name = labels.model(m)
            acc_cols += [f"{name} acc (%)", f"{name} last ep. (%)"]
            acc_cols += [f"{name} seed (%)", f"{name} Δ"] if has_seed else []
            time_cols += [f"{name} time (ms)"] + ([f"{name} seed (ms)"] if has_seed else [])
            time_cols += [f"{name} speedup"] + ([f"{name} seed speedup"] if has_seed else [])
        title = f"Q2: CPU vs GPU on {labels.dataset(dataset)}"
        acc = Table(table_id(ctx, exp, dataset, "accuracy"), f"{title}: accuracy ({exp.name})",
                    acc_cols)
        tim = Table(table_id(ctx, exp, dataset, "time"), f"{title}: training time "
                    f"({exp.name})", time_cols)
        for row in rows:
            a_cells, t_cells = _q2_cells(row, models, groups, refs, has_seed, best, pooled)
            acc.add(a_cells)
            tim.add(t_cells)
        acc.notes.append("Yardstick: " + panel_yardstick(groups).text + ".")
        tim.notes.append("Time: training wall time of all epochs, data loading included, "
                         "evaluation excluded. Speedup: CPU time ÷ GPU time of the same "
                         "configuration, on the GPU row.")
        if note := packed_note(groups):
            tim.notes.append(note)
        if has_seed:
            seed_epochs = ctx.ref.budget.get("q2", {}).get("epochs", 10)
            note = budget_note(exp, seed_epochs, _images_ratio(groups, seed_epochs))
            for t in (acc, tim):
                if note:
                    t.notes.append(note)
        out += [acc, tim]
    return out


def _q2_cells(row: tuple, models: list[str], groups: list[Group], refs: dict, has_seed: bool,
              best: Group | None, pooled) -> tuple[list[Cell | str], list[Cell | str]]:
    """One Q2 row's cells: (accuracy table, time table)."""
    device, batch, opt, lr = row
    lead = [labels.value("device", device), labels.value("batch_size", batch),
            labels.value("optimizer", opt), labels.value("lr", lr)]
    a_cells: list[Cell | str] = list(lead)
    t_cells: list[Cell | str] = list(lead)
    for m in models:
        g = q2_find(groups, row, m)
        ref = refs.get((row, m))
        if g is None:  # this arm has no run in the store yet
            g = Group({**next(x.config for x in groups if x.config.get("model") == m),
                       "device": device})
        a_cells += [acc_cell(g, best=best), acc_cell(g, "test_acc_last")]
        if has_seed:
            s = g.summary("test_acc") if g else None
            a_cells += list(seed_cells(s, ref[0] if ref else None,
                                       cell_yardstick(g, s, pooled) if g else None))
        t_cells.append(ms_cell(g))
        if has_seed:
            t_cells.append(Cell(f"{ref[1]:,.0f}", "num") if ref else Cell("–", "missing"))
        sp = speedup(groups, row, m)
        t_cells.append(Cell(f"{sp:.1f}×", "num") if sp else Cell("–", "missing"))
        if has_seed:
            cpu_ref = refs.get((("cpu", *row[1:]), m))
            seed_sp = cpu_ref[1] / ref[1] if row[0] == "cuda" and ref and cpu_ref else None
            t_cells.append(Cell(f"{seed_sp:.1f}×", "num") if seed_sp else Cell("–", "missing"))
    return a_cells, t_cells


SEED_TRAIN_IMAGES = 49_000  # the seed's 70 % training split of 70,000 images


def _images_ratio(groups: list[Group], seed_epochs: int) -> str:
    """How many more training images the seed's timed runs saw than ours, when it differs."""
    for g in groups:
        for r in g.done:
            n = r.result.extra.get("n_train")
            epochs = g.config.get("epochs")
            if n and epochs:
                ratio = seed_epochs * SEED_TRAIN_IMAGES / (epochs * n)
                if abs(ratio - 1) > 0.05:
                    return (f" (so its times cover about {ratio:.1f}× as many training images "
                            "as ours; compare speedups, not times)")
                return ""
    return ""


# -- FLOPs -------------------------------------------------------------------------------------
def trained_variant(ctx: Context, model: str) -> str:
    """The variant the study trains ``model`` with (native unless its DL runs say otherwise)."""
    seen = [g.config.get("variant", "native") for e in ctx.dl_experiments() for g in e.groups
            if g.config.get("model") == model]
    return max(set(seen), key=seen.count) if seen else "native"


@dataclass
class FlopsRow:
    model: str
    trained: dict | None  # the FLOPs result's extra at the trained input
    at224: dict | None  # ... at a 3x224x224 input


def flops_rows(exp: Experiment, ctx: Context) -> tuple[list[FlopsRow], list[Group]]:
    """One row per model, and the FLOPs runs the two columns did not use."""
    rows, used = [], set()
    for m in ordered(exp.groups, lambda g: g.config.get("model")):
        mine = [g for g in exp.groups if g.config.get("model") == m and g.done]
        var = trained_variant(ctx, m)
        trained = next((g for g in mine if g.config.get("variant") == var
                        and not g.config.get("input")), None)
        at224 = sorted((g for g in mine if list(g.done[0].result.extra.get("input", []))
                        == [3, 224, 224]), key=lambda g: g.config.get("variant") != "imagenet")
        at = at224[0] if at224 else None
        used |= {id(trained), id(at)}
        rows.append(FlopsRow(m, trained.done[0].result.extra if trained else None,
                             at.done[0].result.extra if at else None))
    rest = [g for g in exp.groups if id(g) not in used]
    return rows, rest


def _g(x: float | None, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if x is not None else "–"


def flops_tables(exp: Experiment, ctx: Context) -> list[Table]:
    rows, rest = flops_rows(exp, ctx)
    has_seed = any(r.model in ctx.ref.flops for r in rows)
    cols = ["Model", "Trained input", "GMACs", "GFLOPs", "GMACs at 3×224×224",
            "GFLOPs at 3×224×224", "Params (M)"]
    if has_seed:
        cols += ["Seed 'FLOPs (G)'", "Seed ÷ our GMACs at 224"]
    t = Table(table_id(ctx, exp, None), f"FLOPs per image, forward pass ({exp.name})", cols)
    for r in rows:
        tr, at = r.trained or {}, r.at224 or {}
        shape = "×".join(map(str, tr["input"])) if tr.get("input") else "–"
        params = tr.get("params") or at.get("params")
        cells: list[Cell | str] = [
            labels.model(r.model), shape,
            Cell(_g(_giga(tr.get("macs"))), "num"), Cell(_g(_giga(tr.get("flops"))), "num"),
            Cell(_g(_giga(at.get("macs"))), "num"), Cell(_g(_giga(at.get("flops"))), "num"),
            Cell(f"{params / 1e6:.2f}" if params else "–", "num")]
        if has_seed:
            seed = ctx.ref.flops.get(r.model)
            ours = _giga(at.get("macs"))
            cells.append(Cell(f"{seed:.3f}" if seed else "–", "num"))
            if seed and ours:
                ratio = seed / ours
                off = abs(ratio - 1) > 0.01  # counts are exact: 1 % is far beyond rounding
                cells.append(Cell(f"{ratio:.2f}" + (" ⚠" if off else ""),
                                  "flag num" if off else "num",
                                  "differs from our count by more than 1 %" if off else ""))
            else:
                cells.append(Cell("–", "missing"))
        t.add(cells)
    t.notes.append("MACs are multiply-accumulates; FLOPs = 2 × MACs (torch's FlopCounterMode: "
                   "convolutions and the final linear layer). Counts are exact, so there is no "
                   "run-to-run noise: a flag (ratio off 1 by > 1 %) means a different count.")
    out = [t]
    if rest:
        out += generic_tables(exp, ctx, rest, suffix="other")
    return out


def _giga(x) -> float | None:
    return x / 1e9 if x else None


# -- generic -----------------------------------------------------------------------------------
GENERIC_METRICS = {
    "dl": [("test_acc", "Acc (%)", 2), ("test_acc_last", "Last ep. (%)", 2),
           ("best_epoch", "Best ep.", 0), ("train_ms", "Train time (ms)", -1),
           ("epoch_s", "Epoch (s)", 2), ("images_per_s", "Images/s", -1)],
    "svm": [("test_acc", "Acc (%)", 2), ("train_ms", "Fit time (ms)", -1),
            ("predict_test_ms", "Predict test (ms)", -1), ("n_support", "Support vectors", -1)],
    "flops": [("gmacs", "GMACs", 3), ("gflops", "GFLOPs", 3), ("params", "Params", -1)],
}


def generic_tables(exp: Experiment, ctx: Context, groups: list[Group] | None = None,
                   suffix: str = "") -> list[Table]:
    groups = groups if groups is not None else exp.groups
    keys = list(exp.varying) or []
    metrics = GENERIC_METRICS.get(exp.kind, [])
    cols = [labels.KEYS.get(k, k) for k in keys] + [m[1] for m in metrics]
    if not keys:
        cols = ["Configuration"] + cols
    seeds = {id(g): ctx.ref.q1a_same_budget(g.config) for g in groups} if exp.kind == "dl" \
        else {}
    has_seed = any(v is not None for v in seeds.values())
    if has_seed:
        at = cols.index("Acc (%)") + 1
        cols[at:at] = ["Seed (%)", "Δ"]
    pooled = _pooled(groups)
    t = Table(table_id(ctx, exp, None, suffix), f"{exp.name}", cols)
    best = best_group(groups) if exp.kind in ("dl", "svm") else None
    for g in groups:
        cells: list[Cell | str] = [labels.value(k, g.config.get(k)) for k in keys]
        if not keys:
            cells.append(labels.config(g.config, [k for k in ("model", "dataset", "kernel")
                                                  if k in g.config]))
        for metric, _, digits in metrics:
            s = g.summary(metric)
            if s is None:
                cells.append(Cell(g.missing if not g.done else "–", "missing"))
            elif metric == "test_acc":
                cells.append(Cell(s.text(digits), "best num" if g is best else "num"))
            else:
                cells.append(Cell(s.text(max(digits, 0), thousands=digits < 0), "num"))
            if metric == "test_acc" and has_seed:
                cells += list(seed_cells(s, seeds[id(g)], cell_yardstick(g, s, pooled)))
        t.add(cells)
    if exp.kind in ("dl", "svm"):
        t.notes.append("Yardstick: " + panel_yardstick(groups).text + ".")
    if exp.kind == "dl" and (note := packed_note(groups)):
        t.notes.append(note)
    if has_seed:
        t.notes.append(SEED_Q1A_NOTE)
    return [t]


SEED_Q1A_NOTE = ("Seed: the seed's Q1(a) figure for the same dataset, model, batch size, "
                 "optimizer and learning rate (10 epochs, full split); the seed does not say which "
                 "input size or initial weights it used.")


BUILDERS = {"q1a": q1a_tables, "q1b": q1b_tables, "q2": q2_tables, "flops": flops_tables,
            "generic": generic_tables}


def tables_for(exp: Experiment, ctx: Context) -> list[Table]:
    return BUILDERS[exp.layout](exp, ctx)
