"""Progress on stderr: live bars (rich) when stdout is a terminal, one line per finished run
when it is not (a log file, a pipe, CI), nothing with ``--quiet``.

Trainers and runners take a ``Progress``-like object and call ``add``/``advance``/``update``/
``remove`` for bars and ``finished`` for the line a run leaves behind; ``NullProgress`` does
nothing, so callers never branch on what is shown.
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

    def finished(self, line: str) -> None:
        """A run (or unit) ended: ``line`` says which, and how."""


class LineProgress(NullProgress):
    """No bars; a line per finished run on stderr, for output that is not a terminal."""

    def finished(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


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

    def finished(self, line: str) -> None:
        self._p.console.print(line, highlight=False, markup=False)


def wanted(quiet: bool = False) -> str:
    """``bars`` on a terminal, ``lines`` elsewhere, ``none`` when quiet."""
    if quiet:
        return "none"
    return "bars" if sys.stdout.isatty() else "lines"


@contextmanager
def progress_bars(mode: str):
    """Yield a RichProgress (live bars on stderr), a LineProgress or a NullProgress."""
    if mode != "bars":
        yield LineProgress() if mode == "lines" else NullProgress()
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
