"""The sentences every table's analysis is made of: the best configuration against the
runner-up and the noise, the effect of each factor with its spread, and the effect of speed
settings on a time or speed. Every number comes from the groups' stored results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from perfstudy.report import labels
from perfstudy.report.experiments import Group, metric_of
from perfstudy.report.stats import (
    NOISE_FACTOR,
    Summary,
    Yardstick,
    effects,
    log_yardstick,
    ratio_effects,
    signed,
    verdict,
)

SPEED_KEYS = ("pin_memory", "num_workers", "engine", "device", "batch_size")
SPEED_ONLY = ("pin_memory", "num_workers", "engine", "device")  # no effect on what is learned


def kernel_degree(cfg: dict) -> str:
    """SVM kernels as one factor: RBF, Poly d2, Poly d3... (degree only exists for poly)."""
    k = labels.value("kernel", cfg.get("kernel"))
    return f"{k} d{cfg.get('degree')}" if cfg.get("kernel") == "poly" else k


def factor_value(group: Group, factor: str):
    """A group's value of a factor; two factors are derived (kernel with its degree, and the
    device an ``auto`` run really used)."""
    if factor == "kernel_degree":
        return kernel_degree(group.config)
    if factor == "device":
        return group.device
    return group.config.get(factor)


def describe(group: Group, keys: Sequence[str]) -> str:
    """The group's settings of ``keys`` as a phrase: ``ResNet-50 · Adam · lr 0.001``."""
    return " · ".join(labels.setting(k, factor_value(group, k)) for k in keys) or "the one setting"


def factor_name(factor: str) -> str:
    """How a factor is named in a sentence."""
    return "kernel" if factor == "kernel_degree" else labels.KEYS.get(factor, factor)


def ranked(groups: Sequence[Group], metric: str = "test_acc") -> list[tuple[Group, Summary]]:
    """Groups with a result, highest mean first."""
    scored = [(g, g.summary(metric)) for g in groups]
    return sorted(((g, s) for g, s in scored if s is not None), key=lambda t: -t[1].mean)


@dataclass
class Headline:
    """One table's answer, for the summary table: best, runner-up, margin, verdict."""

    table: str
    best: str
    value: str
    runner_up: str = "–"
    runner_value: str = "–"
    margin: str = "–"
    yardstick: str = "–"
    verdict: str = "–"


def best_sentence(title: str, groups: Sequence[Group], keys: Sequence[str],
                  yard: Yardstick, sink: list[Headline] | None = None) -> str:
    """The best configuration, the runner-up, and the margin against the yardstick."""
    text, head = _best(title, groups, keys, yard)
    if sink is not None and head is not None:
        sink.append(head)
    return text


def _yard_cell(yard: Yardstick) -> str:
    if yard.value is None:
        return "unknown"
    kind = {"repeats": "std of repeats", "binomial": "binomial SE"}[yard.source]
    return f"{yard.value:.2f} pp ({kind})"


def _best(title: str, groups: Sequence[Group], keys: Sequence[str],
          yard: Yardstick) -> tuple[str, Headline | None]:
    r = ranked(groups)
    waiting = sum(not g.done for g in groups)
    pending = f" ({waiting} configuration(s) without a result yet)" if waiting else ""
    if not r:
        return f"**{title}**: no finished runs yet{pending}.", None
    g, s = r[0]
    head_row = Headline(title, describe(g, keys), f"{s.text()} %")
    last = g.summary("test_acc_last")
    when = (f" (best-validation epoch; last epoch {last.mean:.2f} %)" if last else "")
    head = f"**{title}**: best {describe(g, keys)} at {s.text()} % test accuracy{when}"
    if len(r) == 1:
        return (f"{head}; the only configuration with a result, nothing to compare{pending}.",
                head_row)
    g2, s2 = r[1]
    d = s.mean - s2.mean
    v = yard.judge(d)
    head_row.runner_up, head_row.runner_value = describe(g2, keys), f"{s2.text()} %"
    head_row.margin, head_row.yardstick, head_row.verdict = f"{d:.2f} pp", _yard_cell(yard), v
    close = [x for x, sx in r[1:] if yard.value and s.mean - sx.mean <= NOISE_FACTOR * yard.value]
    text = (f"{head}; runner-up {describe(g2, keys)} at {s2.text()} %. Margin {d:.2f} pp = "
            f"{yard.ratio(d)}: **{v}** ({yard.short})")
    if v == "within noise" and len(close) > 1:
        text += f"; {len(close)} configurations are within noise of the best"
    return text + f"{pending}.", head_row


def _points(groups: Sequence[Group], factors: Sequence[str], metric: str) -> list:
    """(the factors' and held-fixed keys' values, mean of ``metric``) per group with a result."""
    keys = [*factors, *held_fixed(groups, factors)]
    points = []
    for g in groups:
        s = g.summary(metric)
        if s is not None:
            points.append(({f: factor_value(g, f) for f in keys}, s.mean))
    return points


def effect_sentences(groups: Sequence[Group], factors: Sequence[str], yard: Yardstick,
                     metric: str = "test_acc") -> list[str]:
    """Per factor: mean difference between its values over pairs that differ only in it."""
    points = _points(groups, factors, metric)
    out = []
    for f in factors:
        order, numeric = _factor_order(groups, f)
        for e in effects(points, f, order, successive=numeric):
            hi, lo = labels.setting(f, e.high), labels.setting(f, e.low)
            spread = f"std {e.std:.2f} pp, " if e.std is not None else ""
            by = effect_yardstick(e, yard)
            out.append(
                f"Effect of {factor_name(f)}: {hi} vs {lo} {signed(e.mean)} pp on average "
                f"over {e.n} pair(s) of runs that differ only in it ({spread}{hi} ahead in "
                f"{e.wins} of {e.n}): "
                f"**{by.judge(e.mean)}** ({by.ratio(e.mean)}).")
    return out


