"""Comparisons across experiments: the best deep model against the best SVM per dataset, and
accuracy per GFLOP of forward compute at the input each model was trained on."""

from __future__ import annotations

from perfstudy.report import labels
from perfstudy.report.claims import describe, ordered_values, ranked
from perfstudy.report.experiments import Group
from perfstudy.report.stats import accuracy_yardstick, signed
from perfstudy.report.tables import Context, flops_rows, trained_variant


def dl_pool(ctx: Context) -> list[Group]:
    """The DL groups a cross-table comparison draws from: the Q1(a) tables if there are any
    (the study's main accuracy grid), else every DL experiment."""
    q1a = [g for e in ctx.experiments if e.layout == "q1a" for g in e.groups]
    return q1a or [g for e in ctx.dl_experiments() for g in e.groups]


def dl_vs_svm(ctx: Context) -> list[str]:
    dl = dl_pool(ctx)
    svm = [g for e in ctx.experiments if e.kind == "svm" for g in e.groups]
    out = []
    datasets = []
    for g in dl + svm:
        if g.config.get("dataset") not in datasets:
            datasets.append(g.config.get("dataset"))
    for d in datasets:
        a = ranked([g for g in dl if g.config.get("dataset") == d])
        b = ranked([g for g in svm if g.config.get("dataset") == d])
        if not a or not b:
            continue
        (ga, sa), (gb, sb) = a[0], b[0]
        lower = min((ga, sa), (gb, sb), key=lambda t: t[1].mean)
        # repeats of one side say nothing about the other's noise: pool only if both have them
        yard = accuracy_yardstick([sa, sb] if sa.n > 1 and sb.n > 1 else [], lower[1].mean,
                                  lower[0].n_test)
        diff = sa.mean - sb.mean
        ta, tb = ga.summary("train_ms"), gb.summary("train_ms")
        times = (f" Training time {ta.mean:,.0f} ms{_pack_phrase(ga)} vs fit time "
                 f"{tb.mean:,.0f} ms ({ta.mean / tb.mean:.1f}×)." if ta and tb and tb.mean
                 else "")
        sizes = _sizes(ga, gb)
        out.append(
            f"**{labels.dataset(d)}, deep learning vs SVM**: best deep model "
            f"{describe(ga, ['model', 'optimizer', 'lr', 'batch_size'])} {sa.mean:.2f} % vs best "
            f"SVM {describe(gb, ['kernel_degree', 'C'])} {sb.mean:.2f} %: {signed(diff)} pp, "
            f"**{yard.judge(diff)}** ({yard.ratio(diff)}; {yard.short}).{times}{sizes}")
    return out


def _pack_phrase(g: Group) -> str:
    """Where the deep model's runs trained in a pack, their time is the pack's wall time."""
    sizes = sorted({r.result.extra.get("pack_size") or 1 for r in g.done} - {1})
    if not sizes:
        return ""
    return (f" (the shared wall time of a pack of {' or '.join(map(str, sizes))} runs at once "
            "on one GPU)")


def _sizes(ga: Group, gb: Group) -> str:
    na = ga.done[0].result.extra.get("n_train")
    nb = gb.done[0].result.extra.get("n_train")
    if na and nb and na != nb:
        return (f" Note the training sets differ: {na:,} images ({ga.config.get('epochs')} "
                f"epoch(s)) for the deep model, {nb:,} for the SVM.")
    return ""


def accuracy_per_gflop(ctx: Context) -> list[str]:
    """Best test accuracy per model and dataset ÷ its forward GFLOPs at the trained input."""
    gflops = {}
    for e in ctx.experiments:
        if e.layout == "flops":
            for r in flops_rows(e, ctx)[0]:
                if r.trained and r.trained.get("flops"):
                    gflops[r.model] = r.trained["flops"] / 1e9
    if not gflops:
        return []
    out = []
    dl = dl_pool(ctx)
    for d in ordered_values(dl, "dataset"):
        best = {}
        for m in gflops:
            mine = [g for g in dl if g.config.get("dataset") == d and g.config.get("model") == m
                    and g.config.get("variant", "native") == trained_variant(ctx, m)]
            r = ranked(mine)
            if r:
                best[m] = r[0]
        if not best:
            continue
        parts = [f"{labels.model(m)} {s.mean:.2f} % at {gflops[m]:.3f} GFLOPs = "
                 f"{s.mean / gflops[m]:,.1f} %/GFLOP"
                 for m, (g, s) in sorted(best.items(), key=lambda kv: gflops[kv[0]])]
        text = f"**Accuracy per GFLOP, {labels.dataset(d)}**: " + "; ".join(parts) + "."
        if len(best) > 1:
            cheap = min(best, key=lambda m: gflops[m])
            acc_best = max(best, key=lambda m: best[m][1].mean)
            if acc_best != cheap:
                sa, sc = best[acc_best][1], best[cheap][1]
                yard = accuracy_yardstick([sa, sc], sc.mean, best[cheap][0].n_test)
                diff = sa.mean - sc.mean
                text += (f" {labels.model(acc_best)} costs {gflops[acc_best] / gflops[cheap]:.1f}"
                         f"× the compute of {labels.model(cheap)} for {signed(diff)} pp "
                         f"(**{yard.judge(diff)}**).")
            else:
                text += (f" The cheaper of these {len(best)} models, {labels.model(cheap)}, "
                         "is also the more accurate." if len(best) == 2 else
                         f" The cheapest of these {len(best)} models, {labels.model(cheap)}, "
                         "is also the most accurate.")
        out.append(text)
    return out
