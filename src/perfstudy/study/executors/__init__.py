"""Executors: how the units of a study (``study.schedule``) are run. Each takes the runs still
to do (``study.plan``) and records every outcome in the store (``study.execute``).

- ``local``: one unit at a time, in this process (the default);
- ``pool``: worker processes on this machine, each with its share of the CPU threads;
- ``ray``: Ray tasks on one host's GPU and CPUs at once, or on a cluster (``ray_cluster``).
"""

from __future__ import annotations

import itertools
import signal
from contextlib import contextmanager
from dataclasses import dataclass

from perfstudy.errors import UsageError
from perfstudy.registry import Registry
from perfstudy.study.execute import Interrupted
from perfstudy.study.plan import Plan
from perfstudy.study.store import Store

EXECUTORS: Registry = Registry("executor", {
    "local": "perfstudy.study.executors.local:LocalExecutor",
    "pool": "perfstudy.study.executors.pool:PoolExecutor",
    "ray": "perfstudy.study.executors.ray_cluster:RayExecutor",
})


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    total: int = 0  # runs the executor was given

    def count(self, statuses, runs=(), progress=None) -> None:
        """Count ``statuses`` of ``runs``; with ``progress``, a line for each finished one."""
        for status, run in itertools.zip_longest(statuses, runs):
            self.done += status == "done"
            self.failed += status == "failed"
            if progress is not None and run is not None and status != "skipped":
                progress.finished(f"[{self.done + self.failed}/{self.total}] {status:<6} "
                                  f"{run.experiment} · {describe(run.config)}")


def describe(cfg) -> str:
    """A run in a few words: the settings that tell runs of a study apart."""
    keys = {"dl": ("model", "dataset", "device", "batch_size", "optimizer", "lr", "epochs",
                   "seed"),
            "svm": ("kernel", "C", "degree", "dataset", "backend"),
            "flops": ("model", "variant", "input")}.get(cfg.kind, ())
    d = cfg.to_dict()
    return " ".join(f"{k}={d[k]}" for k in keys if d.get(k) not in (None, 0) or k == "seed")


class Executor:
    """What every executor shares: where CUDA runs can run, and nothing to release."""

    def cuda_available(self) -> bool:
        """Whether runs that need CUDA can run (else they are left pending)."""
        from perfstudy.study.plan import cuda_available

        return cuda_available()

    def close(self) -> None:
        pass


def make(name: str, **options) -> Executor:
    """The executor ``name`` with its options (a one-line error for options it lacks)."""
    cls = EXECUTORS.get(name)
    try:
        return cls(**options)
    except TypeError as e:
        raise UsageError(f"--executor {name}: {e}") from None


@contextmanager
def sigterm_interrupts():
    """SIGTERM is handled like Ctrl-C: the current runs are marked interrupted, then we exit."""

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def execute_plan(p: Plan, store: Store, executor: str | Executor = "local",
                 workers: int | None = None, data_dir=None, progress=None,
                 **executor_options) -> Outcome:
    """Run the plan's runs still to do with ``executor`` (a name, or one made by :func:`make`,
    which is then left open)."""
    ex = make(executor, workers=workers, **executor_options) if isinstance(executor, str) \
        else executor
    try:
        with sigterm_interrupts():
            return ex.execute(p.todo, store, data_dir, progress)
    finally:
        if isinstance(executor, str):
            ex.close()


__all__ = ["EXECUTORS", "Executor", "Interrupted", "Outcome", "execute_plan", "make",
           "sigterm_interrupts"]
