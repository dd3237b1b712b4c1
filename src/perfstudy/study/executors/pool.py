"""The pool executor: N worker processes on this machine, each with its share of the CPU
threads (``perfstudy.threads``), for the SVM and CPU runs of a study on a many-core machine."""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import socket
import threading
import time

from perfstudy.errors import UsageError
from perfstudy.progress import NullProgress
from perfstudy.study.execute import INTERRUPTED, Interrupted, run_unit
from perfstudy.study.executors import Executor, Outcome
from perfstudy.study.store import Store
from perfstudy.threads import limit_threads, threads_per_worker, usable_cpus


def _job(run, db_path: str, data_dir, checkpoint_every_s=None) -> str:
    store = Store(db_path)
    try:
        (status,) = run_unit([run], store, data_dir, checkpoint_every_s=checkpoint_every_s)
        return status
    finally:
        store.close()


def _start_worker(threads: int, workers: int) -> None:
    """A worker's first act: die with the parent (a killed ``perfstudy run`` must not leave
    workers training, holding their runs ``running``), then take its share of the threads."""
    _die_with_parent()
    limit_threads(threads, workers)


def _die_with_parent() -> None:
    parent = os.getppid()
    try:  # Linux: the kernel sends SIGKILL when the parent dies
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:  # elsewhere (and as a second guard): notice the parent is gone
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class PoolExecutor(Executor):
    def __init__(self, workers: int | None = None, checkpoint_every_s: float | None = None):
        cpus = usable_cpus()
        if workers is not None and workers > cpus:
            raise UsageError(f"--workers {workers}: more than the {cpus} CPUs this process may "
                             "use (each worker trains one run at a time)")
        self.workers = workers or max(1, cpus // 2)
        self.checkpoint_every_s = checkpoint_every_s

    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        out = Outcome(total=len(runs))
        threads = threads_per_worker(self.workers)
        bar = progress.add(f"runs · {self.workers} workers", total=len(runs))
        # spawn, not fork: forking a process that has started torch/OpenMP threads can deadlock
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                      initializer=_start_worker, initargs=(threads, self.workers))
        try:
            futures = {pool.submit(_job, r, store.path, data_dir, self.checkpoint_every_s): r
                       for r in runs}
            for fut in cf.as_completed(futures):
                out.count([fut.result()], [futures[fut]], progress)
                progress.advance(bar)
        except (KeyboardInterrupt, Interrupted):
            _stop(pool, store)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        progress.remove(bar)
        return out


def _stop(pool: cf.ProcessPoolExecutor, store: Store) -> None:
    """Kill the workers at once and mark the runs they held interrupted."""
    procs = list(getattr(pool, "_processes", {}).values())
    for p in procs:
        p.kill()
    for p in procs:
        p.join()
    pids = {p.pid for p in procs}
    for row in store.rows(status="running"):
        if row.pid in pids and row.host == socket.gethostname():
            store.fail(row.key, INTERRUPTED, status="interrupted")
