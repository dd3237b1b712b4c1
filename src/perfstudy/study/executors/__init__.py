"""Executors: how the units of a study (``study.schedule``) are run. Each takes the runs still
to do (``study.plan``) and records every outcome in the store (``study.execute``).

- ``local``: one unit at a time, in this process (the default);
- ``pool``: worker processes on this machine, each with its share of the CPU threads.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import dataclass

from perfstudy.registry import Registry
from perfstudy.study.execute import Interrupted
from perfstudy.study.plan import Plan
from perfstudy.study.store import Store

EXECUTORS: Registry = Registry("executor", {
    "local": "perfstudy.study.executors.local:LocalExecutor",
    "pool": "perfstudy.study.executors.pool:PoolExecutor",
})


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0

    def count(self, statuses) -> None:
        for status in statuses:
            self.done += status == "done"
            self.failed += status == "failed"


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


def execute_plan(p: Plan, store: Store, executor: str = "local", workers: int | None = None,
                 data_dir=None, progress=None, **executor_options) -> Outcome:
    ex = EXECUTORS.get(executor)(workers=workers, **executor_options)
    with sigterm_interrupts():
        return ex.execute(p.todo, store, data_dir, progress)


__all__ = ["EXECUTORS", "Interrupted", "Outcome", "execute_plan", "sigterm_interrupts"]
