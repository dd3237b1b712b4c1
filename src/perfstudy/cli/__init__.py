"""Command-line entry point: ``perfstudy <command> ...`` (also ``python -m perfstudy``).

Errors a user can fix (bad names or values, missing GPU or data) print one line on stderr
and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from perfstudy.errors import UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + error; we want one line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from perfstudy.cli import report, single, study

    parser = Parser(
        prog="perfstudy",
        description="Reproducible benchmark studies of ML models: accuracy, training time and "
        "FLOPs across hyperparameters and hardware.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    single.add_commands(sub)
    study.add_commands(sub)
    report.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except UsageError as e:
        print(f"perfstudy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perfstudy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
