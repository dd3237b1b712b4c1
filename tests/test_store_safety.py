"""A results store is never created or changed by the commands that only read it, a file that
is not one is refused before anything is written to it, and a damaged store is a one-line
error (exit 2) for every command, with nothing copied out of it by a merge."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from pathlib import Path

import pytest

from perfstudy.cli import main
from perfstudy.config import DLConfig, SVMConfig
from perfstudy.errors import UsageError
from perfstudy.results import RunResult
from perfstudy.study.spec import Run
from perfstudy.study.store import SCHEMA_VERSION, Store

READERS = (["status"], ["runs"], ["runs", "--format", "csv"], ["report", "--out", "OUT"])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(argv: list[str], tmp_path: Path, capsys) -> tuple[int, str]:
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code = main(argv)
    return code, capsys.readouterr().err


def _store(path: Path, n: int = 2) -> Store:
    store = Store(path)
    runs = [Run("e", DLConfig(lr=10.0 ** -k)) for k in range(1, n + 1)]
    store.add("s", runs)
    for r in runs:
        store.claim(r.key)
        store.finish(r.key, RunResult("dl", r.config.to_dict(), test_acc=90.0, train_ms=1.0))
    return store


@pytest.fixture
def foreign(tmp_path) -> Path:
    """Another program's SQLite database (rollback journal, its own table)."""
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    db.execute("INSERT INTO notes (text) VALUES ('mine')")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("argv", [*READERS, ["run", "studies/quick.yaml"]])
def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(argv, foreign, tmp_path,
                                                                   capsys):
    before = _digest(foreign)
    code, err = _cli([*argv, "--db", str(foreign)], tmp_path, capsys)
    assert code == 2 and err.count("\n") == 1 and "not a perfstudy results store" in err, err
    assert _digest(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]  # no -wal, no report
    db = sqlite3.connect(foreign)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [t for (t,) in db.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_a_merge_from_a_foreign_file_creates_no_target(foreign, tmp_path, capsys):
    code, err = _cli(["merge", str(foreign), "--db", str(tmp_path / "new.db")], tmp_path, capsys)
    assert code == 2 and "not a perfstudy results store" in err
    assert not (tmp_path / "new.db").exists() and _digest(foreign)


def test_reading_a_store_changes_nothing_in_it(tmp_path, capsys):
    _store(tmp_path / "r.db").close()
    files = {p.name: _digest(p) for p in tmp_path.iterdir()}
    for argv in READERS:
        code, _ = _cli([*argv, "--db", str(tmp_path / "r.db")], tmp_path, capsys)
        assert code == 0, argv
    assert {p.name: _digest(p) for p in tmp_path.iterdir() if p.name != "out"} == files


DAMAGE = {
    "schema version not a number": ("UPDATE meta SET value='abc' WHERE key='schema_version'",
                                    "no schema version"),
    "schema from the future": ("UPDATE meta SET value='99' WHERE key='schema_version'",
                               "schema v99; this perfstudy reads results stores of schema v1"),
    "dropped column": ("ALTER TABLE runs DROP COLUMN result", "lacks column(s) result"),
    "dropped table": ("DROP TABLE memberships", "no table 'memberships'"),
    "config not JSON": ("UPDATE runs SET config='{not json' WHERE rowid=1",
                        "damaged results store: run "),
    "result not a result": ("UPDATE runs SET result='[1, 2]' WHERE rowid=2",
                            "damaged results store: run "),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_store_is_a_one_line_error_everywhere(damage, tmp_path, capsys):
    sql, message = DAMAGE[damage]
    _store(tmp_path / "bad.db").close()
    db = sqlite3.connect(tmp_path / "bad.db")
    db.execute(sql)
    db.commit()
    db.close()
    good = _store(tmp_path / "good.db")
    good.close()
    good_before = _digest(tmp_path / "good.db")
    for argv in (*READERS, ["merge", str(tmp_path / "bad.db")]):
        db_arg = tmp_path / ("good.db" if argv[0] == "merge" else "bad.db")
        code, err = _cli([*argv, "--db", str(db_arg)], tmp_path, capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    assert _digest(tmp_path / "good.db") == good_before  # the merge copied nothing


def test_a_schema_v1_store_is_read_as_it_is_and_migrated_by_a_writer(tmp_path):
    # a store written by an earlier perfstudy (schema v1: no placement): the Q1(a) grid's
    path = tmp_path / "v1.db"
    path.write_bytes((Path(__file__).parents[1] / "docs/results/seed-q1a-h200/store.db")
                     .read_bytes())
    before = _digest(path)
    reader = Store(path, create=False)
    rows = reader.rows()
    assert reader.version == 1 and len(rows) == 32 and {r.placement for r in rows} == {None}
    assert all(r.status == "done" and 80 < r.result.test_acc < 100 for r in rows)
    reader.close()
    assert _digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["v1.db"]
    writer = Store(path)
    assert writer.version == SCHEMA_VERSION == 2
    assert [r.result.test_acc for r in writer.rows()] == [r.result.test_acc for r in rows]
    key = rows[0].key
    writer.db.execute("UPDATE runs SET status='pending' WHERE key=?", (key,))
    assert writer.claim(key)
    writer.place([key], "node a · GPU 0")
    assert writer.rows()[0].placement == "node a · GPU 0"


def test_results_with_nan_or_inf_are_stored_as_valid_json(tmp_path):
    store = Store(tmp_path / "r.db")
    cfg = SVMConfig()
    store.add("s", [Run("e", cfg)])
    store.claim(cfg.key())
    store.finish(cfg.key(), RunResult("svm", cfg.to_dict(), test_acc=math.nan,
                                      extra={"loss": math.inf, "curve": [1.0, -math.inf]}))
    (valid, text), = store.db.execute("SELECT json_valid(result), result FROM runs")
    assert valid == 1 and json.loads(text)["extra"] == {"loss": None, "curve": [1.0, None]}
    assert store.rows()[0].result.test_acc is None


def test_a_folder_or_an_empty_file_as_the_store(tmp_path):
    with pytest.raises(UsageError, match="is a folder, not a results store"):
        Store(tmp_path)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(UsageError, match="not a perfstudy results store"):
        Store(empty, create=False)
    assert Store(empty).version == SCHEMA_VERSION  # an empty file is a new store


def test_a_full_store_is_one_line_that_says_what_becomes_of_the_run(tmp_path):
    import sqlite3

    from perfstudy.cli import environment_error

    db = sqlite3.connect(tmp_path / "full.db")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("PRAGMA max_page_count = 3")  # SQLite's own "disk full", on a real file
    with pytest.raises(sqlite3.OperationalError) as err:
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (?)", (b"x" * 4096,))
    line = environment_error(err.value)
    assert line.startswith("cannot write the results store: database or disk is full")
    assert "redoes it" in line and "\n" not in line
