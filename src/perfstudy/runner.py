"""Run a study: register its runs in the store, skip those done, execute the rest."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import dataclass

from perfstudy.executors import EXECUTORS, Interrupted, Outcome
from perfstudy.store import Store
from perfstudy.study import Study


@dataclass
class Plan:
    total: int
    done: list  # already done: skipped
    failed: list  # failed before: skipped unless retry_failed
    todo: list
    reclaimed: int  # 'running' rows whose process had died, made pending again
    need_gpu: list  # cuda runs on a machine without CUDA: left pending for one that has it


def plan(study: Study, runs: list, store: Store, retry_failed: bool = False) -> Plan:
    reclaimed = store.reclaim_stale()
    store.describe(study.name, study.experiments)
    store.add(study.name, runs)
    status = store.status_of([r.key for r in runs])
    unique, seen = [], set()
    for r in runs:  # a config shared by two experiments is run (and stored) once
        if r.key not in seen:
            seen.add(r.key)
            unique.append(r)
    done = [r for r in unique if status[r.key] == "done"]
    failed = [r for r in unique if status[r.key] == "failed"]
    todo = [r for r in unique if status[r.key] in ("pending", "interrupted")]
    if retry_failed:
        todo += failed
        failed = []
    need_gpu = [] if cuda_available() else [r for r in todo if _wants_cuda(r.config)]
    todo = [r for r in todo if r not in need_gpu]
    return Plan(len(unique), done, failed, todo, reclaimed, need_gpu)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _wants_cuda(cfg) -> bool:
    return getattr(cfg, "device", None) == "cuda"


@contextmanager
def sigterm_interrupts():
    """SIGTERM is handled like Ctrl-C: the current run is marked interrupted, then we exit."""

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def execute_plan(p: Plan, store: Store, executor: str = "local", workers: int | None = None,
                 data_dir=None, progress=None, **executor_options) -> Outcome:
    ex = EXECUTORS.get(executor)(workers=workers, **executor_options)
    with sigterm_interrupts():
        return ex.execute(p.todo, store, data_dir, progress)
