"""Stored runs, grouped the way the report reads them: per experiment, repeats together, and
each experiment recognised as one of the seed's table layouts by what its runs vary.

A layout is chosen from the configs, not from the experiment's name, so a user's own study
with other names still gets the seed's tables; the name only settles ambiguous cases (an
experiment called ``q1a`` that varies a single hyperparameter still gets the Q1(a) layout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from perfstudy.config import CONFIGS
from perfstudy.report.stats import Summary
from perfstudy.study.store import Row

REPEAT_KEYS = ("seed", "split_seed")  # runs differing only here are repeats of one setting
Q1A_KEYS = {"dataset", "model", "batch_size", "optimizer", "lr"}
Q1A_HYPER = {"batch_size", "optimizer", "lr"}
Q2_KEYS = Q1A_KEYS | {"device"}
Q1B_KEYS = {"dataset", "kernel", "C", "degree"}


def device_of(cfg: dict, result=None) -> str:
    """cpu or cuda: the config's device, or where an ``auto`` run actually ran."""
    dev = cfg.get("device", "auto")
    if dev == "auto" and result is not None:
        dev = str(result.provenance.get("device") or "auto")
    return dev.split(":")[0]


@dataclass
class Group:
    """Runs with one config apart from their seeds: a table cell's worth of repeats."""

    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    @property
    def done(self) -> list[Row]:
        return [r for r in self.rows if r.status == "done" and r.result is not None]

    def summary(self, metric: str) -> Summary | None:
        return Summary.of(metric_of(r, metric) for r in self.done)

    @property
    def missing(self) -> str:
        """What stands in a cell without a result: failed, running or pending."""
        statuses = {r.status for r in self.rows}
        for s in ("failed", "interrupted", "running", "pending"):
            if s in statuses:
                return s
        return "–" if self.rows else "pending"  # no run in the store yet

    @property
    def n_test(self) -> int | None:
        for r in self.done:
            n = r.result.extra.get("n_test")
            if n:
                return int(n)
        return None

    @property
    def device(self) -> str:
        return device_of(self.config, self.done[0].result if self.done else None)


def metric_of(row: Row, metric: str) -> float | None:
    """A result field, an ``extra`` entry, or a derived metric (epoch_s: mean epoch time)."""
    r = row.result
    if r is None:
        return None
    if metric == "epoch_s":
        return sum(e.seconds for e in r.curve) / len(r.curve) if r.curve else None
    if hasattr(r, metric):
        return getattr(r, metric)
    v = r.extra.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Experiment:
    study: str
    name: str
    kind: str
    rows: list[Row]
    groups: list[Group]
    varying: list[str]  # config keys that differ between groups, in config field order
    fixed: dict[str, Any]  # config keys equal in every run
    layout: str = "generic"

    @property
    def title(self) -> str:
        return self.name

    def values(self, key: str) -> list[Any]:
        """Distinct values of ``key`` in the order the study lists them."""
        out: list[Any] = []
        for g in self.groups:
            if g.config.get(key) not in out:
                out.append(g.config.get(key))
        return out

    def subset(self, **match: Any) -> list[Group]:
        return [g for g in self.groups if all(g.config.get(k) == v for k, v in match.items())]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)


def group(rows: list[Row]) -> list[Group]:
    groups: dict[str, Group] = {}
    for r in rows:
        cfg = {k: v for k, v in r.config.items() if k not in REPEAT_KEYS}
        key = repr(sorted(cfg.items()))
        groups.setdefault(key, Group(cfg)).rows.append(r)
    return list(groups.values())


def _key_order(kind: str, configs: list[dict]) -> list[str]:
    names = list(CONFIGS[kind].field_names()) if kind in CONFIGS else []
    for c in configs:
        names += [k for k in c if k not in names]
    return [k for k in names if k != "kind"]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def layout(name: str, kind: str, varying: list[str]) -> str:
    v = set(varying)
    hint = _norm(name)
    if kind == "flops":
        return "flops"
    if kind == "svm":
        return "q1b" if v <= Q1B_KEYS else "generic"
    if kind != "dl":
        return "generic"
    if "device" in v or (hint == "q2" and v <= Q2_KEYS):  # a Q2 with one arm stored so far
        return "q2" if v <= Q2_KEYS else "generic"
    if not v <= Q1A_KEYS:
        return "generic"
    if "model" in v and len(v & Q1A_HYPER) >= 2:
        return "q1a"
    if hint == "q1a" or re.fullmatch(r"q1a(mnist|fashionmnist|fashion|fmnist)", hint):
        return "q1a"
    return "generic"


def experiments(rows_by_study: dict[str, list[Row]]) -> list[Experiment]:
    """Every (study, experiment) with its runs, groups and layout, in the study's order."""
    out = []
    for study, rows in rows_by_study.items():
        names: list[str] = []
        for r in rows:
            names += [e for e in r.experiments if e not in names]
        for name in names:
            mine = [r for r in rows if name in r.experiments]
            kind = mine[0].kind
            groups = group(mine)
            keys = _key_order(kind, [g.config for g in groups])
            varying = [k for k in keys if len({repr(g.config.get(k)) for g in groups}) > 1]
            fixed = {k: groups[0].config.get(k) for k in keys if k not in varying}
            out.append(Experiment(study, name, kind, mine, groups, varying, fixed,
                                  layout(name, kind, varying)))
    return out
