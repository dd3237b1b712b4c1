"""A dry plan of a study's GPU work on N GPUs, as the Ray executor schedules it: the units
(``schedule.units`` for one GPU's memory, split for N by ``schedule.spread``), each GPU taking
the next, costliest first, when it is free; and when each GPU would finish.

The cost model counts FLOPs (``schedule.unit_work``). With a store of earlier GPU runs, each
model's measured seconds per unit of that work turn it into seconds: a pack's wall time (setup,
training, evaluation), a run's training, setup and evaluation. Without one, the plan gives the
work alone. An estimate, labelled as one; nothing here trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from perfstudy.config import CONFIGS
from perfstudy.study import schedule
from perfstudy.study.spec import Run


@dataclass
class Slot:
    gpu: int
    unit: list[Run]
    work: float  # the cost model's FLOPs
    seconds: float | None  # estimated from measured rates, when there are any
    measured_rate: bool  # measured on units like it (model, variant, batch, engine, packing)
    ends: float | None  # seconds from the start, on its GPU


def _rate_keys(cfg, packed: bool) -> list[tuple]:
    """From the closest match to the loosest: a rate measured for the same model, variant,
    batch size, engine and packing; for the same model and variant; for the same model; for
    any model (``()``). The variant matters: a 224x224 ResNet-50 runs about 3x more FLOPs a
    second on an H200 than a 28x28 one (docs/results/seed-explanations-h200/)."""
    what = getattr(cfg, "model", None) or getattr(cfg, "kernel", None)
    variant = getattr(cfg, "variant", None)
    exact = (cfg.kind, what, variant, getattr(cfg, "batch_size", None),
             getattr(cfg, "engine", None), packed)
    return [exact, (cfg.kind, what, variant), (cfg.kind, what), ()]


def measured_rates(rows) -> dict[tuple, float]:
    """Seconds per unit of work, per (kind, model or kernel), from a store's done GPU runs."""
    seen: set[tuple] = set()
    ratios: dict[tuple, list[float]] = {}
    for r in rows:
        res = r.result
        if r.status != "done" or res is None or res.provenance.get("device") != "cuda":
            continue
        members = tuple(res.extra.get("pack_members") or (r.key,))
        if members in seen:
            continue
        seen.add(members)
        cfg = CONFIGS[res.kind].from_dict(res.config)
        work = schedule.unit_work([Run("", cfg)] * len(members))
        if "pack_wall_ms" in res.extra:
            seconds = res.extra["pack_wall_ms"] / 1e3
        else:
            seconds = sum((getattr(res, f) or 0.0) for f in ("train_ms", "setup_ms", "eval_ms"))
            seconds /= 1e3
        if work > 0 and seconds > 0:
            for key in _rate_keys(cfg, len(members) > 1):
                ratios.setdefault(key, []).append(seconds / work)
    return {k: median(v) for k, v in ratios.items()}


def plan_gpus(units: list[list[Run]], gpus: int, rates: dict[tuple, float]) -> list[Slot]:
    """Each unit on the GPU that is free first, costliest first (as the Ray driver hands
    them to its GPU workers): by estimated seconds where there are rates, else by work."""
    units = schedule.spread(units, gpus)
    work = [schedule.unit_work(u) for u in units]
    keys = [[k for k in _rate_keys(u[0].config, len(u) > 1) if k in rates] for u in units]
    # with any rate, the loosest key () matches every unit: all are timed, or none is
    seconds = [w * rates[k[0]] if k else None for w, k in zip(work, keys, strict=True)]
    timed = all(s is not None for s in seconds)
    placed = schedule.list_schedule(seconds if timed else work, gpus)
    return [Slot(g, u, w, s, bool(k) and k[0] == _rate_keys(u[0].config, len(u) > 1)[0],
                 end if timed else None)
            for u, w, s, k, (g, end) in zip(units, work, seconds, keys, placed, strict=True)]
