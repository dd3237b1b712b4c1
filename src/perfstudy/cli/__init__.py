"""Command-line entry point: ``perfstudy <command> ...`` (also ``python -m perfstudy``).

Errors a user can fix (bad names or values, missing GPU or data) print one line on stderr
and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
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
        return _error(str(e))
    except KeyboardInterrupt:
        print("perfstudy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `perfstudy runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # the machine's limits, said in one line; anything else is a bug
        if (message := environment_error(e)) is None:
            raise
        return _error(message)


def _error(message: str) -> int:
    print(f"perfstudy: error: {message}", file=sys.stderr)
    return 2


def environment_error(e: BaseException) -> str | None:
    """A one-line message for errors of the machine rather than of perfstudy: out of memory,
    a full disk, a file size limit."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, MemoryError) or "out of memory" in text.lower() \
            or "can't allocate memory" in text.lower():
        return (f"out of memory ({type(e).__name__}: {text[:200]}); try a smaller --batch-size, "
                "--train-subset or model")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"cannot write {e.filename or 'a file'}: {e.strerror}"
    if isinstance(e, sqlite3.OperationalError) and ("disk" in text or "full" in text):
        return (f"cannot write the results store: {text}; a run it could not record stays "
                "'running' until the next `perfstudy run` finds it stale and redoes it")
    return None


if __name__ == "__main__":
    raise SystemExit(main())
