"""Each table's analysis, computed from the data: Q1(a) and Q1(b) best configuration, effects
and seed comparison; Q2 speedups and device effect; FLOPs against the seed's; any other
experiment per dataset. A difference the yardstick cannot separate from noise is called so.
"""

from __future__ import annotations

from collections.abc import Sequence

from perfstudy.report import labels
from perfstudy.report.claims import (
    SPEED_KEYS,
    SPEED_ONLY,
    best_sentence,
    describe,
    effect_sentences,
    effect_yardstick,
    fastest_sentence,
    ordered_values,
    ranked,
    same_accuracy,
    speed_sentences,
    varied,
)
from perfstudy.report.experiments import Experiment, Group
from perfstudy.report.seed_compare import (
    cell_yardstick,
    flagged_summary,
    mnist_record_note,
    resnet32_note,
    seed_best_note,
)
from perfstudy.report.stats import Effect, Yardstick, geomean, pooled_std, signed
from perfstudy.report.tables import (
    Context,
    flops_rows,
    panel_yardstick,
    panels,
    q2_find,
    q2_rows,
    speedup,
)


# -- per layout --------------------------------------------------------------------------------
def q1a(exp: Experiment, ctx: Context) -> list[str]:
    out = []
    for dataset, groups in panels(exp):
        keys = ["model", "optimizer", "lr", "batch_size"]
        yard = panel_yardstick(groups)
        out.append(best_sentence(f"Q1(a) {labels.dataset(dataset)}", groups, keys, yard,
                                 ctx.headlines))
        out += effect_sentences(groups, varied(groups, keys), yard)
        out += _q1a_seed(groups, ctx, dataset)
    return out


def _q1a_seed(groups: Sequence[Group], ctx: Context, dataset: str | None) -> list[str]:
    pooled = pooled_std(g.summary("test_acc") for g in groups)
    keys = ["model", "optimizer", "lr", "batch_size"]
    pairs, seed_vals, ours = [], {}, {}
    for g in groups:
        seed = ctx.ref.q1a_acc(g.config)
        s = g.summary("test_acc")
        if seed is None:
            continue
        lab = describe(g, keys)
        seed_vals[lab] = seed
        if s is not None:
            ours[lab] = s
            pairs.append((lab, s, seed, cell_yardstick(g, s, pooled[0] if pooled else None)))
    out = [x for x in (flagged_summary(pairs), seed_best_note(seed_vals, ours)) if x]
    if dataset == "mnist" and seed_vals:
        mine = {(g.config.get("model"), g.config.get("batch_size"), g.config.get("optimizer"),
                 round(float(g.config.get("lr")), 12)): s
                for g in groups if (s := g.summary("test_acc"))}
        note = mnist_record_note(ctx.ref, mine)
        if note:
            out.append(note)
    return out


def q1b(exp: Experiment, ctx: Context) -> list[str]:
    out = []
    for dataset, groups in panels(exp):
        keys = ["kernel_degree", "C"]
        factors = varied(groups, keys)
        yard = panel_yardstick(groups)
        out.append(best_sentence(f"Q1(b) SVM, {labels.dataset(dataset)}", groups, keys, yard,
                                 ctx.headlines))
        out += effect_sentences(groups, factors, yard)
        out += speed_sentences(groups, factors, "train_ms", "fit time")
        fastest = min(((g, s) for g in groups if (s := g.summary("train_ms"))),
                      key=lambda t: t[1].mean, default=None)
        if fastest:
            g, s = fastest
            acc = g.summary("test_acc")
            out.append(f"Fastest fit on {labels.dataset(dataset)}: {describe(g, keys)} in "
                       f"{s.mean:,.0f} ms ({acc.mean:.2f} %).")
        pooled = pooled_std(g.summary("test_acc") for g in groups)
        pairs = []
        for g in groups:
            ref = ctx.ref.q1b_row(g.config)
            s = g.summary("test_acc")
            if ref and s:
                pairs.append((describe(g, ["kernel_degree", "C"]), s, ref[0],
                              cell_yardstick(g, s, pooled[0] if pooled else None)))
        if (note := flagged_summary(pairs)):
            out.append(note)
    return out


