"""What a study run will do: its runs registered in the store, those done skipped, the rest to
execute (or left pending where they need a GPU this machine lacks)."""

from __future__ import annotations

from dataclasses import dataclass

from perfstudy.study.spec import Run, Study
from perfstudy.study.store import Store


@dataclass
class Plan:
    total: int
    done: list[Run]  # already done: skipped
    failed: list[Run]  # failed before: skipped unless retry_failed
    todo: list[Run]
    reclaimed: int  # 'running' rows whose process had died, made pending again
    need_gpu: list[Run]  # cuda runs on a machine without CUDA: left pending for one that has it


def plan(study: Study, runs: list[Run], store: Store, retry_failed: bool = False,
         cuda: bool | None = None) -> Plan:
    """``cuda``: whether CUDA runs can run here (default: whether this machine has a GPU)."""
    reclaimed = store.reclaim_stale()
    store.describe(study.name, study.experiments)
    store.add(study.name, runs)
    status = store.status_of([r.key for r in runs])
    first: dict[str, Run] = {}
    for r in runs:  # a config shared by two experiments is run (and stored) once
        first.setdefault(r.key, r)
    unique = list(first.values())
    done = [r for r in unique if status[r.key] == "done"]
    failed = [r for r in unique if status[r.key] == "failed"]
    todo = [r for r in unique if status[r.key] in ("pending", "interrupted")]
    if retry_failed:
        todo += failed
        failed = []
    if cuda is None:
        cuda = cuda_available()
    need_gpu = [] if cuda else [r for r in todo if getattr(r.config, "device", None) == "cuda"]
    todo = [r for r in todo if r not in need_gpu]
    return Plan(len(unique), done, failed, todo, reclaimed, need_gpu)


def cuda_available() -> bool:
    import torch  # here, not at import: commands that only read the store start without torch

    return torch.cuda.is_available()


def find_data(runs, data_dir) -> None:
    """Find (or download) every dataset the runs will read before the first one starts: data
    that cannot be found is one error (exit 2), not one failed run per config. Each run still
    loads and verifies its files itself."""
    from perfstudy import data  # here, not at import: it pulls in scikit-learn (slow to load)

    for name in sorted({r.config.dataset for r in runs if hasattr(r.config, "dataset")}):
        if name not in data._REGISTERED:  # registered from Python: in memory already
            data.locate(name, data_dir)
