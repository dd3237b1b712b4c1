"""Study files: YAML describing experiments, each a grid, expanded into runs.

```yaml
name: seed
experiments:
  q1a:
    kind: dl                      # dl | svm | flops
    description: ...
    fixed: {epochs: 10, pin_memory: true}
    grid: {dataset: [mnist, fashion-mnist], lr: [1.0e-3, 1.0e-4]}   # cartesian product
    exclude: [{dataset: mnist, lr: 1.0e-4}]   # drop runs matching every key of a rule
    repeats: 3                    # seeds 0, 1, 2 (or a list of seeds)
    pack: auto                    # train runs together on one GPU (auto | N | false)
    epochs: 10                    # budget shorthands: epochs, train_subset, eval_subset
```
Everything is validated up front; errors name the file, the key and the bad value.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfstudy.config import CONFIGS
from perfstudy.errors import UsageError
from perfstudy.study import yaml_file

EXPERIMENT_KEYS = {"kind", "description", "fixed", "grid", "exclude", "repeats", "pack"}
# study and experiment names become parts of file names (the report's figures) and of the
# store's keys: letters, digits, '_', '-' and '.', not starting with '.' or '-'
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_RUNS = 100_000  # a study of more runs than this is a typo (and would not fit any budget)
BUDGET_KEYS = {"epochs", "train_subset", "eval_subset"}


@dataclass(frozen=True)
class Run:
    experiment: str
    config: Any  # a frozen config dataclass
    pack: int | str | None = None  # packing wish: "auto", a pack size, or None (train alone)

    @property
    def key(self) -> str:
        return self.config.key()


@dataclass
class Experiment:
    name: str
    kind: str
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] | None = None
    pack: int | str | None = None


@dataclass
class Study:
    name: str
    path: str
    description: str
    experiments: list[Experiment]

    def runs(self) -> list[Run]:
        return [r for e in self.experiments for r in expand(e, self.path)]


def parse_value(text: str) -> Any:
    """``-o``/``--filter`` values are YAML scalars: ``16``, ``1e-3``, ``true``, ``adam``."""
    return yaml_file.parse(text, f"value {text[:40]!r}") if text.strip() else text


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def load(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    only: list[str] | None = None,
) -> Study:
    path = str(path)
    doc = yaml_file.read(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("experiments"), dict):
        raise UsageError(f"{path}: expected a mapping with an 'experiments:' mapping")
    if not doc["experiments"]:
        raise UsageError(f"{path}: 'experiments:' is empty; a study needs at least one")
    unknown = set(doc) - {"name", "description", "experiments"}
    if unknown:
        raise UsageError(f"{path}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    experiments = [_experiment(path, n, e) for n, e in doc["experiments"].items()]
    if only:
        missing = sorted(set(only) - {e.name for e in experiments})
        if missing:
            names = ", ".join(e.name for e in experiments)
            raise UsageError(f"{path}: no experiment {missing[0]!r}; the study has: {names}")
        experiments = [e for e in experiments if e.name in only]
    if overrides:
        _apply_overrides(path, experiments, overrides)
    total = sum(_size(e) for e in experiments)
    if total > MAX_RUNS:
        raise UsageError(f"{path}: the grids expand to {total:,} runs, more than "
                         f"{MAX_RUNS:,}; split the study or narrow its grids")
    name = doc.get("name")
    if name is None:  # the file's name, made a valid name
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(path).stem).lstrip(".-") or "study"
    study = Study(check_name(name, f"{path}: name"), path, str(doc.get("description") or ""),
                  experiments)
    study.runs()  # validate every run up front
    return study


def check_name(name: Any, where: str) -> str:
    """A study's or an experiment's name, checked: it ends up in file names."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UsageError(f"{where}: {name!r} is not a valid name (letters, digits, '_', '-', "
                         "'.'; at most 64; not starting with '.' or '-')")
    return name


def _size(exp: Experiment) -> int:
    """Runs the experiment's grid can make (before exclusions), without making them."""
    return math.prod(len(v) for v in exp.grid.values()) * len(exp.seeds or [None])


