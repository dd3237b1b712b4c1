"""The report a person reads, made from the results store alone (it never trains).

``write_report(db, out)`` writes ``report.md``, ``report.html`` (one self-contained file),
``results.csv`` (one flat row per run, ``study.flat.flatten``) and ``figures/*.png``.
``build_report(store)`` returns the same content as data (``document.Report``), for tests.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from perfstudy.errors import UsageError
from perfstudy.report.build import build_report
from perfstudy.report.document import Report
from perfstudy.study.flat import columns, flatten
from perfstudy.study.store import Store

__all__ = ["Written", "build_report", "write_report"]


@dataclass
class Written:
    report: Report
    files: list[Path]
    counts: dict[str, int]


def write_report(db: str | Path, out: str | Path = "report", study: str | None = None,
                 targets: dict[str, float] | None = None) -> Written:
    from perfstudy.report import render_html, render_md

    store = Store(db, create=False)
    try:
        report = build_report(store, study=study, targets=targets, source=str(db))
        rows = {r.key: r for s in ([study] if study else store.studies())
                for r in store.rows(study=s)}
    finally:
        store.close()
    out = Path(out)
    figdir = out / "figures"
    try:
        figdir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"--out {out}: a file is in the way; give a folder") from None
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    files: list[Path] = []
    for f in report.figures():
        path = figdir / f.filename
        if path in files:  # two ids made the same safe name
            path = figdir / f"{path.stem}-{len(files)}.png"
        path.write_bytes(f.png)
        files.append(path)
    md, page, csv_path = out / "report.md", out / "report.html", out / "results.csv"
    md.write_text(render_md.render(report, "figures"), encoding="utf-8")
    page.write_text(render_html.render(report), encoding="utf-8")
    flat = [flatten(r) for r in rows.values()]
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns(flat) or ["key"])
        w.writeheader()
        w.writerows(flat)
    counts: dict[str, int] = {}
    for r in rows.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    return Written(report, [md, page, csv_path, *files], counts)
