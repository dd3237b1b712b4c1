"""A run or a pack killed mid-way resumes from its last checkpoint and ends as if never stopped.

The crash is real: a child process trains and is killed with SIGKILL once it has saved a
checkpoint. The resumed training must give what an uninterrupted one gives (data order,
weights, optimizer state and selection all come back): packs on CPU in float64 and, on a GPU,
through their CUDA graphs; single runs with the plain and the CPU engines; and ``perfstudy run``
killed and started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from perfstudy.config import DLConfig
from perfstudy.dl.checkpoint import Checkpoint, checkpoint_path
from perfstudy.dl.packing import train_pack
from perfstudy.dl.train import train_dl
from perfstudy.study.store import Store


def _env() -> dict:
    """This process's environment (the data folder conftest sets) for a child perfstudy."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}

PACK_CPU = dict(device="cpu", precision="fp64", channels_last=False, graph=False)
CFGS = [  # two datasets, Adam and SGD (momentum): every kind of state a trial carries
    dict(dataset="mnist", lr=1e-3, seed=4),
    dict(dataset="fashion-mnist", lr=3e-3, seed=5, optimizer="sgd"),
]
EPOCHS = 12


def _cfgs(device: str, epochs: int = EPOCHS, **kw) -> list[DLConfig]:
    base = dict(model="resnet32", batch_size=8, epochs=epochs, device=device, engine="fast",
                train_subset=40, eval_subset=20)
    return [DLConfig(**{**base, **c, **kw}) for c in CFGS]


CHILD = """
import json, sys
import torch
torch.backends.cudnn.deterministic = True  # as the deterministic_kernels fixture (GPU test)
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
from perfstudy.config import DLConfig
from perfstudy.dl.packing import train_pack
from perfstudy.dl.train import train_dl
job = json.loads(sys.argv[1])
cfgs = [DLConfig.from_dict(c) for c in job["cfgs"]]
if job["pack"]:
    train_pack(cfgs, checkpoint=job["path"], checkpoint_every_s=0, **job["opts"])
else:
    train_dl(cfgs[0], checkpoint=job["path"], checkpoint_every_s=0)
"""


def _kill_when(child: subprocess.Popen, saved) -> None:
    """SIGKILL ``child`` as soon as ``saved()`` is true; fail if it ends or stalls first."""
    try:
        deadline = time.monotonic() + 300
        while not saved():
            assert child.poll() is None, "the child ended before saving a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL  # killed, not finished


def _kill_after_first_checkpoint(cfgs, path: Path, pack: bool, opts=None) -> int:
    """Train ``cfgs`` (a pack, or one run) in a child process, checkpointing after every
    epoch; SIGKILL it once a checkpoint is on disk. Returns the epoch the checkpoint holds."""
    job = {"cfgs": [c.to_dict() for c in cfgs], "path": str(path), "pack": pack,
           "opts": opts or {}}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(job)], env=_env())
    _kill_when(child, path.exists)
    epoch = torch.load(path, weights_only=True)["epoch"]
    assert 1 <= epoch < cfgs[0].epochs
    return epoch


def _same_runs(resumed, fresh, rel: float) -> None:
    for r, f in zip(resumed, fresh, strict=True):
        assert r.config == f.config
        assert [e.epoch for e in r.curve] == list(range(1, EPOCHS + 1))
        assert [e.val_acc for e in r.curve] == [e.val_acc for e in f.curve]
        assert [e.train_loss for e in r.curve] == pytest.approx(
            [e.train_loss for e in f.curve], rel=rel)
        assert (r.test_acc, r.test_acc_last, r.best_epoch, r.val_acc) == (
            f.test_acc, f.test_acc_last, f.best_epoch, f.val_acc)
        # every epoch's training time counted once, across the two processes
        assert r.train_ms == pytest.approx(sum(e.seconds for e in r.curve) * 1e3, rel=1e-6)