def effect_yardstick(e, yard: Yardstick) -> Yardstick:
    """An effect averaged over pairs is noisy twice over: each accuracy (the table's yardstick)
    and the effect's own variation between pairs. The larger of the two judges it, so a mean
    that half the pairs contradict is not called beyond noise for being larger than the
    noise of one accuracy."""
    se = e.se
    if se is not None and (yard.value is None or se > yard.value):
        return Yardstick(se, "pairs", "", "", f"the pairs' standard error, {se:.2f} pp")
    return yard


def speed_sentences(groups: Sequence[Group], factors: Sequence[str], metric: str,
                    what: str) -> list[str]:
    """Per speed knob: the ratio of ``metric`` (a speed or a time) between its values."""
    yard = log_yardstick([[v for r in g.done if (v := metric_of(r, metric))] for g in groups],
                         what)
    points = _points(groups, factors, metric)
    out = []
    for f in factors:
        order, numeric = _factor_order(groups, f)
        parts = []
        for e in ratio_effects(points, f, order, successive=numeric):
            hi, lo = labels.setting(f, e.high), labels.setting(f, e.low)
            rng = f", range ×{min(e.diffs):.2f}–×{max(e.diffs):.2f}" if e.n > 1 else ""
            v = verdict(math.log(e.mean), yard.value)
            judged = f": **{v}**" if yard.value else ""
            parts.append(f"{hi} vs {lo} ×{e.mean:.2f} ({e.n} pair(s){rng}; {hi} higher in "
                         f"{e.wins} of {e.n}){judged}")
        if parts:
            tail = (f"({yard.short})" if yard.value else
                    f"({yard.short}, so not judged against noise)")
            out.append(f"Effect of {factor_name(f)} on {what}, geometric mean over pairs of "
                       f"runs that differ only in it: {'; '.join(parts)} {tail}.")
    return out


def _factor_order(groups: Sequence[Group], factor: str) -> tuple[list, bool]:
    """A factor's values in the order effects compare them: numbers ascending, each step
    against the one below (lr 0.0001 → 0.001, C 0.1 → 1 → 10); names in the study's order,
    each against the first (Poly d2 vs RBF, Poly d3 vs RBF)."""
    order = ordered_values(groups, factor)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in order)
    return (sorted(order) if numeric else order), numeric


def ordered_values(groups: Sequence[Group], factor: str) -> list:
    """Distinct values of a factor in the order the study lists them."""
    out: list = []
    for g in groups:
        v = factor_value(g, factor)
        if v not in out:
            out.append(v)
    return out


def held_fixed(groups: Sequence[Group], factors: Sequence[str]) -> list[str]:
    """Every other key that varies between the groups (device, epochs...): a pair compared
    for one factor must agree on all of them, not only on the factors being reported."""
    keys = {k for g in groups for k in g.config} - {"kind", *factors}
    if "kernel_degree" in factors:
        keys -= {"kernel", "degree"}
    return sorted(k for k in keys if len({repr(factor_value(g, k)) for g in groups}) > 1)


def varied(groups: Sequence[Group], keys: Sequence[str]) -> list[str]:
    """The keys whose value differs between groups."""
    return [k for k in keys if len({repr(factor_value(g, k)) for g in groups}) > 1]


def fastest_sentence(title: str, groups: Sequence[Group], keys: Sequence[str],
                     sink: list[Headline] | None = None) -> str:
    """For experiments that vary only speed knobs (pin_memory, workers, engine, device): the
    fastest setting by training images/s, against the timing noise where repeats give one."""
    r = ranked(groups, "images_per_s")
    if not r:
        return f"**{title}**: no finished runs yet."
    g, s = r[0]
    head = f"**{title}**: fastest {describe(g, keys)} at {s.text(0, True)} training images/s"
    row = Headline(title, describe(g, keys), f"{s.text(0, True)} images/s")
    if sink is not None:
        sink.append(row)
    if len(r) == 1:
        return head + "; the only configuration with a result."
    g2, s2 = r[1]
    yard = log_yardstick([[v for x in gr.done if (v := metric_of(x, "images_per_s"))]
                          for gr in groups], "images/s")
    ratio = s.mean / s2.mean
    v = verdict(math.log(ratio), yard.value)
    judged = (f"**{v}** ({yard.short})" if yard.value
              else f"{yard.short}, so not judged against noise")
    row.runner_up, row.runner_value = describe(g2, keys), f"{s2.text(0, True)} images/s"
    row.margin = f"×{ratio:.2f}"
    row.yardstick = yard.short if yard.value else "unknown (no repeats)"
    row.verdict = v if yard.value else "not judged"
    return (f"{head}; runner-up {describe(g2, keys)} at {s2.text(0, True)}: ×{ratio:.2f}, "
            f"{judged}.")


def same_accuracy(groups: Sequence[Group], keys: Sequence[str], yard: Yardstick) -> list[str]:
    """Settings that only change speed should not change accuracy: say whether they did."""
    r = ranked(groups)
    if len(r) < 2:
        return []
    spread = r[0][1].mean - r[-1][1].mean
    return [f"Test accuracy across these settings spans {spread:.2f} pp "
            f"({r[-1][1].mean:.2f}–{r[0][1].mean:.2f} %): **{yard.judge(spread)}** "
            f"({yard.ratio(spread)}; {yard.short}); "
            f"{', '.join(factor_name(k) for k in keys)} should change speed, not accuracy."]
