"""What the store holds and where the numbers came from: run counts per experiment (a report
over a partial store says what is missing), failed runs with their errors, and provenance."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from perfstudy import __version__
from perfstudy.provenance import git_commit
from perfstudy.report import labels
from perfstudy.report.document import Cell, Section, Table
from perfstudy.report.experiments import Experiment
from perfstudy.study.store import STATUSES, Row

PROVENANCE = ("perfstudy", "git_commit", "python", "torch", "torchvision", "sklearn", "numpy",
              "cuda", "cudnn", "device_name", "cpu", "cpu_count", "torch_threads", "host")
LAYOUT_NAMES = {"q1a": "Q1(a) layout", "q1b": "Q1(b) layout", "q2": "Q2 layout",
                "flops": "FLOPs layout", "generic": "generic table"}


def counts(rows: list[Row]) -> Counter:
    return Counter(r.status for r in rows)


def counts_text(c: Counter) -> str:
    total = sum(c.values())
    parts = [f"{c[s]} {s}" for s in STATUSES if c[s]]
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(parts) if parts else "no runs"


def status_section(exps: list[Experiment], rows: list[Row], several: bool) -> Section:
    c = counts(rows)
    sec = Section("status", "Runs in the store")
    sec.paragraphs.append(counts_text(c) + ".")
    missing = sum(c[s] for s in STATUSES if s != "done")
    if missing:
        sec.paragraphs.append(
            f"**Incomplete:** {missing} of {sum(c.values())} runs have no result "
            f"({', '.join(f'{c[s]} {s}' for s in STATUSES if s != 'done' and c[s])}). Tables "
            "show only finished runs; cells whose runs are not done read pending, running, "
            "failed or interrupted, and analysis sentences say how many configurations lack a "
            "result. Run the study again to fill them in (`perfstudy run STUDY.yaml`).")
    else:
        sec.paragraphs.append("Every run is done.")
    cols = (["Study"] if several else []) + ["Experiment", "Kind", "Shown as", "Runs", *STATUSES]
    t = Table("status", "Runs per experiment", cols)
    for e in exps:
        ec = counts(e.rows)
        t.add(([e.study] if several else []) + [
            e.name, e.kind, LAYOUT_NAMES[e.layout], Cell(str(len(e.rows)), "num"),
            *(Cell(str(ec[s]), "num" + (" flag" if s in ("failed", "interrupted") and ec[s]
                                        else "")) for s in STATUSES)])
    sec.tables.append(t)
    failed = [r for r in rows if r.status in ("failed", "interrupted")]
    if failed:
        f = Table("failed", "Runs that failed", ["Experiment", "Key", "Configuration", "Error"])
        for r in failed:
            keys = [k for k in ("dataset", "model", "kernel", "optimizer", "lr", "batch_size",
                                "C", "degree", "device") if k in r.config]
            f.add([" ".join(r.experiments), r.key,
                   labels.config(r.config, keys), (r.error or "").splitlines()[0][:200]
                   if r.error else r.status])
        sec.tables.append(f)
    return sec


def provenance_section(rows: list[Row], source: str) -> Section:
    sec = Section("provenance", "Provenance")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit()
    sec.paragraphs.append(f"Report made {now} by perfstudy {__version__}"
                          + (f" (commit {commit})" if commit else "") + f" from {source}.")
    done = [r for r in rows if r.result is not None]
    times = [t for r in done for t in (r.started_at, r.finished_at) if t]
    if times:
        a, b = (dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M") for t in
                (min(times), max(times)))
        sec.paragraphs.append(f"The {len(done)} finished runs ran between {a} and {b} UTC.")
    t = Table("provenance", "Where the results came from (per finished run)",
              ["Field", "Value (runs)"])
    for key in PROVENANCE:
        vals = Counter(str(r.result.provenance.get(key)) for r in done
                       if r.result.provenance.get(key) is not None)
        if vals:
            t.add([key, "; ".join(f"{v} ({n})" for v, n in vals.most_common())])
    if t.rows:
        sec.tables.append(t)
    return sec
