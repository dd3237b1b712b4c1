"""Several SVM fits at once on a many-core CPU, without oversubscribing threads.

libsvm (backend ``sklearn``) uses one thread per fit, so on a many-core machine the Q1(b) grid
goes fastest as one process per core. sklearnex, torch on CPU and the BLAS under numpy each
start a thread per core by default: N such processes on N cores would run N^2 threads and lose
time to contention. Each worker here is therefore limited to ``threads_per_worker`` threads in
every pool it could use (OpenMP/BLAS via threadpoolctl, torch's intra-op pool, oneDAL's TBB).

Guidance: ``sklearn`` backend: max_workers = cores (1 thread each); ``sklearnex`` / ``torch``
on CPU: fewer workers with several threads each (e.g. cores / 4 workers): their fits scale over
threads, and each torch fit may hold the whole kernel matrix (9.6 GB for 49k images), so the
memory each worker may take is divided by the number of workers too. With a GPU, fit
sequentially: one fit already fills the device.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def threads_per_worker(n_workers: int, n_cpus: int | None = None) -> int:
    """Threads each of ``n_workers`` processes may use so that together they fill the CPUs
    (``os.cpu_count()``, or the CPUs this process may run on) without exceeding them."""
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if n_cpus is None:
        n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        n_cpus = n_cpus or os.cpu_count() or 1
    return max(1, n_cpus // n_workers)


def limit_threads(n_threads: int, n_workers: int = 1) -> None:
    """Limit this process to ``n_threads`` threads in each thread pool, and to a 1/n_workers
    share of the memory the torch backend sizes its kernel matrix from. Call it once at the
    start of a worker process (it is the pool's initializer)."""
    import torch
    from threadpoolctl import threadpool_limits

    from perfstudy.svm_torch import kernel_rows

    # the limits stay in force after the call returns: nothing restores them in a worker
    threadpool_limits(limits=n_threads)
    torch.set_num_threads(n_threads)
    kernel_rows.set_memory_share(1.0 / n_workers)
    try:  # oneDAL (sklearnex) runs on TBB, which threadpoolctl does not control
        import daal4py

        daal4py.daalinit(n_threads)
    except ImportError:
        pass


def fit_many(
    fn: Callable[[T], R],
    items: Iterable[T],
    max_workers: int,
    n_cpus: int | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` over a pool of ``max_workers`` processes, each limited
    by :func:`limit_threads`; results in the order of ``items``.

    ``fn`` must be importable by name (a module-level function) since workers are started with
    'spawn' (forking a process that has started torch or OpenMP threads can deadlock), and
    should load its own data from the item (e.g. an ``SVMConfig``) rather than receive arrays,
    which would be pickled to every worker. ``max_workers=1`` runs in this process, unlimited.
    """
    items = list(items)
    if max_workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    n_workers = min(max_workers, len(items))
    threads = threads_per_worker(n_workers, n_cpus)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        n_workers, mp_context=ctx, initializer=limit_threads, initargs=(threads, n_workers)
    ) as pool:
        return list(pool.map(fn, items))
