"""The results store: SQLite (WAL), one row per run keyed by the hash of its full config.

A run's life: ``pending`` → ``running`` (pid, host, start time) → ``done`` with its result,
or ``failed`` (error text) / ``interrupted`` (Ctrl-C, SIGTERM). Each transition is one
transaction, so a run killed at any point (even kill -9 or power loss) leaves either its
previous state or the next one, never half a result; a ``running`` row whose process is gone
is redone by the next runner (``reclaim_stale``).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfstudy.errors import UsageError
from perfstudy.results import RunResult

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed", "interrupted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,            -- JSON of the run's full config
    status TEXT NOT NULL CHECK (status IN ('pending','running','done','failed','interrupted')),
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    pid INTEGER,
    started_at REAL,
    finished_at REAL,
    result TEXT                      -- JSON of RunResult, only when done
);
CREATE TABLE IF NOT EXISTS memberships (
    study TEXT NOT NULL,
    experiment TEXT NOT NULL,
    key TEXT NOT NULL REFERENCES runs(key),
    PRIMARY KEY (study, experiment, key)
);
CREATE TABLE IF NOT EXISTS experiments (
    study TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,       -- from the study file, quoted by the report
    PRIMARY KEY (study, name)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""


@dataclass
class Row:
    key: str
    kind: str
    config: dict[str, Any]
    status: str
    error: str | None
    attempts: int
    host: str | None
    pid: int | None
    started_at: float | None
    finished_at: float | None
    result: RunResult | None
    experiments: list[str]

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class Store:
    def __init__(self, path: str | Path = "perfstudy.db", create: bool = True):
        self.path = str(path)
        if not create and not Path(self.path).exists():
            raise UsageError(f"{self.path}: no results store here (run a study first, or --db)")
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{self.path}: not a perfstudy results store ({e})") from None

    def _init_schema(self) -> None:
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise UsageError(f"{self.path}: results store schema v{row[0]}, this perfstudy "
                             f"reads v{SCHEMA_VERSION}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all or nothing, and safe against concurrent writers."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- writing -------------------------------------------------------------------------
    def add(self, study: str, runs) -> None:
        """Register runs as pending (existing rows keep their status)."""
        with self.tx() as db:
            for run in runs:
                cfg = run.config
                db.execute(
                    "INSERT OR IGNORE INTO runs (key, kind, config, status) "
                    "VALUES (?, ?, ?, 'pending')",
                    (cfg.key(), cfg.kind, json.dumps(cfg.to_dict(), sort_keys=True)),
                )
                db.execute("INSERT OR IGNORE INTO memberships VALUES (?, ?, ?)",
                           (study, run.experiment, cfg.key()))

    def describe(self, study: str, experiments) -> None:
        """Record (or update) the study file's experiments: name, kind, description."""
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?)",
                           [(study, e.name, e.kind, e.description) for e in experiments])

    def claim(self, key: str) -> bool:
        """pending/interrupted/failed → running, owned by this process. False if not claimable
        (done, or running elsewhere)."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE runs SET status='running', attempts=attempts+1, host=?, pid=?, "
                "started_at=?, finished_at=NULL, error=NULL "
                "WHERE key=? AND status IN ('pending','interrupted','failed')",
                (socket.gethostname(), os.getpid(), time.time(), key),
            )
            return cur.rowcount == 1

    def finish(self, key: str, result: RunResult) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET status='done', result=?, finished_at=?, error=NULL WHERE key=?",
                (json.dumps(result.to_dict(), default=str), time.time(), key),
            )

    def fail(self, key: str, error: str, status: str = "failed") -> None:
        assert status in ("failed", "interrupted")
        with self.tx() as db:
            db.execute("UPDATE runs SET status=?, error=?, finished_at=? WHERE key=?",
                       (status, error, time.time(), key))

    def reclaim_stale(self) -> int:
        """``running`` rows of this host whose process is gone were killed mid-run: make them
        pending again. Rows of other hosts are left alone (their runner may be alive)."""
        host = socket.gethostname()
        stale = [k for k, pid in self.db.execute(
            "SELECT key, pid FROM runs WHERE status='running' AND host=?", (host,))
            if not _alive(pid)]
        with self.tx() as db:
            for k in stale:
                db.execute("UPDATE runs SET status='pending', error='killed while running "
                           "(process gone); redone' WHERE key=? AND status='running'", (k,))
        return len(stale)

    def merge(self, path: str | Path) -> dict[str, int]:
        """Copy another store's runs into this one (shards of a study run on several machines,
        or in several sessions): runs this store lacks, with their status and result, and the
        results of runs done there but not here. A run done in both keeps this store's result
        (the same config: the key is its hash). A run ``running`` there is copied as
        ``pending``: its process is on another machine, and this store's runner may take it.
        Experiments and memberships are copied too. One transaction: all or nothing."""
        if Path(path).resolve() == Path(self.path).resolve():
            raise UsageError(f"{path}: cannot merge a store into itself")
        _check_readable_store(path)
        self.db.execute("ATTACH DATABASE ? AS other", (str(path),))
        try:
            with self.tx() as db:
                counts = dict(zip(("added", "completed", "kept"), db.execute(
                    "SELECT sum(h.key IS NULL), "
                    "sum(h.key IS NOT NULL AND o.status='done' AND h.status!='done'), "
                    "sum(h.key IS NOT NULL AND o.status='done' AND h.status='done') "
                    "FROM other.runs o LEFT JOIN main.runs h ON h.key = o.key").fetchone(),
                    strict=True))
                db.execute(
                    "INSERT INTO main.runs SELECT key, kind, config, "
                    "CASE status WHEN 'running' THEN 'pending' ELSE status END, error, attempts, "
                    "host, pid, started_at, finished_at, result FROM other.runs "
                    "WHERE key NOT IN (SELECT key FROM main.runs)")
                db.execute(
                    "UPDATE main.runs SET (status, error, attempts, host, pid, started_at, "
                    "finished_at, result) = (SELECT status, error, attempts, host, pid, "
                    "started_at, finished_at, result FROM other.runs o WHERE o.key = runs.key) "
                    "WHERE status != 'done' AND key IN "
                    "(SELECT key FROM other.runs WHERE status = 'done')")
                db.execute("INSERT OR IGNORE INTO main.memberships SELECT * FROM other.memberships")
                db.execute("INSERT OR IGNORE INTO main.experiments SELECT * FROM other.experiments")
        finally:
            self.db.execute("DETACH DATABASE other")
        return {k: int(v or 0) for k, v in counts.items()}

    # -- reading -------------------------------------------------------------------------
    def rows(self, study: str | None = None, status: str | None = None) -> list[Row]:
        sql = ("SELECT r.key, r.kind, r.config, r.status, r.error, r.attempts, r.host, r.pid, "
               "r.started_at, r.finished_at, r.result, group_concat(m.experiment) "
               "FROM runs r LEFT JOIN memberships m ON m.key = r.key")
        where, args = [], []
        if study:
            where.append("m.study = ?")
            args.append(study)
        if status:
            where.append("r.status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY r.key ORDER BY r.rowid"
        return [_row(t) for t in self.db.execute(sql, args)]

    def status_of(self, keys: list[str]) -> dict[str, str]:
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, status FROM runs WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(dict(self.db.execute(q, chunk)))
        return out

    def descriptions(self, study: str) -> dict[str, str]:
        return dict(self.db.execute(
            "SELECT name, description FROM experiments WHERE study=?", (study,)))

    def studies(self) -> list[str]:
        return [s for (s,) in self.db.execute("SELECT DISTINCT study FROM memberships")]


def _check_readable_store(path: str | Path) -> None:
    """``path`` is a results store of this schema, checked read-only (nothing is created in a
    file that is not one)."""
    if not Path(path).is_file():
        raise UsageError(f"{path}: no results store here")
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise UsageError(f"{path}: not a perfstudy results store ({e})") from None
    if row is None or int(row[0]) != SCHEMA_VERSION:
        found = "no schema version" if row is None else f"schema v{row[0]}"
        raise UsageError(f"{path}: {found}, this perfstudy reads results stores of schema "
                         f"v{SCHEMA_VERSION}")


def _row(t) -> Row:
    (key, kind, config, status, error, attempts, host, pid, t0, t1, result, exps) = t
    return Row(key, kind, json.loads(config), status, error, attempts, host, pid, t0, t1,
               RunResult.from_dict(json.loads(result)) if result else None,
               sorted(set(exps.split(","))) if exps else [])


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
