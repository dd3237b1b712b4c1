"""Report commands: ``report`` (Markdown, HTML and CSV from the results store) and
``export mlflow`` (the stored runs into an MLflow tracking store)."""

from __future__ import annotations

import sys

from perfstudy.errors import UsageError


def _db(p) -> None:
    p.add_argument("--db", default="perfstudy.db", help="results store (default ./perfstudy.db)")


def add_commands(sub) -> None:
    from perfstudy.cli import Parser

    p = sub.add_parser(
        "report", help="write report.md, report.html and results.csv from the results store",
        description="Turn the results store into the report a person reads: the seed's tables "
        "(with the seed's numbers beside ours), analysis computed from the data, plots, a flat "
        "results.csv and provenance. Works on a partial store and says what is missing.")
    _db(p)
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    p.add_argument("--study", help="only this study (default: every study in the store)")
    p.add_argument("--target", action="append", metavar="DATASET=ACC",
                   help="time-to-accuracy target, validation accuracy in %% (repeatable; "
                   "defaults mnist=99, fashion-mnist=90)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export stored results to another tool (mlflow)")
    targets = p.add_subparsers(dest="target_tool", required=True, parser_class=Parser)
    m = targets.add_parser(
        "mlflow", help="log every done run to MLflow (needs perfstudy[mlflow])",
        description="Log every done run: config as params, measurements as metrics, per-epoch "
        "curves as steps, provenance as tags. Runs already exported (by perfstudy run key) "
        "are skipped, so running it twice logs nothing twice.")
    m.add_argument("--tracking-uri", required=True,
                   help="MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000")
    m.add_argument("--experiment", help="MLflow experiment (default: the study's name)")
    m.add_argument("--study", help="only this study (default: every study in the store)")
    _db(m)
    m.set_defaults(func=cmd_export_mlflow)


def parse_targets(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            acc = float(value)
        except ValueError:
            acc = -1.0
        if not sep or not name.strip() or not 0 < acc <= 100:
            raise UsageError(f"--target expects DATASET=ACCURACY with 0 < ACCURACY <= 100, "
                             f"got {item!r}")
        out[name.strip()] = acc
    return out


def cmd_report(args) -> int:
    from perfstudy.report import write_report

    written = write_report(args.db, args.out, study=args.study,
                           targets=parse_targets(args.target))
    c = written.counts
    total = sum(c.values())
    missing = ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s != "done")
    figures = len(written.files) - 3
    print(f"report: {written.files[1]} (also report.md, results.csv, {figures} figure(s) in "
          f"{written.files[0].parent}); {c.get('done', 0)} of {total} runs done"
          + (f", {missing}" if missing else ""))
    return 0


def cmd_export_mlflow(args) -> int:
    from perfstudy.report.mlflow import export

    out = export(args.db, args.tracking_uri, experiment=args.experiment, study=args.study)
    print(f"mlflow: experiment {out.experiment!r} at {args.tracking_uri}: {out.logged} run(s) "
          f"logged, {out.skipped} already there (skipped)"
          + (f", {out.replaced} half-exported run(s) replaced" if out.replaced else ""),
          file=sys.stdout)
    return 0
