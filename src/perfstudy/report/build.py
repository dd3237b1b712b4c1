"""Assemble the report from the store: status, summary, one section per experiment (tables in
the seed's layouts, analysis, figures), comparisons across experiments, provenance."""

from __future__ import annotations

from perfstudy.errors import UsageError
from perfstudy.report import across, analysis, labels, plots, seed_reference
from perfstudy.report.budgets import epoch_tables
from perfstudy.report.claims import ordered_values, ranked
from perfstudy.report.document import Cell, Report, Section, Table
from perfstudy.report.experiments import Experiment, experiments
from perfstudy.report.stats import NOISE_FACTOR
from perfstudy.report.status import counts, counts_text, provenance_section, status_section
from perfstudy.report.tables import Context, flops_rows, panels, tables_for, trained_variant
from perfstudy.report.tta import DEFAULT_TARGETS, tta_tables
from perfstudy.study.store import Row, Store

TITLES = {
    "q1a": "test accuracy over batch size, optimizer and learning rate (the seed's Q1(a))",
    "q1b": "SVM accuracy and fit time over kernel, C and degree (the seed's Q1(b))",
    "q2": "CPU vs GPU: accuracy and training time (the seed's Q2)",
    "flops": "FLOPs and parameters (the seed's FLOPs analysis)",
    "generic": "",
}
FIXED_SHOWN = ("dataset", "model", "variant", "batch_size", "optimizer", "lr", "momentum",
               "weight_decay", "epochs", "pin_memory", "num_workers", "device", "engine",
               "train_subset", "eval_subset", "kernel", "C", "degree", "gamma", "coef0", "tol",
               "backend", "input")


def how_to_read() -> Section:
    k = f"{NOISE_FACTOR:g}"
    return Section("how-to-read", "How to read this report", paragraphs=[
        "**Accuracy** is the test accuracy (%) of the weights from the epoch with the best "
        "validation accuracy; the test split never selects anything. The last epoch's test "
        "accuracy stands beside it ('last ep.').",
        "**Cells** read mean ± std (n) over repeated runs (same configuration, different "
        "seed); a single run shows its value alone. pp = percentage points.",
        f"**Noise.** A difference is called *beyond noise* only when it is larger than {k}× "
        "the yardstick, and *within noise* otherwise. The yardstick is the run-to-run std of "
        "repeated runs, pooled within the table. Where every configuration ran once, the "
        "run-to-run spread is unknown and the binomial standard error of the test accuracy, "
        "sqrt(p(1−p)/n_test), stands in; it covers only the sampling of the test set, not "
        "seed-to-seed variation, so it understates the true noise. The effect of a setting, "
        "averaged over pairs of runs that differ only in it, is judged by the larger of the "
        "yardstick and the standard error of its pairs' differences (an effect that varies "
        "from pair to pair is less certain than one accuracy's noise suggests). Every table "
        "and sentence says which yardstick it used.",
        f"**Seed columns** give the figures the seed document reports; Δ = ours − seed, and ⚠ "
        f"marks a Δ larger than {k}× the yardstick. Where our budget differs from the seed's "
        "the table says so.",
    ])


def _fixed_text(exp: Experiment) -> str:
    shown = [f"{k}={_fixed_value(k, v)}" for k, v in exp.fixed.items()
             if k in FIXED_SHOWN and (v is not None or k in ("train_subset", "eval_subset"))]
    return "Fixed settings: " + ", ".join(shown) + "." if shown else ""


def _fixed_value(k: str, v) -> str:
    if v is None:
        return "full split"
    return str(v) if k in ("dataset", "model", "optimizer", "device", "kernel") else \
        labels.value(k, v)


def _sizes_text(exp: Experiment) -> str:
    sizes = sorted({(r.result.extra.get("n_train"), r.result.extra.get("n_test"))
                    for r in exp.rows if r.result and r.result.extra.get("n_train")})
    if not sizes:
        return ""
    parts = [f"{a:,} training / {b:,} test images" for a, b in sizes if a and b]
    return "Data: " + "; ".join(parts) + "." if parts else ""


def experiment_section(exp: Experiment, ctx: Context, description: str = "") -> Section:
    title = f"{exp.name}: {TITLES[exp.layout]}" if TITLES[exp.layout] else exp.name
    sec = Section(f"{ctx.prefix}{exp.name}", title)
    about = f"From the study file: {description.strip()}" if description.strip() else ""
    sec.paragraphs += [p for p in (about, counts_text(counts(exp.rows)) + ".", _fixed_text(exp),
                                   _sizes_text(exp)) if p]
    if exp.layout == "generic" and exp.varying:
        sec.paragraphs.append("Varies: " + ", ".join(exp.varying) + ".")
    sec.tables += tables_for(exp, ctx)
    if exp.kind == "dl":
        sec.tables += epoch_tables(exp, ctx)
    sec.bullets += analysis.for_experiment(exp, ctx)
    sec.figures += [f for f in _figures(exp, ctx) if f is not None]
    return sec


