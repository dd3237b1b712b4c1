"""The SQLite results store: round trip, state transitions, stale-run recovery."""

import json
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pytest

from perfstudy.config import DLConfig, SVMConfig
from perfstudy.errors import UsageError
from perfstudy.results import EpochStats, RunResult
from perfstudy.study.spec import Run
from perfstudy.study.store import SCHEMA_VERSION, Store


def result_for(cfg, acc=98.5) -> RunResult:
    return RunResult(kind=cfg.kind, config=cfg.to_dict(), test_acc=acc, val_acc=acc + 0.1,
                     train_ms=1234.5, eval_ms=10.0, test_acc_last=acc - 0.2, best_epoch=2,
                     curve=[EpochStats(1, 0.5, 97.0, 0.6), EpochStats(2, 0.2, acc + 0.1, 0.6)],
                     extra={"engine": "plain"}, provenance={"torch": "x"})


def test_round_trip_and_transitions(tmp_path):
    store = Store(tmp_path / "r.db")
    a, b = DLConfig(lr=1e-3), SVMConfig(C=10.0)
    store.add("s", [Run("e1", a), Run("e2", b), Run("e3", a)])  # a is in two experiments
    rows = {r.key: r for r in store.rows()}
    assert len(rows) == 2
    assert rows[a.key()].experiments == ["e1", "e3"]
    assert rows[a.key()].status == "pending"

    assert store.claim(a.key())
    assert not store.claim(a.key())  # already running: nobody else may take it
    store.finish(a.key(), result_for(a))
    assert not store.claim(a.key())  # done runs are never run again
    assert store.claim(b.key())
    store.fail(b.key(), "ValueError: boom\ntraceback...")

    rows = {r.key: r for r in Store(tmp_path / "r.db").rows()}
    got = rows[a.key()].result
    assert got == result_for(a)
    assert got.curve[1].val_acc == pytest.approx(98.6)
    assert rows[a.key()].attempts == 1 and rows[a.key()].seconds >= 0
    assert rows[b.key()].status == "failed" and rows[b.key()].error.startswith("ValueError")
    assert store.status_of([a.key(), b.key()]) == {a.key(): "done", b.key(): "failed"}

    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    assert json.loads(db.execute("SELECT config FROM runs WHERE key=?",
                                 (a.key(),)).fetchone()[0])["lr"] == 0.001


def test_running_rows_of_dead_processes_are_reclaimed(tmp_path):
    store = Store(tmp_path / "r.db")
    cfg = DLConfig()
    store.add("s", [Run("e", cfg)])
    store.claim(cfg.key())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    store.db.execute("UPDATE runs SET pid=? WHERE key=?", (int(dead), cfg.key()))
    assert store.reclaim_stale() == 1
    row = store.rows()[0]
    assert row.status == "pending" and "killed while running" in row.error
    store.claim(cfg.key())  # our own, live process: not stale
    assert store.reclaim_stale() == 0


def test_missing_or_foreign_database(tmp_path):
    with pytest.raises(UsageError, match="no results store here"):
        Store(tmp_path / "none.db", create=False)
    bad = tmp_path / "bad.db"
    bad.write_text("this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a perfstudy results store"):
        Store(bad)


def test_experiment_descriptions_are_stored_for_the_report(tmp_path):
    from perfstudy.report.build import build_report
    from perfstudy.study import spec as studies
    from perfstudy.study.plan import plan

    (tmp_path / "s.yaml").write_text(
        "name: d\nexperiments:\n  flops:\n    kind: flops\n"
        "    description: FLOPs of ResNet-32 at its own input.\n"
        "    grid: {model: [resnet32]}\n")
    s = studies.load(tmp_path / "s.yaml")
    store = Store(tmp_path / "r.db")
    plan(s, s.runs(), store)
    assert store.descriptions("d") == {"flops": "FLOPs of ResNet-32 at its own input."}
    report = build_report(store)
    section = next(sec for sec in report.sections if sec.title.startswith("flops"))
    assert section.paragraphs[0] == "From the study file: FLOPs of ResNet-32 at its own input."


def test_stores_of_a_study_run_in_parts_merge_into_one(tmp_path):
    a, b, c, d, e = (DLConfig(lr=lr) for lr in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5))
    here, there = Store(tmp_path / "here.db"), Store(tmp_path / "there.db")
    here.add("s", [Run("e1", a), Run("e1", b), Run("e1", e)])
    there.add("s", [Run("e1", a), Run("e1", b), Run("e2", c), Run("e2", d)])
    there.describe("s", [SimpleNamespace(name="e2", kind="dl", description="part two")])
    for store, cfg, acc in ((here, a, 91.0), (there, a, 92.0), (there, b, 93.0)):
        store.claim(cfg.key())
        store.finish(cfg.key(), result_for(cfg, acc))
    there.claim(c.key())
    there.fail(c.key(), "ValueError: boom")
    there.claim(d.key())  # running there when the copy was made
    assert here.merge(tmp_path / "there.db") == {"added": 2, "completed": 1, "kept": 1}
    rows = {r.key: r for r in here.rows()}
    assert {k: r.status for k, r in rows.items()} == {
        a.key(): "done", b.key(): "done", e.key(): "pending", c.key(): "failed",
        d.key(): "pending"}
    assert rows[a.key()].result.test_acc == 91.0  # done in both: this store's result kept
    assert rows[b.key()].result == result_for(b, 93.0)  # done only there: its result copied
    assert rows[c.key()].error == "ValueError: boom"
    assert rows[c.key()].experiments == ["e2"] and here.descriptions("s") == {"e2": "part two"}
    assert here.merge(tmp_path / "there.db") == {"added": 0, "completed": 0, "kept": 2}
    assert len(here.rows()) == 5  # merging again changes nothing


def test_merge_refuses_itself_and_what_is_not_a_store(tmp_path):
    store = Store(tmp_path / "r.db")
    with pytest.raises(UsageError, match="into itself"):
        store.merge(tmp_path / "r.db")
    with pytest.raises(UsageError, match="no results store here"):
        store.merge(tmp_path / "none.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(UsageError, match="not a perfstudy results store"):
        store.merge(other)
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("t",)]  # checked read-only: nothing created in it


def test_merge_command(tmp_path):
    part = Store(tmp_path / "part.db")
    cfg = DLConfig(lr=3e-3)
    part.add("s", [Run("e", cfg)])
    part.claim(cfg.key())
    part.finish(cfg.key(), result_for(cfg))
    part.close()
    cli = [sys.executable, "-m", "perfstudy", "merge"]
    out = subprocess.run([*cli, str(tmp_path / "part.db"), "--db", str(tmp_path / "all.db")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1 run(s) added" in out.stdout and "all.db: 1 run(s) done" in out.stdout
    bad = subprocess.run([*cli, str(tmp_path / "none.db"), "--db", str(tmp_path / "all.db")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no results store here" in bad.stderr
    assert "Traceback" not in bad.stderr
