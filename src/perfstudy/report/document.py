"""The report as data: sections of text, tables and figures, rendered to Markdown and to HTML
from this one model, so the two outputs cannot disagree (and tests can read cells directly).

Text may use ``**bold**``; everything else is plain text, escaped by the HTML renderer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Cell:
    text: str
    css: str = ""  # "best" (highlighted), "flag" (differs beyond noise), "missing", "num"
    title: str = ""  # hover text in HTML


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, cells: list[Cell | str]) -> None:
        self.rows.append([c if isinstance(c, Cell) else Cell(c) for c in cells])

    def column(self, name: str) -> list[str]:
        i = self.columns.index(name)
        return [r[i].text for r in self.rows]

    def cell(self, column: str, **match: str) -> Cell:
        """The cell of ``column`` in the one row whose cells read ``match`` (column=text);
        column names with spaces or symbols go through ``**{"Train time (ms)": ...}``."""
        hits = [r for r in self.rows
                if all(r[self.columns.index(k)].text == v for k, v in match.items())]
        if len(hits) != 1:
            raise KeyError(f"{self.id}: {len(hits)} rows match {match}")
        return hits[0][self.columns.index(column)]

    def text(self, column: str, **match: str) -> str:
        return self.cell(column, **match).text


@dataclass
class Figure:
    id: str
    title: str
    png: bytes
    caption: str = ""

    @property
    def filename(self) -> str:
        """A file name made of the id's safe characters: ids hold study and experiment names,
        which must not steer the file out of the report's folder."""
        return (re.sub(r"[^A-Za-z0-9_.-]", "-", self.id).strip(".-")[:120] or "figure") + ".png"


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)  # analysis sentences
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats, shown after the tables
    children: list[Section] = field(default_factory=list)
    bullets_first: bool = False  # analysis before the tables (when the tables are long)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class Report:
    title: str
    subtitle: str
    summary: list[str] = field(default_factory=list)  # the findings, one line each
    summary_tables: list[Table] = field(default_factory=list)  # best per table, at a glance
    sections: list[Section] = field(default_factory=list)

    def all_sections(self) -> list[Section]:
        return [Section("summary", "Summary", tables=self.summary_tables)] + [
            s for top in self.sections for s in top.walk()]

    def table(self, id: str) -> Table:
        for s in self.all_sections():
            for t in s.tables:
                if t.id == id:
                    return t
        raise KeyError(f"no table {id!r}; tables: {[t.id for t in self.tables()]}")

    def tables(self) -> list[Table]:
        return [t for s in self.all_sections() for t in s.tables]

    def figures(self) -> list[Figure]:
        return [f for s in self.all_sections() for f in s.figures]

    def section(self, id: str) -> Section:
        for s in self.all_sections():
            if s.id == id:
                return s
        raise KeyError(f"no section {id!r}")
