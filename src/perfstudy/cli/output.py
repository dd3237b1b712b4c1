"""What the CLI prints: one JSON document (``--json``) or readable tables on stdout."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from perfstudy.results import dumps


def print_json(doc: Any) -> None:
    sys.stdout.write(dumps(doc, indent=2) + "\n")


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def console() -> Console:
    """A terminal gets its own width; a file or pipe gets wide lines rather than folded cells."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def print_table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(fmt(v) for v in r))
    console().print(table)


def print_mapping(title: str, mapping: dict[str, Any]) -> None:
    print_table(title, ["field", "value"], mapping.items())
