"""Executors: how the runs of a study are scheduled. Each takes the runs still to do and
records every outcome in the store; the runner (``perfstudy.runner``) picks the runs.

- ``local``: one run at a time, in this process (the default).
- ``pool``: N worker processes on this machine, each with its own share of the CPU threads
  (for the SVM and CPU runs of a study on a many-core machine).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import traceback
from dataclasses import dataclass, field
from typing import Protocol

from perfstudy.execute import execute
from perfstudy.progress import NullProgress
from perfstudy.registry import Registry
from perfstudy.store import Store


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


def run_one(run, store: Store, data_dir, progress) -> str:
    """Claim, execute and record one run; returns its final status."""
    key = run.config.key()
    if not store.claim(key):
        return "skipped"
    try:
        result = execute(run.config, data_dir=data_dir, progress=progress)
    except (KeyboardInterrupt, Interrupted):
        store.fail(key, "interrupted by the user (Ctrl-C or SIGTERM)", status="interrupted")
        raise
    except Exception as exc:  # a failed run is stored and the study goes on
        store.fail(key, error_text(exc))
        _release_gpu_memory()
        return "failed"
    store.finish(key, result)
    return "done"


@EXECUTORS.register("local")
class LocalExecutor:
    def __init__(self, workers: int = 1):
        self.workers = 1

    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        out = Outcome()
        bar = progress.add("runs", total=len(runs))
        for run in runs:
            progress.update(bar, description=f"runs · {run.experiment}")
            status = run_one(run, store, data_dir, progress)
            _count(out, status, run)
            progress.advance(bar)
        progress.remove(bar)
        return out


def _count(out: Outcome, status: str, run) -> None:
    if status == "done":
        out.done += 1
    elif status == "failed":
        out.failed += 1
        out.failures.append(f"{run.experiment} {run.config.key()}")


def _worker_init(threads: int) -> None:
    """Each worker gets its share of the cores, so N workers don't oversubscribe them."""
    import torch
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    threadpool_limits(threads)


def _pool_job(run, db_path: str, data_dir) -> str:
    store = Store(db_path)
    try:
        return run_one(run, store, data_dir, NullProgress())
    finally:
        store.close()


@EXECUTORS.register("pool")
class PoolExecutor:
    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, (os.cpu_count() or 1) // 2)

    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        out = Outcome()
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        bar = progress.add(f"runs · {self.workers} workers", total=len(runs))
        with cf.ProcessPoolExecutor(self.workers, initializer=_worker_init,
                                    initargs=(threads,)) as pool:
            futures = {pool.submit(_pool_job, r, store.path, data_dir): r for r in runs}
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
