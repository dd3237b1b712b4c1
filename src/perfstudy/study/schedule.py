"""The one pack scheduler: a study's runs in study order, those that may share a GPU grouped
into packs (``dl.packing`` trains them). Every executor schedules through :func:`units`."""

from __future__ import annotations

from collections.abc import Sequence

from perfstudy.study.spec import Run


def units(runs: Sequence[Run], pack: int | str | None = None,
          free_bytes: int | None = None) -> list[list[Run]]:
    """Runs grouped into the units an executor trains: a pack of runs, or one run alone.

    ``pack`` (the command line's ``--pack``) overrides each run's own wish (its experiment's
    ``pack:``). ``free_bytes``: the free memory of one GPU, which bounds an ``auto`` pack;
    ``None`` means no GPU, and every run trains alone. A group larger than a pack is split
    into near-equal packs.
    """
    if free_bytes is None:
        return [[r] for r in runs]
    from perfstudy.dl import packing

    groups: dict[tuple, list[Run]] = {}
    order: list[list[Run]] = []
    for r in runs:
        wish = r.pack if pack is None else pack
        key = packing.pack_key(r.config, cuda=True) if wish else None
        if key is None:
            order.append([r])
            continue
        if (key, wish) not in groups:
            groups[(key, wish)] = []
            order.append(groups[(key, wish)])
        groups[(key, wish)].append(r)
    out: list[list[Run]] = []
    for members in order:
        wish = members[0].pack if pack is None else pack
        if len(members) == 1:
            out.append(members)
            continue
        size = (packing.auto_pack_size(members[0].config, free_bytes) if wish == "auto"
                else int(wish))
        chunks = -(-len(members) // size)
        out += [members[k::chunks] for k in range(chunks)]
    return out


def gpu_free_bytes() -> int | None:
    """Free memory of this process's current CUDA device, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.mem_get_info()[0]


# A pack of k runs takes about k**PACK_SCALING times one run alone (docs/performance.md: a pack
# of 8 ResNet-18s at batch 16 trains 2.5x the images per second of one run alone)
PACK_SCALING = 0.55
TRAIN_IMAGES = 49_000  # the 70 % training split, when a run takes no subset


def unit_work(unit: Sequence[Run]) -> float:
    """A unit's estimated time, in FLOPs of one run alone: a deep-learning run's training
    FLOPs, an SVM fit's kernel products (n^2 images x 784 pixels x 45 class pairs). A model
    of the time, for ordering and splitting; not a measurement."""
    from perfstudy.dl import flops

    per_run = []
    for r in unit:
        cfg = r.config
        images = getattr(cfg, "train_subset", None) or TRAIN_IMAGES
        if cfg.kind == "dl":
            per_run.append(flops.count(cfg.model, cfg.variant).train_flops * images * cfg.epochs)
        elif cfg.kind == "svm":
            per_run.append(images**2 * 784 * 45.0)
        else:
            per_run.append(0.0)
    return sum(per_run) / len(per_run) * len(unit) ** PACK_SCALING


def list_schedule(costs: Sequence[float], gpus: int) -> list[tuple[int, float]]:
    """``costs`` taken in order by ``gpus`` GPUs, each taking the next when free: per cost,
    (its GPU, when that GPU finishes it)."""
    loads = [0.0] * max(1, gpus)
    out = []
    for c in costs:
        g = loads.index(min(loads))
        loads[g] += c
        out.append((g, loads[g]))
    return out


def makespan(costs: Sequence[float], gpus: int) -> float:
    """When ``gpus`` GPUs finish ``costs``, each taking the next (largest first) when free."""
    return max((end for _, end in list_schedule(sorted(costs, reverse=True), gpus)),
               default=0.0)


def spread(units: list[list[Run]], gpus: int, cost=unit_work) -> list[list[Run]]:
    """GPU units for ``gpus`` GPUs, so that GPUs taking the next unit when free finish
    together: the costliest pack is split in two while that does not make the whole finish
    later (by :func:`makespan` of ``cost``), and the split that finishes soonest, with the
    fewest units, is kept; then largest first. One GPU: nothing is split."""
    units = [list(u) for u in units]
    costs = [cost(u) for u in units]
    best = (makespan(costs, gpus), len(units), units, costs)
    while packs := [i for i, u in enumerate(units) if len(u) > 1]:
        i = max(packs, key=costs.__getitem__)
        halves = [units[i][0::2], units[i][1::2]]
        trial = costs[:i] + costs[i + 1:] + [cost(h) for h in halves]
        if makespan(trial, gpus) > makespan(costs, gpus) * (1 + 1e-9):
            break
        units, costs = units[:i] + units[i + 1:] + halves, trial
        best = min(best, (makespan(costs, gpus), len(units), units, costs), key=lambda b: b[:2])
    _, _, units, costs = best
    order = sorted(range(len(units)), key=costs.__getitem__, reverse=True)
    return [units[i] for i in order]