def _experiment(path: str, name: str, e: Any) -> Experiment:
    check_name(name, f"{path}: experiments")
    where = f"{path}: experiments.{name}"
    if not isinstance(e, dict):
        raise UsageError(f"{where}: expected a mapping, got {e!r}")
    unknown = set(e) - EXPERIMENT_KEYS - BUDGET_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected one of: "
                         f"{', '.join(sorted(EXPERIMENT_KEYS | BUDGET_KEYS))}")
    kind = e.get("kind")
    if kind not in CONFIGS:
        raise UsageError(f"{where}.kind: must be one of {', '.join(CONFIGS)}, got {kind!r}")
    fixed = e.get("fixed") or {}
    grid = e.get("grid") or {}
    exclude = e.get("exclude") or []
    if not isinstance(fixed, dict):
        raise UsageError(f"{where}.fixed: expected a mapping, got {fixed!r}")
    if not isinstance(grid, dict):
        raise UsageError(f"{where}.grid: expected a mapping of lists, got {grid!r}")
    if not isinstance(exclude, list) or not all(isinstance(r, dict) for r in exclude):
        raise UsageError(f"{where}.exclude: expected a list of mappings, got {exclude!r}")
    fixed = {**fixed, **{k: e[k] for k in BUDGET_KEYS & set(e)}}
    grid = {k: v if isinstance(v, list) else [v] for k, v in grid.items()}
    for k, values in grid.items():
        if not values:
            raise UsageError(f"{where}.grid.{k}: empty list")
    exp = Experiment(name, kind, str(e.get("description") or ""), fixed, grid, exclude,
                     _seeds(f"{where}.repeats", e.get("repeats")),
                     parse_pack(e.get("pack"), f"{where}.pack"))
    _check_keys(where, exp)
    return exp


def parse_pack(value: Any, where: str) -> int | str | None:
    """``auto``/true: as many runs per pack as fit the GPU; N: packs of N; false/off/1: alone."""
    if value is True or value == "auto":
        return "auto"
    if value is None or value is False or value == "off":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value if value > 1 else None
    raise UsageError(f"{where}: expected auto, off or a pack size >= 1, got {value!r}")


MAX_REPEATS = 10_000


def _seeds(label: str, repeats: Any, optional: bool = True) -> list[int] | None:
    """``repeats`` (a count or a list of seeds) as the seeds; ``label`` starts its errors."""
    if repeats is None and optional:
        return None
    if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats >= 1:
        if repeats > MAX_REPEATS:
            raise UsageError(f"{label}: at most {MAX_REPEATS:,} seeds, got {repeats}")
        return list(range(repeats))
    if isinstance(repeats, list) and repeats and all(
        isinstance(s, int) and not isinstance(s, bool) for s in repeats
    ):
        return repeats
    raise UsageError(f"{label}: expected a count >= 1 or a list of seeds, got {repeats!r}")


def _check_keys(where: str, exp: Experiment) -> None:
    cls = CONFIGS[exp.kind]
    valid = set(cls.field_names())
    for section, keys in (("fixed", exp.fixed), ("grid", exp.grid)):
        for k in keys:
            if k not in valid:
                raise UsageError(f"{where}.{section}: unknown key {k!r} for kind {exp.kind}; "
                                 f"valid keys: {', '.join(cls.field_names())}")
    for i, rule in enumerate(exp.exclude):
        for k in rule:
            if k not in valid:
                raise UsageError(f"{where}.exclude[{i}]: unknown key {k!r} for kind {exp.kind}")
    if exp.seeds is not None and ("seed" in exp.fixed or "seed" in exp.grid):
        raise UsageError(f"{where}: give seeds either by 'repeats' or by 'seed', not both")
    # Each value on its own, so a bad one is reported with its key before any product is built.
    for section, items in (("fixed", {k: [v] for k, v in exp.fixed.items()}), ("grid", exp.grid)):
        for k, values in items.items():
            for v in values:
                try:
                    cls(**{**_context(exp, k), k: v})
                except UsageError as err:
                    raise UsageError(f"{where}.{section}.{k}: bad value {v!r}: {err}") from None
                except TypeError as err:
                    raise UsageError(f"{where}.{section}.{k}: bad value {v!r}: {err}") from None


