"""Where a number came from: the commit is recorded, also where the code is no git checkout."""

import shutil
import subprocess
import sys
from pathlib import Path

import perfstudy
from perfstudy import provenance

SRC = Path(perfstudy.__file__).resolve().parents[1]


def commit_of_copy(tmp_path, env_commit):
    """git_commit() as a copy of the source tree (no .git) reports it."""
    shutil.copytree(SRC / "perfstudy", tmp_path / "perfstudy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path)}
    if env_commit:
        env["PERFSTUDY_GIT_COMMIT"] = env_commit
    code = "from perfstudy.provenance import git_commit; print(git_commit())"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_commit_of_the_checkout_matches_git(monkeypatch):
    monkeypatch.delenv("PERFSTUDY_GIT_COMMIT", raising=False)
    provenance.git_commit.cache_clear()
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=SRC,
                          capture_output=True, text=True)
    assert head.returncode == 0, "the tests run from a git checkout"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=SRC,
                           capture_output=True, text=True).stdout.strip()
    assert provenance.git_commit() == head.stdout.strip() + ("-dirty" if dirty else "")


def test_the_environment_s_commit_wins_over_the_checkout_s(monkeypatch):
    provenance.git_commit.cache_clear()
    monkeypatch.setenv("PERFSTUDY_GIT_COMMIT", "00b5e7c")
    try:
        assert provenance.git_commit() == "00b5e7c"
    finally:
        provenance.git_commit.cache_clear()


def test_a_copy_without_git_takes_the_commit_from_the_environment(tmp_path):
    assert commit_of_copy(tmp_path / "a", "1234abc") == "1234abc"
    assert commit_of_copy(tmp_path / "b", None) == "None"
