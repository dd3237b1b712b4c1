"""Resume after a real kill: a study killed mid-run with SIGKILL, then restarted, stores
every run exactly once and leaves none 'running'. Ctrl-C marks the run interrupted."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

STUDY = """
name: resume
experiments:
  tiny:
    kind: dl
    fixed: {model: resnet32, dataset: mnist, batch_size: 32, num_workers: 0, device: cpu}
    epochs: 1
    train_subset: 200
    eval_subset: 50
    grid:
      seed: [0, 1, 2]
"""


def start(tmp_path, *extra):
    cmd = [sys.executable, "-m", "perfstudy", "run", str(tmp_path / "s.yaml"),
           "--db", str(tmp_path / "r.db"), "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def statuses(tmp_path):
    db = sqlite3.connect(tmp_path / "r.db", timeout=30)
    try:
        return db.execute("SELECT key, status, attempts FROM runs ORDER BY rowid").fetchall()
    finally:
        db.close()


def wait_for(tmp_path, predicate, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (tmp_path / "r.db").exists():
            try:
                rows = statuses(tmp_path)
            except sqlite3.OperationalError:
                rows = []
            if rows and predicate(rows):
                return rows
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the study to reach the expected state")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    (tmp_path / "s.yaml").write_text(STUDY)
    proc = start(tmp_path)
    # kill -9 while the second run is training (the first is done)
    wait_for(tmp_path, lambda rows: [s for _, s, _ in rows] == ["done", "running", "pending"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = statuses(tmp_path)
    assert [s for _, s, _ in rows] == ["done", "running", "pending"]  # nothing half-written

    proc = start(tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "1 run(s) killed mid-way earlier will be redone" in err + out
    assert "1 already done (skipped)" in err + out
    rows = statuses(tmp_path)
    assert [s for _, s, _ in rows] == ["done", "done", "done"]
    assert [a for _, _, a in rows] == [1, 2, 1]  # the killed run was redone once
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("SELECT count(*), count(DISTINCT key) FROM runs").fetchone() == (3, 3)
    assert db.execute("SELECT count(*) FROM runs WHERE result IS NULL").fetchone() == (0,)

    proc = start(tmp_path)  # a third start trains nothing and says so
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert "nothing to train" in err + out and "3 already done" in err + out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_marks_the_run_interrupted(tmp_path, sig):
    # a run long enough (~10 s on 2 cores) that the signal surely lands inside it
    (tmp_path / "s.yaml").write_text(STUDY.replace("train_subset: 200", "train_subset: 3000"))
    proc = start(tmp_path, "--only", "tiny", "--filter", "seed=0")
    wait_for(tmp_path, lambda rows: rows[0][1] == "running")
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert [s for _, s, _ in statuses(tmp_path)] == ["interrupted"]
