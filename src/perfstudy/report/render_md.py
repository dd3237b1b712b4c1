"""The report as Markdown (GitHub-flavoured tables); figures are linked PNG files beside it."""

from __future__ import annotations

from perfstudy.report.document import Report, Section, Table


def _text(s: str) -> str:
    """Text as Markdown shows it, never as HTML: descriptions and names come from study files,
    and a Markdown viewer would run a ``<script>`` in them."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str, css: str) -> str:
    text = _text(text).replace("|", "\\|")
    return f"**{text}**" if "best" in css.split() else text


def table(t: Table) -> list[str]:
    out = [f"**{_text(t.title)}**", "", "| " + " | ".join(_cell(c, "") for c in t.columns)
           + " |", "|" + "|".join("---" for _ in t.columns) + "|"]
    out += ["| " + " | ".join(_cell(c.text, c.css) for c in row) + " |" for row in t.rows]
    out.append("")
    out += [f"*{_text(n)}*" + "  " for n in t.notes]
    return out + [""] if t.notes else out


def section(s: Section, level: int, figure_dir: str) -> list[str]:
    out = [f"{'#' * level} {_text(s.title)}", ""]
    for p in s.paragraphs:
        out += [_text(p), ""]
    bullets = [f"- {_text(b)}" for b in s.bullets] + [""] if s.bullets else []
    if s.bullets_first:
        out += bullets
    for t in s.tables:
        out += table(t)
    if not s.bullets_first:
        out += bullets
    for n in s.notes:
        out += [f"> {_text(n)}", ""]
    for f in s.figures:
        out += [f"![{_text(f.title)}]({figure_dir}/{f.filename})", "", f"*{_text(f.caption)}*",
                ""]
    for c in s.children:
        out += section(c, level + 1, figure_dir)
    return out


def render(report: Report, figure_dir: str = "figures") -> str:
    out = [f"# {_text(report.title)}", "", _text(report.subtitle), ""]
    if report.summary or report.summary_tables:
        out += ["## Summary", ""]
        for t in report.summary_tables:
            out += table(t)
        out += [f"- {_text(s)}" for s in report.summary] + [""]
    for s in report.sections:
        out += section(s, 2, figure_dir)
    return "\n".join(out).rstrip() + "\n"
