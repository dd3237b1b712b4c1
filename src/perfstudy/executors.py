"""Executors: how the runs of a study are scheduled. Each takes the runs still to do and
records every outcome in the store; the runner (``perfstudy.runner``) picks the runs.

- ``local``: one run at a time, in this process (the default).
- ``pool``: N worker processes on this machine, each with its own share of the CPU threads
  (for the SVM and CPU runs of a study on a many-core machine).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass, field
from typing import Protocol

from perfstudy.checkpoint import Checkpoint, checkpoint_path
from perfstudy.execute import execute
from perfstudy.progress import NullProgress
from perfstudy.registry import Registry
from perfstudy.store import Store
from perfstudy.svm_parallel import limit_threads, threads_per_worker


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop after marking the current run interrupted."""


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


class Executor(Protocol):
    def execute(self, runs, store: Store, data_dir, progress) -> Outcome: ...


EXECUTORS: Registry[type] = Registry("executor")


def error_text(exc: BaseException) -> str:
    """First line: what went wrong; then the traceback's last frames, for the store."""
    tb = "".join(traceback.format_exception(exc)[-6:])
    return f"{type(exc).__name__}: {exc}\n{tb}"


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _checkpoint(store: Store, keys: list[str], every_s: float | None) -> dict:
    """Where these runs' training state is checkpointed (``perfstudy.checkpoint``), beside the
    store, and how often (None: the trainer's default)."""
    every = {} if every_s is None else {"checkpoint_every_s": every_s}
    return {"checkpoint": checkpoint_path(store.path, keys), **every}


def run_one(run, store: Store, data_dir, progress, checkpoint_every_s=None) -> str:
    """Claim, execute and record one run; returns its final status."""
    if not store.claim(run.config.key()):
        return "skipped"
    return _run_claimed(run, store, data_dir, progress, checkpoint_every_s)


def _run_claimed(run, store: Store, data_dir, progress, checkpoint_every_s=None) -> str:
    """A deep-learning run checkpoints between epochs beside the store and resumes from it
    when started again after a crash (engines that replay a CUDA graph excepted)."""
    key = run.config.key()
    options = _checkpoint(store, [key], checkpoint_every_s) if run.config.kind == "dl" else {}
    try:
        result = execute(run.config, data_dir=data_dir, progress=progress, **options)
    except (KeyboardInterrupt, Interrupted):
        store.fail(key, "interrupted by the user (Ctrl-C or SIGTERM)", status="interrupted")
        raise
    except Exception as exc:  # a failed run is stored and the study goes on
        store.fail(key, error_text(exc))
        _release_gpu_memory()
        return "failed"
    store.finish(key, result)
    if options:
        Checkpoint(options["checkpoint"]).remove()  # stored; a failed or killed run keeps it
    return "done"


def run_pack(runs, store: Store, data_dir, progress, compile: bool = False,
             checkpoint_every_s: float | None = None) -> list[str]:
    """Claim, train together on one GPU (``perfstudy.packing``) and record a pack of runs.
    The pack's training state is checkpointed beside the store (``<db>.checkpoints/``), so a
    pack started again after a crash resumes after its last saved epoch."""
    from perfstudy.packing import train_pack

    claimed = [r for r in runs if store.claim(r.config.key())]
    statuses = {r.config.key(): "skipped" for r in runs}  # claimed elsewhere, or done
    if len(claimed) == 1:
        statuses[claimed[0].config.key()] = _run_claimed(claimed[0], store, data_dir, progress,
                                                         checkpoint_every_s)
    if len(claimed) <= 1:
        return [statuses[r.config.key()] for r in runs]
    options = _checkpoint(store, [r.config.key() for r in claimed], checkpoint_every_s)
    try:
        results = train_pack([r.config for r in claimed], data_dir, progress, compile=compile,
                             **options)
    except (KeyboardInterrupt, Interrupted):
        for r in claimed:
            store.fail(r.config.key(), "interrupted by the user (Ctrl-C or SIGTERM)",
                       status="interrupted")
        raise
    except Exception as exc:  # the pack failed: every run in it is stored as failed
        for r in claimed:
            store.fail(r.config.key(), error_text(exc))
        _release_gpu_memory()
        statuses.update({r.config.key(): "failed" for r in claimed})
        return [statuses[r.config.key()] for r in runs]
    for r, result in zip(claimed, results, strict=True):
        store.finish(r.config.key(), result)
        statuses[r.config.key()] = "done"
    Checkpoint(options["checkpoint"]).remove()  # stored; a failed or killed pack keeps it
    return [statuses[r.config.key()] for r in runs]