def q2(exp: Experiment, ctx: Context) -> list[str]:
    out = []
    for dataset, groups in panels(exp):
        keys = ["device", "model", "optimizer"] + varied(groups, ["lr", "batch_size"])
        yard = panel_yardstick(groups)
        out.append(best_sentence(f"Q2 {labels.dataset(dataset)}", groups, keys, yard,
                                 ctx.headlines))
        out += speedup_sentences(groups, ctx)
        out += effect_sentences(groups, varied(groups, ["model", "optimizer", "lr",
                                                         "batch_size"]), yard)
        out += _device_accuracy(groups, yard)
        pooled = pooled_std(g.summary("test_acc") for g in groups)
        pairs, by_model = [], {}
        for g in groups:
            ref = ctx.ref.q2_row(g.config, g.device)
            s = g.summary("test_acc")
            if s:
                by_model.setdefault(g.config.get("model"), []).append(s.mean)
            if ref and s:
                pairs.append((describe(g, ["device", "model", "optimizer"]), s, ref[0],
                              cell_yardstick(g, s, pooled[0] if pooled else None)))
        if (note := flagged_summary(pairs)):
            out.append(note)
        if pairs and (note := resnet32_note(ctx.ref, by_model)):
            out.append(note)
    return out


def speedup_sentences(groups: Sequence[Group], ctx: Context) -> list[str]:
    """CPU→GPU speedup per model: CPU time ÷ GPU time over configurations run on both."""
    out = []
    rows = [r for r in q2_rows(groups) if r[0] == "cuda"]
    for m in ordered_values(groups, "model"):
        sps = [sp for r in rows if (sp := speedup(groups, r, m))]
        if not sps:
            continue
        seeds = []
        for r in rows:
            g = q2_find(groups, r, m)
            gpu = ctx.ref.q2_row(g.config, "cuda") if g else None
            cpu = ctx.ref.q2_row(g.config, "cpu") if g else None
            if gpu and cpu:
                seeds.append(cpu[1] / gpu[1])
        rng = f"; range {min(sps):.1f}–{max(sps):.1f}×" if len(sps) > 1 else ""
        machines = _machines(groups)
        on = f" ({machines})" if machines else ""
        text = (f"CPU→GPU speedup, {labels.model(m)}{on}: {geomean(sps):.1f}× (geometric mean "
                f"over {len(sps)} configuration(s) run on both{rng})")
        if seeds:
            text += (f"; the seed's: {min(seeds):.1f}–{max(seeds):.1f}×" if len(seeds) > 1
                     else f"; the seed's: {seeds[0]:.1f}×")
        out.append(text + ".")
    if not out and any(g.device == "cuda" and not g.done for g in groups):
        out.append("CPU→GPU speedup: no GPU run has finished yet, so no speedup can be given.")
    return out


def _device_accuracy(groups: Sequence[Group], yard: Yardstick) -> list[str]:
    diffs = []
    for r in q2_rows(groups):
        if r[0] != "cuda":
            continue
        for m in ordered_values(groups, "model"):
            gpu, cpu = q2_find(groups, r, m), q2_find(groups, ("cpu", *r[1:]), m)
            a = gpu.summary("test_acc") if gpu else None
            b = cpu.summary("test_acc") if cpu else None
            if a and b:
                diffs.append(a.mean - b.mean)
    if not diffs:
        return []
    e = Effect("device", "cpu", "cuda", tuple(diffs))
    by = effect_yardstick(e, yard)
    return [f"Accuracy GPU − CPU: {signed(e.mean)} pp on average over {e.n} pair(s) "
            f"(range {signed(min(diffs))} to {signed(max(diffs))}): **{by.judge(e.mean)}** "
            f"({by.ratio(e.mean)}). The device should change speed, not what is learned; but "
            "a CPU and a GPU run of one seed are not the same computation (other engines, "
            "other random streams for the data order), so with one run each a difference "
            "holds training noise as well."]


def _machines(groups: Sequence[Group]) -> str:
    """'CPU: Xeon (4 threads) vs NVIDIA H200': what the speedups compare, from provenance."""
    names = {}
    for g in groups:
        for r in g.done:
            if (n := r.result.provenance.get("device_name")):
                names.setdefault(g.device, set()).add(n)
    parts = ["; ".join(sorted(names[d])) for d in ("cpu", "cuda") if d in names]
    return " vs ".join(parts)


