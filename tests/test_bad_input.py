"""Bad input a user (or a hostile file) can give: each is one line on stderr and exit code 2,
no traceback, nothing written where it should not be; and the limits that keep a study file,
a grid or a download from exhausting the machine."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfstudy.cli import main
from perfstudy.config import DLConfig, SVMConfig
from perfstudy.errors import UsageError
from perfstudy.results import RunResult
from perfstudy.study.spec import Run
from perfstudy.study.store import Store

REPO = Path(__file__).parents[1]
QUICK = REPO / "studies" / "quick.yaml"
EXP = "experiments:\n  a:\n    kind: flops\n    grid: {model: [resnet18]}\n"


def one_line_error(argv, capsys) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("perfstudy: error: "), err
    return err


def _run_dry(tmp_path, text: str, capsys, name="s.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return one_line_error(["run", path, "--dry-run", "--db", tmp_path / "r.db"], capsys)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "experiments: *i\n"

STUDY_FILES = {
    "alias bomb": (BOMB, "expands to more than 100,000 values"),
    "deep nesting": ("experiments: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    "an experiment twice": (EXP + "  a:\n    kind: flops\n", "'a' is given twice (lines 2 and 5)"),
    "no experiments": ("experiments: {}\n", "'experiments:' is empty"),
    "a 10^9-run grid": ("experiments:\n  a:\n    kind: svm\n    grid:\n"
                        + "".join(f"      {k}: [{', '.join(str(v) for v in range(10, 42))}]\n"
                                  for k in ("C", "coef0", "seed", "split_seed", "train_subset",
                                            "eval_subset")),
                        "the grids expand to 1,073,741,824 runs, more than 100,000"),
    "a path as a study name": ("name: ../../escaped\n" + EXP, "'../../escaped' is not a valid"),
    "an absolute path as a study name": ("name: /tmp/x\n" + EXP, "'/tmp/x' is not a valid name"),
    "a slash in an experiment name": (EXP.replace("  a:", "  a/b:"), "'a/b' is not a valid"),
}


@pytest.mark.parametrize("case", STUDY_FILES)
def test_a_bad_study_file_is_one_line(case, tmp_path, capsys):
    text, message = STUDY_FILES[case]
    t0 = time.monotonic()
    err = _run_dry(tmp_path, text, capsys)
    assert message in err and time.monotonic() - t0 < 30, err
    assert not (tmp_path / "r.db").exists()


def test_a_folder_or_a_latin1_file_as_the_study(tmp_path, capsys):
    assert "is a folder, not a study file" in one_line_error(["run", tmp_path], capsys)
    err = _run_dry(tmp_path, ("description: caf\xe9\n" + EXP).encode("latin-1"), capsys)
    assert "not UTF-8 text (byte 16)" in err


CONFIG = [
    (DLConfig, {"lr": float("inf")}, "learning rate must be > 0 and <= 100, got inf"),
    (DLConfig, {"momentum": -1}, "momentum must be >= 0 and <= 1, got -1.0"),
    (DLConfig, {"train_subset": 10**9},
     "train_subset must be 10 (one image per class) to 49,000 (the mnist training split)"),
    (DLConfig, {"eval_subset": 5}, "eval_subset must be 10 (one image per class) to 7,000"),
    (DLConfig, {"seed": -1}, "seed must be >= 0 and <= 4.29497e+09, got -1"),
    (SVMConfig, {"gamma": float("inf")}, "gamma must be > 0 and <= 1e+06, got inf"),
    (SVMConfig, {"tol": -1}, "tol must be > 0 and <= 1, got -1.0"),
    (SVMConfig, {"coef0": float("nan")}, "coef0 must be >= -1e+06 and <= 1e+06, got nan"),
    (SVMConfig, {"C": "1e400"}, "C must be > 0 and <= 1e+06, got inf"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), CONFIG)
def test_settings_are_finite_and_bounded(cls, kwargs, message):
    with pytest.raises(UsageError) as e:
        cls(**kwargs)
    assert message in str(e.value)


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--lr", "inf"], "learning rate must be > 0 and <= 100, got inf"),
    (["svm", "--coef0", "nan"], "coef0 must be >= -1e+06 and <= 1e+06, got nan"),
    (["train", "--train-subset", str(10**9)], "train_subset must be 10"),
    (["train", "--data-dir", "/nonexistent", "--train-subset", "100"],
     "data dir /nonexistent: no such folder"),
    (["flops", "--input", "3x224x224"], "--input needs --model"),
    (["run", QUICK, "--executor", "pool", "--workers", "64"],
     "--workers 64: more than the"),
    (["run", QUICK, "--executor", "pool", "--address", "auto"],
     "--address does not apply to --executor pool (it applies to ray)"),
    (["export", "mlflow", "--tracking-uri", "ftp://host/x", "--db", "DB"],
     "--tracking-uri ftp://host/x: MLflow stores runs at"),
])
def test_bad_command_lines_are_one_line(argv, message, tmp_path, capsys):
    db = tmp_path / "r.db"
    Store(db).close()
    argv = [str(db) if a == "DB" else a for a in argv]
    if argv[0] == "run":
        argv += ["--db", str(tmp_path / "run.db")]
    assert message in one_line_error(argv, capsys)


def test_report_out_that_is_a_file(tmp_path, capsys):
    store = Store(tmp_path / "r.db")
    store.add("s", [Run("e", DLConfig())])
    store.close()
    (tmp_path / "file").write_text("mine")
    err = one_line_error(["report", "--db", tmp_path / "r.db", "--out", tmp_path / "file"],
                         capsys)
    assert "a file is in the way" in err and (tmp_path / "file").read_text() == "mine"


def test_names_in_a_store_cannot_steer_the_report_out_of_its_folder(tmp_path, capsys):
    # a store made by hand (or an old perfstudy): study and experiment names that are paths,
    # and a description with a script
    store = Store(tmp_path / "r.db")
    runs = [Run(exp, DLConfig(lr=lr)) for exp, lr in (("../../escaped", 1e-3), ("/abs", 1e-2))]
    store.add("../study", runs)
    store.db.execute("INSERT INTO experiments VALUES ('../study', '../../escaped', 'dl', "
                     "'<script>alert(1)</script>')")
    for r in runs:
        store.claim(r.key)
        result = RunResult("dl", r.config.to_dict(), test_acc=97.0, val_acc=97.0, train_ms=9.0,
                           best_epoch=1, curve=[])
        store.finish(r.key, result)
    store.close()
    out = tmp_path / "deep" / "out"
    assert main(["report", "--db", str(tmp_path / "r.db"), "--out", str(out)]) == 0
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - {tmp_path / "r.db"}
    assert written and all(out in p.parents for p in written), written
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "<script>alert" not in (out / "report.html").read_text()


def test_runs_piped_into_head_ends_quietly(tmp_path):
    db = tmp_path / "r.db"
    store = Store(db)
    store.add("s", [Run("e", DLConfig(lr=10.0 ** -k, seed=s)) for k in (1, 2) for s in range(400)])
    store.close()
    r = subprocess.run(f"{sys.executable} -m perfstudy runs --db {db} --format csv | head -2",
                       shell=True, capture_output=True, text=True)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def _limited(limits: dict):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        for which, value in limits.items():
            resource.setrlimit(which, (value, value))
    return apply


def test_out_of_memory_in_train_is_one_line(tmp_path):
    # 12 GiB of address space: torch loads, a ResNet-50 at 224x224 and batch 4,000 does not fit
    r = subprocess.run([sys.executable, "-m", "perfstudy", "train", "--device", "cpu",
                        "--model", "resnet50", "--variant", "imagenet", "--batch-size", "4000",
                        "--train-subset", "4000", "--eval-subset", "100", "--epochs", "1",
                        "--engine", "plain", "--num-workers", "0", "--quiet"],
                       capture_output=True, text=True, timeout=600,
                       preexec_fn=_limited({resource.RLIMIT_AS: 12 << 30}))
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("perfstudy: error: out of memory")


def test_a_checkpoint_that_cannot_be_written_does_not_fail_the_run(tmp_path):
    # files are limited to 1 MiB: the store and the data cache fit, a checkpoint (6 MB) not
    study = tmp_path / "s.yaml"
    study.write_text("experiments:\n  a:\n    kind: dl\n    epochs: 3\n    fixed: {model: "
                     "resnet32, device: cpu, engine: plain, num_workers: 0, batch_size: 32, "
                     "train_subset: 64, eval_subset: 20}\n")
    db = tmp_path / "r.db"
    r = subprocess.run([sys.executable, "-m", "perfstudy", "run", str(study), "--db", str(db),
                        "--checkpoint-every", "0", "--quiet"], capture_output=True, text=True,
                       timeout=600, preexec_fn=_limited({resource.RLIMIT_FSIZE: 1 << 20}))
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = Store(db, create=False).rows()
    assert row.status == "done" and len(row.result.curve) == 3
    failures = row.result.extra["checkpoint_failures"]  # torch's writer's own words
    assert len(failures) == 2 and all(f.startswith(("RuntimeError", "OSError")) for f in failures)
    assert row.result.extra["checkpoint_saves"] == 0
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.pt"))


SLOW = ("experiments:\n  a:\n    kind: dl\n    epochs: 40\n    fixed: {model: resnet32, "
        "device: cpu, engine: plain, num_workers: 0, batch_size: 16, train_subset: 160, "
        "eval_subset: 20}\n    grid: {seed: [0, 1, 2]}\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_pool_takes_its_workers_with_it_and_their_runs_are_redone(tmp_path):
    (tmp_path / "s.yaml").write_text(SLOW.replace("epochs: 40", "epochs: 2"))
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "perfstudy", "run", str(tmp_path / "s.yaml"), "--db", str(db),
           "--executor", "pool", "--workers", "2", "--quiet"]
    parent = subprocess.Popen(cmd)
    deadline = time.monotonic() + 180
    running = []
    while time.monotonic() < deadline and len(running) < 2:
        try:
            running = Store(db, create=False).rows(status="running")
        except UsageError:
            running = []
        time.sleep(0.2)
    workers = {r.pid for r in running}
    assert len(workers) == 2 and parent.pid not in workers
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers outlived their parent"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "2 run(s) killed mid-way earlier will be redone" in again.stderr
    rows = Store(db, create=False).rows()
    assert len(rows) == 3 and all(r.status == "done" for r in rows)


def test_sigterm_to_a_pool_marks_its_runs_interrupted(tmp_path):
    (tmp_path / "s.yaml").write_text(SLOW)
    db = tmp_path / "r.db"
    parent = subprocess.Popen([sys.executable, "-m", "perfstudy", "run", str(tmp_path / "s.yaml"),
                               "--db", str(db), "--executor", "pool", "--workers", "2",
                               "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if len(Store(db, create=False).rows(status="running")) == 2:
                break
        except UsageError:
            pass
        time.sleep(0.2)
    workers = {r.pid for r in Store(db, create=False).rows(status="running")}
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 130 and "interrupted" in err
    assert not any(_alive(p) for p in workers)
    statuses = sorted(r.status for r in Store(db, create=False).rows())
    assert statuses == ["interrupted", "interrupted", "pending"], statuses


def test_status_gives_no_eta_to_gpu_runs_without_a_gpu(tmp_path, capsys):
    if Path("/proc/driver/nvidia/version").exists():
        pytest.skip("this machine has an NVIDIA GPU")  # what the test is about is its absence
    store = Store(tmp_path / "r.db")
    cpu = [Run("q2", DLConfig(device="cpu", seed=s)) for s in range(3)]
    gpu = [Run("q2", DLConfig(device="cuda", seed=s)) for s in range(4)]
    store.add("s", cpu + gpu)
    store.claim(cpu[0].key)
    store.finish(cpu[0].key, RunResult("dl", cpu[0].config.to_dict()))
    store.db.execute("UPDATE runs SET started_at=0, finished_at=100 WHERE status='done'")
    assert main(["status", "--db", str(tmp_path / "r.db"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["experiments"]
    assert row["need_gpu"] == 4 and row["eta_s"] == pytest.approx(200.0)  # 2 CPU runs left


def test_the_summary_counts_the_store_not_this_runner(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("experiments:\n  f:\n    kind: flops\n    grid: {model: [resnet18, "
                     "resnet32, resnet50]}\n")
    db = tmp_path / "r.db"
    base = [sys.executable, "-m", "perfstudy", "run", str(study), "--db", str(db)]
    first = subprocess.run(base + ["--filter", "model=resnet18"], capture_output=True,
                           text=True)
    assert "1 run(s) done here, 0 failed" in first.stderr and "1/1 done" in first.stderr
    rest = subprocess.run(base, capture_output=True, text=True)
    assert "2 run(s) done here, 0 failed" in rest.stderr and "3/3 done in" in rest.stderr


def test_a_store_written_by_another_program_is_not_touched(tmp_path, capsys):
    path = tmp_path / "theirs.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (key TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    err = one_line_error(["run", QUICK, "--db", path], capsys)
    assert "not a perfstudy results store" in err and path.read_bytes() == before