def _context(exp: Experiment, key: str) -> dict[str, Any]:
    """Values a lone value is checked with: the kind's defaults, plus the settings some
    checks depend on (a poly degree needs kernel=poly; a variant needs its model)."""
    ctx: dict[str, Any] = {}
    for dep in ("kernel", "model"):
        if dep != key:
            if dep in exp.fixed:
                ctx[dep] = exp.fixed[dep]
            elif dep in exp.grid:
                ctx[dep] = exp.grid[dep][0]
    if key == "degree" and "kernel" in CONFIGS[exp.kind].field_names():
        ctx["kernel"] = "poly"
    return {k: v for k, v in ctx.items() if k in CONFIGS[exp.kind].field_names()}


def _apply_overrides(path: str, experiments: list[Experiment], overrides: dict[str, Any]):
    """``-o KEY=VALUE``: a run setting, fixed in every experiment that has it; or ``repeats``,
    the seeds of every experiment whose runs have one (``-o repeats=3``: seeds 0, 1, 2)."""
    if "repeats" in overrides and "seed" in overrides:
        raise UsageError("-o seed and -o repeats both set the seeds: give one (-o repeats=N "
                         "for seeds 0..N-1, -o repeats=[5,6] for those seeds)")
    for key, value in overrides.items():
        hit = False
        for exp in experiments:
            if key == "repeats" and getattr(CONFIGS[exp.kind], "seeded", False):
                exp.fixed.pop("seed", None)
                exp.grid.pop("seed", None)
                exp.seeds = _seeds(f"-o repeats={value}", value, optional=False)
                hit = True
            elif key in CONFIGS[exp.kind].field_names():
                exp.grid.pop(key, None)
                exp.fixed[key] = value
                if key == "seed":
                    exp.seeds = None
                hit = True
                _check_keys(f"{path} (-o {key}={value}): experiments.{exp.name}", exp)
        if not hit and key == "repeats":
            raise UsageError(f"-o repeats={value}: no experiment of {path} has runs whose "
                             "result depends on a seed (SVM fits and FLOPs counts are "
                             "deterministic)")
        if not hit:
            raise UsageError(f"-o {key}={value}: no experiment of {path} has a setting {key!r}")


def expand(exp: Experiment, path: str = "<study>") -> list[Run]:
    cls = CONFIGS[exp.kind]
    keys = list(exp.grid)
    runs: list[Run] = []
    seen: set[str] = set()
    for values in itertools.product(*(exp.grid[k] for k in keys)):
        point = {**exp.fixed, **dict(zip(keys, values, strict=True))}
        if any(_matches(point, rule) for rule in exp.exclude):
            continue
        for seed in exp.seeds or [None]:
            settings = point if seed is None else {**point, "seed": seed}
            try:
                cfg = cls(**settings)
            except UsageError as err:
                raise UsageError(f"{path}: experiments.{exp.name}: run {settings}: {err}") from None
            if cfg.key() not in seen:  # e.g. degree collapses for non-poly kernels
                seen.add(cfg.key())
                runs.append(Run(exp.name, cfg, exp.pack))
    return runs


def _matches(settings: dict[str, Any], rule: dict[str, Any]) -> bool:
    return all(k in settings and _equal(settings[k], v) for k, v in rule.items())


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (int, float)) and isinstance(b, str):
        try:
            return float(a) == float(b)
        except ValueError:
            return False
    return a == b


def filter_runs(runs: list[Run], filters: dict[str, Any]) -> list[Run]:
    """Keep runs whose config has every ``key=value`` (keys absent from a kind don't match)."""
    if not filters:
        return runs
    return [r for r in runs if _matches(r.config.settings(), filters)]