# --- packs


def test_a_killed_pack_resumes_where_it_stopped(tmp_path):
    cfgs = _cfgs("cpu")
    path = tmp_path / "pack.pt"
    epoch = _kill_after_first_checkpoint(cfgs, path, pack=True, opts=PACK_CPU)
    resumed = train_pack(cfgs, checkpoint=path, checkpoint_every_s=0, **PACK_CPU)
    fresh = train_pack(cfgs, **PACK_CPU)
    assert {r.extra["resumed_after_epoch"] for r in resumed} == {epoch}
    # saved after every later epoch but the last (the results follow it)
    assert resumed[0].extra["checkpoint_saves"] == EPOCHS - 1 - epoch
    assert resumed[0].extra["checkpoint_ms"] > 0
    assert fresh[0].extra["resumed_after_epoch"] is None
    assert fresh[0].extra["checkpoint_saves"] == 0 and not path.with_suffix(".pt.tmp").exists()
    _same_runs(resumed, fresh, rel=1e-9)
    # the two trials really differ (a swapped or shared state would make them alike)
    assert resumed[0].curve != resumed[1].curve


def test_a_checkpoint_of_other_runs_or_a_torn_file_is_not_used(tmp_path):
    cfgs = _cfgs("cpu", epochs=2)
    path = tmp_path / "pack.pt"
    train_pack(cfgs, checkpoint=path, checkpoint_every_s=0, **PACK_CPU)  # saves after epoch 1
    assert torch.load(path, weights_only=True)["epoch"] == 1
    other = _cfgs("cpu", epochs=2, lr=1e-2)  # other runs: their keys differ
    (r, _) = train_pack(other, checkpoint=path, checkpoint_every_s=1e9, **PACK_CPU)
    assert r.extra["resumed_after_epoch"] is None and len(r.curve) == 2
    (r, _) = train_pack(cfgs, checkpoint=path, checkpoint_every_s=1e9, **PACK_CPU)
    assert r.extra["resumed_after_epoch"] == 1 and len(r.curve) == 2
    path.write_bytes(path.read_bytes()[:1000])  # torn mid-write (a rename prevents this)
    (r, _) = train_pack(cfgs, checkpoint=path, checkpoint_every_s=1e9, **PACK_CPU)
    assert r.extra["resumed_after_epoch"] is None and len(r.curve) == 2


def test_checkpoints_live_beside_the_store_one_per_run_or_pack(tmp_path):
    a = checkpoint_path(tmp_path / "r.db", ["k1", "k2"])
    assert a.parent == tmp_path / "r.db.checkpoints" and a.suffix == ".pt"
    assert a == checkpoint_path(tmp_path / "r.db", ["k1", "k2"])
    assert a != checkpoint_path(tmp_path / "r.db", ["k1", "k3"])
    ckpt = Checkpoint(a, every_s=0)
    assert ckpt.wants(1, 2) and not ckpt.wants(2, 2)  # never after the last epoch
    ckpt.save({"signature": {"keys": ["k1"]}, "epoch": 3})
    assert ckpt.saves == 1 and ckpt.save_ms > 0
    assert ckpt.load({"keys": ["k1"]})["epoch"] == 3 and ckpt.load({"keys": ["k2"]}) is None
    assert not Checkpoint(a, every_s=1e9).wants(1, 2)
    assert not list(a.parent.glob("*.tmp"))
    ckpt.remove()
    assert not a.parent.exists()


# --- single runs: the plain DataLoader loop and the CPU engine


