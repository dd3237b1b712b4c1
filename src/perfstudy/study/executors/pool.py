"""The pool executor: N worker processes on this machine, each with its share of the CPU
threads (``perfstudy.threads``), for the SVM and CPU runs of a study on a many-core machine."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os

from perfstudy.progress import NullProgress
from perfstudy.study.execute import Interrupted, run_unit
from perfstudy.study.executors import Executor, Outcome
from perfstudy.study.store import Store
from perfstudy.threads import limit_threads, threads_per_worker


def _job(run, db_path: str, data_dir, checkpoint_every_s=None) -> str:
    store = Store(db_path)
    try:
        (status,) = run_unit([run], store, data_dir, checkpoint_every_s=checkpoint_every_s)
        return status
    finally:
        store.close()


class PoolExecutor(Executor):
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
            futures = [pool.submit(_job, r, store.path, data_dir, self.checkpoint_every_s)
                       for r in runs]
            try:
                for fut in cf.as_completed(futures):
                    out.count([fut.result()])
                    progress.advance(bar)
            except (KeyboardInterrupt, Interrupted):
                for f in futures:
                    f.cancel()
                raise
        progress.remove(bar)
        return out
