"""The results store: SQLite (WAL), one row per run keyed by the hash of its full config.

A run's life: ``pending`` → ``running`` (host, pid and start time of the process that claimed
it; ``placement``: where it trains) → ``done`` with its result, or ``failed`` (error text) /
``interrupted`` (Ctrl-C, SIGTERM). Each transition is one transaction, so a run killed at any
point (even kill -9 or power loss) leaves either its previous state or the next one, never half
a result; a ``running`` row whose process is gone is redone by the next runner
(``reclaim_stale``). The process that claims a run owns it until it records the outcome: the
local and pool executors' processes, or the Ray executor's driver (its workers never open the
store).

Only ``Store(path)`` (``perfstudy run``, a merge's target) creates or changes a store; it
refuses a SQLite file that is not one. ``Store(path, create=False)`` (``status``, ``runs``,
``report``, ``export``) opens it read-only and changes nothing, also on read-only media.
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
from perfstudy.results import RunResult, dumps

SCHEMA_VERSION = 2  # 2: runs.placement
STATUSES = ("pending", "running", "done", "failed", "interrupted")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
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
    result TEXT,                     -- JSON of RunResult, only when done
    placement TEXT                   -- where it trains or trained (node, device)
);
CREATE TABLE memberships (
    study TEXT NOT NULL,
    experiment TEXT NOT NULL,
    key TEXT NOT NULL REFERENCES runs(key),
    PRIMARY KEY (study, experiment, key)
);
CREATE TABLE experiments (
    study TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,       -- from the study file, quoted by the report
    PRIMARY KEY (study, name)
);
CREATE INDEX runs_status ON runs(status);
"""
# what this perfstudy reads: each table's columns in v1 (v2 adds runs.placement)
COLUMNS = {
    "meta": ("key", "value"),
    "runs": ("key", "kind", "config", "status", "error", "attempts", "host", "pid",
             "started_at", "finished_at", "result"),
    "memberships": ("study", "experiment", "key"),
    "experiments": ("study", "name", "kind", "description"),
}
MIGRATIONS = {1: "ALTER TABLE runs ADD COLUMN placement TEXT"}  # from version N to N + 1


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
    placement: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class Store:
    def __init__(self, path: str | Path = "perfstudy.db", create: bool = True):
        """``create``: open for writing, creating the store if the file is missing or empty;
        else open read-only (the file must be a store)."""
        self.path = str(path)
        p = Path(self.path)
        if p.is_dir():
            raise UsageError(f"{self.path}: is a folder, not a results store (--db FILE)")
        if not create and not p.exists():
            raise UsageError(f"{self.path}: no results store here (run a study first, or --db)")
        self.readonly = not create
        try:
            self.db = _read_only(p) if self.readonly else _connect(p)
            self.version = self._check_schema()  # before any change to a file that is not one
            if not self.readonly:
                _write_mode(self.db)
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{self.path}: not a perfstudy results store ({e})") from None

    def _check_schema(self) -> int:
        tables = {name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and not self.readonly:  # a new store, created whole or not at all
            self.db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} INSERT INTO meta VALUES "
                                  f"('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
            return SCHEMA_VERSION
        if not tables and Path(self.path).stat().st_size == 0:
            raise UsageError(f"{self.path}: an empty file, not a perfstudy results store (yet: "
                             "a study that is just starting creates it)")
        if "meta" not in tables:
            raise UsageError(f"{self.path}: a SQLite file, but not a perfstudy results store "
                             "(no meta table); give another --db")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None or not 1 <= version <= SCHEMA_VERSION:
            found = "no schema version" if version is None else f"schema v{version}"
            raise UsageError(f"{self.path}: {found}; this perfstudy reads results stores of "
                             f"schema v1 to v{SCHEMA_VERSION}")
        for table, cols in COLUMNS.items():
            have = {c[1] for c in self.db.execute(f"PRAGMA table_info({table})")}
            if not have:
                raise UsageError(f"{self.path}: damaged results store: no table {table!r}")
            if missing := [c for c in cols if c not in have]:
                raise UsageError(f"{self.path}: damaged results store: table {table!r} lacks "
                                 f"column(s) {', '.join(missing)}")
        if version < SCHEMA_VERSION and not self.readonly:
            with self.tx() as db:
                for v in range(version, SCHEMA_VERSION):
                    db.execute(MIGRATIONS[v])
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                           (str(SCHEMA_VERSION),))
            version = SCHEMA_VERSION
        return version

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
                "started_at=?, finished_at=NULL, error=NULL, placement=NULL "
                "WHERE key=? AND status IN ('pending','interrupted','failed')",
                (socket.gethostname(), os.getpid(), time.time(), key),
            )
            return cur.rowcount == 1

    def finish(self, key: str, result: RunResult) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET status='done', result=?, finished_at=?, error=NULL WHERE key=?",
                (dumps(result.to_dict()), time.time(), key),
            )

    def place(self, keys, placement: str) -> None:
        """Record where claimed runs train (a node and a device), for ``perfstudy status``."""
        with self.tx() as db:
            db.executemany("UPDATE runs SET placement=? WHERE key=? AND status='running'",
                           [(placement, k) for k in keys])

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
        Experiments and memberships are copied too. The source is checked whole first (schema,
        JSON of every row), then copied in one transaction: all or nothing."""
        if Path(path).resolve() == Path(self.path).resolve():
            raise UsageError(f"{path}: cannot merge a store into itself")
        source = Store(path, create=False)
        try:
            source.rows()  # every row readable: a corrupt source is refused before any copy
            placement = "placement" if source.version >= 2 else "NULL"
        finally:
            source.close()
        self.db.execute("ATTACH DATABASE ? AS other", (f"file:{Path(path).resolve()}?mode=ro",))
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
                    f"host, pid, started_at, finished_at, result, {placement} FROM other.runs "
                    "WHERE key NOT IN (SELECT key FROM main.runs)")
                db.execute(
                    "UPDATE main.runs SET (status, error, attempts, host, pid, started_at, "
                    f"finished_at, result, placement) = (SELECT status, error, attempts, host, "
                    f"pid, started_at, finished_at, result, {placement} FROM other.runs o "
                    "WHERE o.key = runs.key) WHERE status != 'done' AND key IN "
                    "(SELECT key FROM other.runs WHERE status = 'done')")
                db.execute("INSERT OR IGNORE INTO main.memberships SELECT study, experiment, key "
                           "FROM other.memberships")
                db.execute("INSERT OR IGNORE INTO main.experiments SELECT study, name, kind, "
                           "description FROM other.experiments")
        finally:
            self.db.execute("DETACH DATABASE other")
        return {k: int(v or 0) for k, v in counts.items()}

    # -- reading -------------------------------------------------------------------------
    def rows(self, study: str | None = None, status: str | None = None) -> list[Row]:
        placement = "r.placement" if self.version >= 2 else "NULL"
        sql = ("SELECT r.key, r.kind, r.config, r.status, r.error, r.attempts, r.host, r.pid, "
               f"r.started_at, r.finished_at, r.result, group_concat(m.experiment), {placement} "
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
        try:
            return [_row(t) for t in self.db.execute(sql, args)]
        except (ValueError, TypeError, KeyError) as e:  # JSON that is not a config or result
            raise UsageError(f"{self.path}: damaged results store: {e}") from None

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


def _connect(p: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(p, timeout=30, isolation_level=None)
    except sqlite3.OperationalError as e:
        raise UsageError(f"{p}: cannot open or create the results store ({e})") from None


def _write_mode(db: sqlite3.Connection) -> None:
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")


def _read_only(p: Path) -> sqlite3.Connection:
    """A connection that writes nothing. With no write-ahead log beside the file, no writer is
    active and the file is read as immutable (SQLite then creates no -wal or -shm file, also
    on read-only media); with one, through it, to see a running study's latest state."""
    uri = f"file:{p.resolve()}?mode=ro"
    if not Path(f"{p}-wal").exists():
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)


def _row(t) -> Row:
    (key, kind, config, status, error, attempts, host, pid, t0, t1, result, exps, where) = t
    try:
        cfg = json.loads(config)
        res = RunResult.from_dict(json.loads(result)) if result else None
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"run {key}: its stored config or result is not valid ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"run {key}: its stored config is not a mapping")
    return Row(key, kind, cfg, status, error, attempts, host, pid, t0, t1, res,
               sorted(set(exps.split(","))) if exps else [], where)


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
