"""The report as one self-contained HTML file: inline CSS, figures as data URIs, no external
script, font or stylesheet, so it opens offline and can be mailed as one attachment.

A few lines of inline script record page errors and how many images decoded into attributes
of ``<html>`` (``data-errors``, ``data-images``), so a headless browser's DOM dump can prove
the page rendered cleanly.
"""

from __future__ import annotations

import base64
import html
import re

from perfstudy.report import labels
from perfstudy.report.document import Report, Section, Table

CSS = """
:root { --fg:#1d2125; --muted:#5b6570; --line:#d9dee3; --best:#e6f4ea; --flag:#fdecea;
        --head:#f3f5f7; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 24px; margin: 0 0 2px; }
h2 { font-size: 19px; margin: 34px 0 8px; padding-top: 10px; border-top: 2px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 6px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav { background: var(--head); border: 1px solid var(--line); border-radius: 6px;
      padding: 8px 14px; margin: 12px 0 18px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
.summary { background: #f7fbff; border: 1px solid #cfe0f3; border-radius: 6px;
           padding: 6px 16px; }
.summary li, .bullets li { margin: 5px 0; }
.table-wrap { overflow-x: auto; margin: 10px 0 4px; }
table { border-collapse: collapse; font-size: 12.5px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid var(--line); padding: 3px 7px; }
th { background: var(--head); font-weight: 600; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { background: var(--best); font-weight: 700; }
td.flag { background: var(--flag); color: #a61b1b; }
td.missing { color: var(--muted); font-style: italic; text-align: center; }
.note { color: var(--muted); font-size: 12.5px; margin: 2px 0; }
figure { margin: 14px 0; }
figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12.5px; }
"""

SCRIPT = """
(function () {
  var root = document.documentElement, errors = 0;
  root.setAttribute('data-errors', '0');
  window.addEventListener('error', function () {
    errors += 1; root.setAttribute('data-errors', String(errors));
  }, true);
  window.addEventListener('load', function () {
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
    }
    root.setAttribute('data-images', ok + '/' + imgs.length);
  });
})();
"""


def _text(s: str) -> str:
    """Escape, then turn ``**bold**`` and ``*emphasis*`` into tags."""
    s = html.escape(s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


def header(columns: list[str]) -> str:
    """Column names that start with a model's name ("ResNet-18 acc (%)") share one spanning
    header cell per model, so wide per-model tables stay narrow; the rest span both rows."""
    prefixes = [f"{m} " for m in labels.MODELS.values()]
    groups: list[tuple[str | None, list[str]]] = []
    for c in columns:
        p = next((p for p in prefixes if c.startswith(p)), None)
        label, sub = (p.strip(), c[len(p):]) if p else (None, c)
        if label and groups and groups[-1][0] == label:
            groups[-1][1].append(sub)
        else:
            groups.append((label, [sub]))
    if all(label is None for label, _ in groups):
        return "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    top, bottom = [], []
    for label, subs in groups:
        if label is None:
            top += [f'<th rowspan="2">{html.escape(c)}</th>' for c in subs]
        else:
            top.append(f'<th colspan="{len(subs)}">{html.escape(label)}</th>')
            bottom += [f"<th>{html.escape(c)}</th>" for c in subs]
    return f"<tr>{''.join(top)}</tr><tr>{''.join(bottom)}</tr>"


def table(t: Table) -> str:
    body = []
    for row in t.rows:
        tds = []
        for c in row:
            cls = f' class="{c.css}"' if c.css else ""
            tip = f' title="{html.escape(c.title)}"' if c.title else ""
            tds.append(f"<td{cls}{tip}>{html.escape(c.text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    notes = "".join(f'<p class="note">{_text(n)}</p>' for n in t.notes)
    return (f'<div class="table-wrap"><table id="{html.escape(t.id)}"><caption>'
            f"{html.escape(t.title)}</caption><thead>{header(t.columns)}</thead><tbody>"
            + "".join(body) + f"</tbody></table></div>{notes}")


def section(s: Section, level: int) -> str:
    parts = [f'<section id="{html.escape(s.id)}"><h{level}>{html.escape(s.title)}</h{level}>']
    parts += [f"<p>{_text(p)}</p>" for p in s.paragraphs]
    bullets = ('<ul class="bullets">' + "".join(f"<li>{_text(b)}</li>" for b in s.bullets)
               + "</ul>") if s.bullets else ""
    if s.bullets_first:
        parts.append(bullets)
    parts += [table(t) for t in s.tables]
    if not s.bullets_first:
        parts.append(bullets)
    parts += [f'<p class="note">{_text(n)}</p>' for n in s.notes]
    for f in s.figures:
        data = base64.b64encode(f.png).decode()
        parts.append(f'<figure id="fig-{html.escape(f.id)}"><img alt="{html.escape(f.title)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{_text(f.caption)}'
                     "</figcaption></figure>")
    parts += [section(c, level + 1) for c in s.children]
    return "".join(parts) + "</section>"


def render(report: Report) -> str:
    links = [("summary", "Summary")] + [(s.id, s.title.split(":")[0]) for s in report.sections]
    nav = " ".join(f'<a href="#{html.escape(i)}">{html.escape(t)}</a>' for i, t in links)
    summary = ""
    if report.summary or report.summary_tables:
        summary = ('<section id="summary"><h2>Summary</h2>'
                   + "".join(table(t) for t in report.summary_tables)
                   + '<ul class="summary">'
                   + "".join(f"<li>{_text(s)}</li>" for s in report.summary) + "</ul></section>")
    body = "".join(section(s, 2) for s in report.sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(report.title)}</title><style>{CSS}</style>"
            f"<script>{SCRIPT}</script></head><body><main>"
            f"<h1>{html.escape(report.title)}</h1><p class=\"subtitle\">"
            f"{html.escape(report.subtitle)}</p><nav>{nav}</nav>{summary}{body}"
            "</main></body></html>\n")
