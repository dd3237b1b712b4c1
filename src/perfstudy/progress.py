"""Progress bars (rich) on stderr, shown only when stdout is a terminal and not ``--quiet``.

Trainers and runners take a ``Progress``-like object and call ``add``/``advance``/``update``/
``remove``; ``NullProgress`` does nothing, so callers never branch on whether bars are shown.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class NullProgress:
    def add(self, description: str, total: float | None = None) -> int:
        return 0

    def advance(self, task: int, n: float = 1) -> None:
        pass

    def update(self, task: int, **fields) -> None:
        pass

    def remove(self, task: int) -> None:
        pass


class RichProgress(NullProgress):
    def __init__(self, progress: Progress):
        self._p = progress

    def add(self, description: str, total: float | None = None) -> int:
        return self._p.add_task(description, total=total)

    def advance(self, task: int, n: float = 1) -> None:
        self._p.advance(task, n)

    def update(self, task: int, **fields) -> None:
        self._p.update(task, **fields)

    def remove(self, task: int) -> None:
        self._p.remove_task(task)


def wanted(quiet: bool = False) -> bool:
    return not quiet and sys.stdout.isatty()


@contextmanager
def progress_bars(enabled: bool):
    """Yield a RichProgress (live bars on stderr) or a NullProgress."""
    if not enabled:
        yield NullProgress()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as p:
        yield RichProgress(p)