def units(runs, pack=None) -> list[list]:
    """The runs in study order, those that may share the GPU grouped into packs.

    ``pack`` (the command line's ``--pack``) overrides each run's own wish (its experiment's
    ``pack:``). Packing needs CUDA; without it every run trains alone."""
    import torch

    if not torch.cuda.is_available():
        return [[r] for r in runs]
    from perfstudy import packing

    groups: dict[tuple, list] = {}
    order: list[list] = []
    for r in runs:
        wish = r.pack if pack is None else pack
        key = packing.pack_key(r.config) if wish else None
        if key is None:
            order.append([r])
            continue
        if (key, wish) not in groups:
            groups[(key, wish)] = []
            order.append(groups[(key, wish)])
        groups[(key, wish)].append(r)
    out: list[list] = []
    for members in order:
        wish = members[0].pack if pack is None else pack
        if len(members) == 1:
            out.append(members)
            continue
        size = (packing.auto_pack_size(members[0].config, torch.cuda.mem_get_info()[0])
                if wish == "auto" else int(wish))
        chunks = -(-len(members) // size)
        out += [members[k::chunks] for k in range(chunks)]
    return out


@EXECUTORS.register("local")
class LocalExecutor:
    """One run (or, on a GPU, one pack of runs) at a time, in this process."""

    def __init__(
        self,
        workers: int | None = 1,
        pack: int | str | None = None,
        compile: bool = False,
        checkpoint_every_s: float | None = None,
    ):
        self.pack, self.compile, self.checkpoint_every_s = pack, compile, checkpoint_every_s

    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        out = Outcome()
        bar = progress.add("runs", total=len(runs))
        for unit in units(runs, self.pack):
            progress.update(bar, description=f"runs · {unit[0].experiment}"
                            + (f" · pack of {len(unit)}" if len(unit) > 1 else ""))
            if len(unit) == 1:
                statuses = [run_one(unit[0], store, data_dir, progress, self.checkpoint_every_s)]
            else:
                statuses = run_pack(unit, store, data_dir, progress, self.compile,
                                    self.checkpoint_every_s)
            for run, status in zip(unit, statuses, strict=True):
                _count(out, status, run)
            progress.advance(bar, len(unit))
        progress.remove(bar)
        return out


def _count(out: Outcome, status: str, run) -> None:
    if status == "done":
        out.done += 1
    elif status == "failed":
        out.failed += 1
        out.failures.append(f"{run.experiment} {run.config.key()}")


def _pool_job(run, db_path: str, data_dir, checkpoint_every_s=None) -> str:
    store = Store(db_path)
    try:
        return run_one(run, store, data_dir, NullProgress(), checkpoint_every_s)
    finally:
        store.close()


@EXECUTORS.register("pool")
class PoolExecutor:
    def __init__(self, workers: int | None = None, checkpoint_every_s: float | None = None):
        self.workers = workers or max(1, (os.cpu_count() or 1) // 2)
        self.checkpoint_every_s = checkpoint_every_s

    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        out = Outcome()
        threads = threads_per_worker(self.workers)
        bar = progress.add(f"runs · {self.workers} workers", total=len(runs))
        # spawn, not fork: forking a process that has started torch/OpenMP threads can deadlock
        with cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                    initializer=limit_threads,
                                    initargs=(threads, self.workers)) as pool:
            futures = {pool.submit(_pool_job, r, store.path, data_dir, self.checkpoint_every_s): r
                       for r in runs}
            try:
                for fut in cf.as_completed(futures):
                    _count(out, fut.result(), futures[fut])
                    progress.advance(bar)
            except (KeyboardInterrupt, Interrupted):
                for f in futures:
                    f.cancel()
                raise
        progress.remove(bar)
        return out
