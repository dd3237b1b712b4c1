"""CPU threads: how many this process may use, and the limits a worker process applies so that
several runs at once do not oversubscribe the cores.

sklearnex, torch on CPU and the BLAS under numpy each start a thread per core by default: N such
processes on N cores would run N^2 threads and lose time to contention, so each worker of the
``pool`` executor (and each CPU task of the ``ray`` executor) is limited to its share in every
pool it could use (OpenMP/BLAS via threadpoolctl, torch's intra-op pool, oneDAL's TBB), and the
torch SVM backend sizes its kernel matrix from the same share of memory.
"""

from __future__ import annotations

import os

_limit: int | None = None  # set by limit_threads: this process's share of the cores


def usable_cpus() -> int:
    """Cores this process may run on: a container's CPU set, not the host's core count, and
    no more than :func:`limit_threads` gave it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = cpus or os.cpu_count() or 1
    return min(cpus, _limit) if _limit else cpus


def threads_per_worker(n_workers: int, n_cpus: int | None = None) -> int:
    """Threads each of ``n_workers`` processes may use so that together they fill the CPUs
    (``n_cpus``, by default the CPUs this process may run on) without exceeding them."""
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    return max(1, (n_cpus or usable_cpus()) // n_workers)


def limit_threads(n_threads: int, n_workers: int = 1) -> None:
    """Limit this process to ``n_threads`` threads in each thread pool, and to a 1/n_workers
    share of the memory the torch SVM backend sizes its kernel matrix from. Call it once at the
    start of a worker process: the limits stay in force, nothing restores them."""
    import torch
    from threadpoolctl import threadpool_limits

    from perfstudy.svm.torchsvc import kernel_rows

    global _limit
    _limit = n_threads
    threadpool_limits(limits=n_threads)
    torch.set_num_threads(n_threads)
    kernel_rows.set_memory_share(1.0 / n_workers)
    try:  # oneDAL (sklearnex) runs on TBB, which threadpoolctl does not control
        import daal4py

        daal4py.daalinit(n_threads)
    except ImportError:
        pass