def flops(exp: Experiment, ctx: Context) -> list[str]:
    rows, _ = flops_rows(exp, ctx)
    out = []
    have = [r for r in rows if r.trained and r.trained.get("flops")]
    if len(have) > 1:
        lo = min(have, key=lambda r: r.trained["flops"])
        parts = [f"{labels.model(r.model)} {r.trained['flops'] / lo.trained['flops']:.1f}×"
                 for r in have if r is not lo]
        out.append(f"Compute per image at the trained input, relative to the cheapest "
                   f"({labels.model(lo.model)}, {lo.trained['flops'] / 1e9:.3f} GFLOPs): "
                   f"{', '.join(parts)}.")
    seeds = [(r, ctx.ref.flops[r.model]) for r in rows if r.model in ctx.ref.flops]
    if seeds:
        parts = []
        for r, seed in seeds:
            at = r.at224.get("macs") / 1e9 if r.at224 and r.at224.get("macs") else None
            tr = r.trained.get("macs") / 1e9 if r.trained and r.trained.get("macs") else None
            bits = [f"{labels.model(r.model)} {seed:.3f}"]
            if at:
                bits.append(f"{seed / at:.2f}× our 3×224×224 GMACs ({at:.3f})")
            if tr:
                bits.append(f"{seed / tr:.1f}× our GMACs at the trained "
                            f"{'×'.join(map(str, r.trained['input']))} input ({tr:.3f})")
            parts.append(", ".join(bits))
        out.append("Seed oddity: the seed's 'FLOPs (G)' are MAC-sized (FLOPs = 2 × MACs) and fit "
                   "only 224×224 inputs, while the models are trained on 28×28 images: "
                   + "; ".join(parts) + ". A ratio far from 1 at 224×224 (ResNet-32's) matches "
                   "no network we can build; ours are measured.")
    return out


def generic(exp: Experiment, ctx: Context) -> list[str]:
    """Any other experiment, per dataset: the best setting (or, where only speed knobs vary,
    the fastest), the effect of each varied key, and the speed effect of speed knobs."""
    if exp.kind not in ("dl", "svm"):
        return []
    out = []
    several = "dataset" in exp.varying
    for dataset, groups in panels(exp):
        title = f"{exp.name}, {labels.dataset(dataset)}" if several else exp.name
        keys = [k for k in exp.varying if k != "dataset"]
        yard = panel_yardstick(groups)
        speed_only = bool(keys) and all(k in SPEED_ONLY for k in keys) and exp.kind == "dl"
        out.append(fastest_sentence(title, groups, keys, ctx.headlines) if speed_only
                   else best_sentence(title, groups, keys, yard, ctx.headlines))
        out += effect_sentences(groups, [k for k in keys if k not in SPEED_ONLY], yard)
        if speed_only:
            out += same_accuracy(groups, keys, yard)
        speed = [k for k in keys if k in SPEED_KEYS]
        if exp.kind == "dl" and speed:
            out += speed_sentences(groups, speed, "images_per_s", "images/s")
        if exp.kind == "dl":
            out += _seed_same_budget(groups, keys, ctx)
        if not speed_only:
            fast = ranked(groups, "images_per_s" if exp.kind == "dl" else "train_ms")
            if len(fast) > 1:
                g, s = fast[0] if exp.kind == "dl" else fast[-1]
                what = (f"{s.mean:,.0f} training images/s" if exp.kind == "dl"
                        else f"{s.mean:,.0f} ms fit time")
                out.append(f"Fastest in {title}: {describe(g, keys)} at {what}.")
    return out


def _seed_same_budget(groups: Sequence[Group], keys: list[str], ctx: Context) -> list[str]:
    """Runs of another experiment that trained a seed Q1(a) cell with the seed's budget."""
    pooled = pooled_std(g.summary("test_acc") for g in groups)
    pairs = [(describe(g, keys), s, seed, cell_yardstick(g, s, pooled[0] if pooled else None))
             for g in groups if (seed := ctx.ref.q1a_same_budget(g.config)) is not None
             and (s := g.summary("test_acc")) is not None]
    note = flagged_summary(pairs, "Against the seed's Q1(a) figure for the same cell")
    return [note] if note else []


BY_LAYOUT = {"q1a": q1a, "q1b": q1b, "q2": q2, "flops": flops, "generic": generic}


def for_experiment(exp: Experiment, ctx: Context) -> list[str]:
    return BY_LAYOUT[exp.layout](exp, ctx)
