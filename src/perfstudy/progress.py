"""Progress: live bars (rich, on stderr) when stdout is a terminal, one line per finished run
when it is not (a log file, a pipe, CI), one live plain-text display in a Jupyter notebook,
nothing with ``--quiet``.

Trainers and runners take a ``Progress``-like object and call ``add``/``advance``/``update``/
``remove`` for bars and ``finished`` for the line a run leaves behind; ``NullProgress`` does
nothing, so callers never branch on what is shown.
"""

from __future__ import annotations

import sys
import time
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


class NotebookProgress(NullProgress):
    """In a Jupyter notebook: one display, updated in place (IPython's ``display_id``), of the
    tasks in progress and the latest finished runs, as plain text: no terminal codes."""

    def __init__(self, keep: int = 12):
        from IPython.display import display

        self.tasks: dict[int, list] = {}
        self.lines: list[str] = []
        self.keep, self._next, self._shown = keep, 0, 0.0
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def add(self, description: str, total: float | None = None) -> int:
        self._next += 1
        self.tasks[self._next] = [description, 0.0, total]
        self._show()
        return self._next

    def advance(self, task: int, n: float = 1) -> None:
        if task in self.tasks:
            self.tasks[task][1] += n
            self._show()

    def update(self, task: int, **fields) -> None:
        if task in self.tasks:
            t = self.tasks[task]
            t[0], t[1] = fields.get("description", t[0]), fields.get("completed", t[1])
            self._show()

    def remove(self, task: int) -> None:
        self.tasks.pop(task, None)
        self._show(force=True)

    def finished(self, line: str) -> None:
        self.lines = (self.lines + [line])[-self.keep:]
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < 0.25:  # redraws cost the kernel's messages
            return
        self._shown = now
        bars = [f"{d}: {c:g}" + (f"/{t:g}" if t else "") for d, c, t in self.tasks.values()]
        self.handle.update({"text/plain": "\n".join(self.lines + bars)}, raw=True)


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
    """``bars`` on a terminal, ``notebook`` in a Jupyter kernel, ``lines`` elsewhere, ``none``
    when quiet."""
    if quiet:
        return "none"
    if sys.stdout.isatty():
        return "bars"
    return "notebook" if _in_notebook() else "lines"


def _in_notebook() -> bool:
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


@contextmanager
def progress_bars(mode: str):
    """Yield a RichProgress (live bars on stderr), a LineProgress or a NullProgress."""
    if mode != "bars":
        yield {"lines": LineProgress, "notebook": NotebookProgress}.get(mode, NullProgress)()
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
