"""The numbers behind every claim: mean ± std (n), the noise yardstick, margins and effects.

One rule decides "beyond noise" everywhere in the report: a difference counts only when it is
larger than ``NOISE_FACTOR`` times the yardstick. The yardstick is the run-to-run spread
(sample std of repeated runs, pooled over the configurations that have repeats) where there are
repeats; where every configuration ran once, the spread is unknown and the binomial standard
error of a test accuracy, sqrt(p(1-p)/n_test), stands in, and the report says which was used.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NOISE_FACTOR = 2.0


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (None for a single value) and count of one metric over repeats."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Summary | None:
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        std = statistics.stdev(vals) if len(vals) > 1 else None
        return cls(statistics.fmean(vals), std, len(vals))

    def text(self, digits: int = 2, thousands: bool = False) -> str:
        """``99.10 ± 0.20 (2)``; a single run is just ``99.10``."""
        f = (lambda v: f"{v:,.{digits}f}") if thousands else (lambda v: f"{v:.{digits}f}")
        if self.std is None:
            return f(self.mean)
        return f"{f(self.mean)} ± {f(self.std)} ({self.n})"


def pooled_std(summaries: Iterable[Summary | None]) -> tuple[float, int, int] | None:
    """Pooled sample std over summaries with n >= 2: (std, configurations, runs)."""
    ss = [s for s in summaries if s is not None and s.n > 1 and s.std is not None]
    dof = sum(s.n - 1 for s in ss)
    if not dof:
        return None
    var = sum((s.n - 1) * s.std**2 for s in ss) / dof
    return math.sqrt(var), len(ss), sum(s.n for s in ss)


def binomial_se(p_percent: float, n: int) -> float:
    """Standard error, in percentage points, of an accuracy of ``p_percent`` on n test images."""
    p = min(max(p_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


@dataclass(frozen=True)
class Yardstick:
    """The noise level differences are judged against, and a sentence saying what it is."""

    value: float | None  # percentage points (or, for log_yardstick, natural-log units)
    source: str  # "repeats" | "binomial" | "unknown"
    text: str  # the full sentence, for table notes
    short: str = ""  # a few words, for the end of an analysis sentence
    name: str = "the yardstick"  # how a ratio to it is worded

    def judge(self, diff: float) -> str:
        return verdict(diff, self.value)

    def ratio(self, diff: float) -> str:
        if not self.value:
            return "noise unknown"
        k = abs(diff) / self.value
        close = abs(k - NOISE_FACTOR) < 0.1  # 1.96 and 2.04 must not both read "2.0"
        return f"{k:.2f}× {self.name}" if close else f"{k:.1f}× {self.name}"


def accuracy_yardstick(summaries: Sequence[Summary | None], p: float | None,
                       n_test: int | None) -> Yardstick:
    pooled = pooled_std(summaries)
    if pooled:
        std, k, runs = pooled
        return Yardstick(std, "repeats", f"run-to-run std of repeated runs, pooled over {k} "
                         f"configuration(s) with {runs} runs: {std:.2f} pp",
                         f"yardstick: run-to-run std {std:.2f} pp")
    if p is not None and n_test:
        se = binomial_se(p, n_test)
        return Yardstick(se, "binomial", "run-to-run spread unknown (one run per "
                         f"configuration); yardstick: binomial standard error of a {p:.2f} % "
                         f"test accuracy on {n_test:,} test images = {se:.2f} pp",
                         f"yardstick: binomial SE {se:.2f} pp; run-to-run spread unknown")
    return Yardstick(None, "unknown", "run-to-run spread unknown (one run per configuration) "
                     "and test-set size not recorded: no yardstick", "no yardstick")


def log_yardstick(summaries_logs: Sequence[Sequence[float]], what: str) -> Yardstick:
    """Run-to-run spread of a time or speed, as the pooled std of its logarithm over repeated
    runs; without repeats it is unknown (timings have no binomial stand-in)."""
    ss = [Summary.of(math.log(v) for v in vals if v and v > 0) for vals in summaries_logs]
    pooled = pooled_std(ss)
    if not pooled:
        return Yardstick(None, "unknown", f"run-to-run spread of {what} unknown (one run per "
                         "configuration)", f"{what} spread unknown: no repeats")
    std, k, runs = pooled
    pct = 100 * (math.exp(std) - 1)
    return Yardstick(std, "repeats", f"run-to-run spread of {what}: ±{pct:.1f} % (pooled over "
                     f"{k} configuration(s), {runs} runs)", f"{what} spread ±{pct:.1f} %")


def verdict(diff: float, yardstick: float | None) -> str:
    if yardstick is None or yardstick <= 0:
        return "noise unknown"
    return "beyond noise" if abs(diff) > NOISE_FACTOR * yardstick else "within noise"


def signed(x: float, digits: int = 2, unit: str = "") -> str:
    """``+0.35``/``−0.35`` with a true minus sign, so columns of differences line up."""
    s = f"{abs(x):.{digits}f}{unit}"
    return ("−" if x < 0 and float(s.rstrip(unit) or 0) != 0 else "+") + s


@dataclass(frozen=True)
class Effect:
    """How much a factor moves a metric, holding the other factors fixed."""

    factor: str
    low: Any  # the value compared against
    high: Any
    diffs: tuple[float, ...]  # one per combination of the other factors (high - low)
    ratio: bool = False  # diffs are ratios high/low; the mean is then geometric

    @property
    def mean(self) -> float:
        return geomean(self.diffs) if self.ratio else statistics.fmean(self.diffs)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.diffs) if len(self.diffs) > 1 else None

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def se(self) -> float | None:
        """Standard error of the mean difference from the pairs' own spread (how much the
        effect changes with the other factors); None from a single pair."""
        return self.std / math.sqrt(self.n) if self.std is not None else None

    @property
    def wins(self) -> int:
        """Combinations where ``high`` came out above ``low``."""
        return sum(d > (1.0 if self.ratio else 0.0) for d in self.diffs)


def effects(points: Sequence[tuple[dict, float]], factor: str, order: Sequence[Any],
            successive: bool = False) -> list[Effect]:
    """For each value of ``factor`` against the first (or, with ``successive``, against the
    one before it): the metric's difference in every combination of the other factors where
    both values were measured. ``points`` are (factor values, metric) pairs."""
    by_rest: dict[tuple, dict[Any, float]] = {}
    for values, metric in points:
        rest = tuple(sorted((k, repr(v)) for k, v in values.items() if k != factor))
        by_rest.setdefault(rest, {})[_hashable(values[factor])] = metric
    out = []
    for i in range(1, len(order)):
        low = order[i - 1] if successive else order[0]
        high = order[i]
        diffs = tuple(m[_hashable(high)] - m[_hashable(low)] for m in by_rest.values()
                      if _hashable(high) in m and _hashable(low) in m)
        if diffs:
            out.append(Effect(factor, low, high, diffs))
    return out


def _hashable(v: Any) -> Any:
    return repr(v)


def geomean(xs: Iterable[float]) -> float:
    xs = [x for x in xs if x > 0]
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else math.nan


def ratio_effects(points: Sequence[tuple[dict, float]], factor: str, order: Sequence[Any],
                  successive: bool = False) -> list[Effect]:
    """``effects`` on log(metric): each diff becomes a ratio high/low (for times, speeds)."""
    logged = [(v, math.log(m)) for v, m in points if m and m > 0]
    return [Effect(e.factor, e.low, e.high, tuple(math.exp(d) for d in e.diffs), ratio=True)
            for e in effects(logged, factor, order, successive)]