@pytest.mark.parametrize("engine", ["plain", "cpu"])
def test_a_killed_run_resumes_where_it_stopped(tmp_path, engine):
    # Adam: moments and step count must come back; the data order comes from the engine's
    # generator (the DataLoader's, or the resident batches')
    (cfg,) = _cfgs("cpu", engine=engine, num_workers=0)[:1]
    path = tmp_path / "run.pt"
    epoch = _kill_after_first_checkpoint([cfg], path, pack=False)
    resumed = train_dl(cfg, checkpoint=path, checkpoint_every_s=0)
    fresh = train_dl(cfg)
    assert resumed.extra["engine"] == engine and resumed.extra["resumed_after_epoch"] == epoch
    assert resumed.extra["checkpoint_saves"] == EPOCHS - 1 - epoch
    assert fresh.extra["resumed_after_epoch"] is None and fresh.extra["checkpoint_saves"] == 0
    _same_runs([resumed], [fresh], rel=1e-6)


def _study(tmp_path: Path, device: str, epochs: int, fixed: str, grid: str) -> list[str]:
    study = tmp_path / "s.yaml"
    study.write_text(f"experiments:\n  a:\n    kind: dl\n    pack: auto\n    epochs: {epochs}\n"
                     f"    fixed: {{device: {device}, {fixed}}}\n    grid: {grid}\n")
    return [sys.executable, "-m", "perfstudy", "run", str(study), "--db",
            str(tmp_path / "r.db"), "--quiet", "--checkpoint-every", "0"]


def _kill_run_and_resume(tmp_path: Path, cmd: list[str]) -> list:
    """``perfstudy run`` killed after its first checkpoint, then run again to the end."""
    folder = tmp_path / "r.db.checkpoints"
    child = subprocess.Popen(cmd, env=_env())
    _kill_when(child, lambda: folder.exists() and any(folder.glob("*.pt")))
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "killed mid-way earlier will be redone" in done.stderr + done.stdout
    assert not folder.exists()  # removed once the results were stored
    rows = Store(tmp_path / "r.db").rows()
    assert rows and all(r.status == "done" for r in rows)
    return rows


def test_a_study_killed_mid_run_resumes_the_run(tmp_path):
    cmd = _study(tmp_path, "cpu", 30, "model: resnet32, batch_size: 16, train_subset: 160, "
                 "eval_subset: 100, num_workers: 0", "{optimizer: [adam]}")
    (row,) = _kill_run_and_resume(tmp_path, cmd)
    assert row.result.extra["resumed_after_epoch"] >= 1  # resumed, not redone
    assert [e.epoch for e in row.result.curve] == list(range(1, 31))
    assert row.attempts == 2


# --- CUDA: the graphed pack, and a study run killed and started again



@pytest.mark.cuda
@pytest.mark.usefixtures("deterministic_kernels")
def test_a_killed_graphed_pack_resumes_where_it_stopped(tmp_path):
    # fp64 with deterministic kernels: the graph replays into restored tensors in place
    opts = dict(device="cuda", precision="fp64", channels_last=True, graph=True)
    cfgs = _cfgs("cuda")
    path = tmp_path / "pack.pt"
    epoch = _kill_after_first_checkpoint(cfgs, path, pack=True, opts=opts)
    resumed = train_pack(cfgs, checkpoint=path, checkpoint_every_s=0, **opts)
    fresh = train_pack(cfgs, **opts)
    assert resumed[0].extra["graph"] and resumed[0].extra["resumed_after_epoch"] == epoch
    _same_runs(resumed, fresh, rel=1e-6)


@pytest.mark.cuda
def test_a_study_killed_mid_pack_resumes_the_pack(tmp_path):
    cmd = _study(tmp_path, "cuda", 40, "model: resnet32, batch_size: 32, train_subset: 640, "
                 "eval_subset: 300", "{dataset: [mnist, fashion-mnist], optimizer: [sgd, adam]}")
    rows = _kill_run_and_resume(tmp_path, cmd)
    assert len(rows) == 4
    resumed = {r.result.extra["resumed_after_epoch"] for r in rows}
    assert len(resumed) == 1 and resumed.pop() >= 1  # one pack, resumed, not redone
    for r in rows:
        assert [e.epoch for e in r.result.curve] == list(range(1, 41))
