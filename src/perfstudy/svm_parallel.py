"""Several SVM fits at once on a many-core CPU, without oversubscribing threads: the thread
limits the ``pool`` executor (``perfstudy.executors``) applies in each worker process.

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

import os


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
    start of a worker process (it is the pool executor's initializer)."""
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