def _figures(exp: Experiment, ctx: Context) -> list:
    fid = f"{ctx.prefix}{exp.name}"
    out = []
    if exp.layout == "q1a":
        for d, groups in panels(exp):
            ds = labels.dataset(d)
            out.append(plots.accuracy_bars(f"{fid}-{d}-accuracy", f"{exp.name}, {ds}: test "
                                           "accuracy by batch / optimizer / lr", groups, ctx.ref))
            out.append(plots.learning_curves(f"{fid}-{d}-curves", f"{exp.name}, {ds}: "
                                             "learning curves", groups))
    elif exp.layout == "q1b":
        out.append(plots.svm_plot(f"{fid}-svm", f"{exp.name}: SVM accuracy and fit time vs C",
                                  exp.groups))
    elif exp.layout == "q2":
        for d, groups in panels(exp):
            out.append(plots.device_times(f"{fid}-{d}-time", f"{exp.name}, "
                                          f"{labels.dataset(d)}: CPU vs GPU training time",
                                          groups))
    elif exp.kind == "dl":
        for d, groups in panels(exp):
            if len(groups) > 1:
                out.append(plots.learning_curves(f"{fid}-{d}-curves", f"{exp.name}, "
                                                 f"{labels.dataset(d)}: learning curves",
                                                 groups))
    return out


def across_section(ctx: Context) -> Section:
    sec = Section(f"{ctx.prefix}across", "Across experiments: DL vs SVM, speedups, "
                  "accuracy per GFLOP, time to accuracy", bullets_first=True)
    sec.bullets += across.dl_vs_svm(ctx)
    for e in ctx.experiments:
        if e.layout == "q2":
            for _, groups in panels(e):
                sec.bullets += analysis.speedup_sentences(groups, ctx)
    sec.bullets += across.accuracy_per_gflop(ctx)
    tables, sentences = tta_tables(ctx)
    sec.bullets += sentences
    sec.tables += tables
    fig = plots.accuracy_vs_flops(f"{ctx.prefix}accuracy-vs-flops", _flops_points(ctx))
    if fig:
        sec.figures.append(fig)
    if not (sec.bullets or sec.tables):
        sec.paragraphs.append("Nothing to compare across experiments yet (needs DL and SVM "
                              "runs, CPU/GPU pairs, FLOPs counts, or per-epoch curves).")
    return sec


def _flops_points(ctx: Context) -> list[tuple[str, str, float, float]]:
    gflops = {r.model: r.trained["flops"] / 1e9 for e in ctx.experiments if e.layout == "flops"
              for r in flops_rows(e, ctx)[0] if r.trained and r.trained.get("flops")}
    pool = across.dl_pool(ctx)
    points = []
    for d in ordered_values(pool, "dataset"):
        for m, gf in gflops.items():
            mine = [g for g in pool if g.config.get("dataset") == d
                    and g.config.get("model") == m
                    and g.config.get("variant", "native") == trained_variant(ctx, m)]
            r = ranked(mine)
            if r:
                points.append((d, m, gf, r[0][1].mean))
    return points


def headline_table(ctx: Context) -> Table:
    """Which configuration is best in each table, by how much, and is that beyond the noise."""
    t = Table(f"{ctx.prefix}best", "Best configuration per table",
              ["Table", "Best", "Value", "Runner-up", "Runner-up value", "Margin",
               "Yardstick", "Verdict"])
    for h in ctx.headlines:
        css = {"beyond noise": "best", "within noise": "missing"}.get(h.verdict, "")
        t.add([h.table, h.best, Cell(h.value, "num"), h.runner_up, Cell(h.runner_value, "num"),
               Cell(h.margin, "num"), h.yardstick, Cell(h.verdict, css)])
    t.notes.append(f"Beyond noise: margin > {NOISE_FACTOR:g}× the yardstick. Accuracy tables "
                   "rank by test accuracy at the best-validation epoch; tables that vary only "
                   "speed settings rank by training images/s.")
    return t


def _headline(sentence: str) -> bool:
    return sentence.startswith("**") or sentence.startswith("CPU→GPU speedup")


def build_report(store: Store, study: str | None = None,
                 targets: dict[str, float] | None = None, source: str | None = None) -> Report:
    names = store.studies()
    if study is not None:
        if study not in names:
            have = ", ".join(names) or "none"
            raise UsageError(f"{store.path}: no study {study!r} stored (studies: {have})")
        names = [study]
    if not names:
        raise UsageError(f"{store.path}: no runs stored yet (run a study first)")
    ref = seed_reference.load()
    targets = {**DEFAULT_TARGETS, **(targets or {})}
    rows_by_study = {s: store.rows(study=s) for s in names}
    several = len(names) > 1
    all_exps = experiments(rows_by_study)
    unique: dict[str, Row] = {r.key: r for rows in rows_by_study.values() for r in rows}
    report = Report(f"perfstudy report: {'studies ' if several else 'study '}{', '.join(names)}",
                    f"{len(unique)} runs from {source or store.path}")
    report.sections.append(status_section(all_exps, list(unique.values()), several))
    report.sections.append(how_to_read())
    for s in names:
        ctx = Context([e for e in all_exps if e.study == s], ref, targets,
                      f"{s}-" if several else "")
        about = store.descriptions(s)
        secs = [experiment_section(e, ctx, about.get(e.name, "")) for e in ctx.experiments]
        secs.append(across_section(ctx))
        if several:
            report.sections.append(Section(f"study-{s}", f"Study {s}", children=secs))
        else:
            report.sections += secs
        for sec in secs:
            report.summary += [b for b in sec.bullets
                               if _headline(b) and b not in report.summary]
        if ctx.headlines:
            report.summary_tables.append(headline_table(ctx))
    report.sections.append(provenance_section(list(unique.values()), source or store.path))
    return report
