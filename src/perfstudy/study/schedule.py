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
