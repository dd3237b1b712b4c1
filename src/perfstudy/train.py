"""The deep-learning trainer: one ``DLConfig`` in, one ``RunResult`` out.

Per epoch: the engine trains (timed, device synchronised, data loading included), then the
model is evaluated on the validation split (timed separately, excluded from training time).
The weights of the best-validation epoch are kept; at the end the test split is evaluated
for the last and the best-validation weights. The test split never selects anything.
"""

from __future__ import annotations

from pathlib import Path

import torch

from perfstudy import data as datasets
from perfstudy import provenance
from perfstudy.checkpoint import (
    CHECKPOINT_EVERY_S,
    NO_CHECKPOINT,
    Checkpoint,
    curve_from_host,
    curve_to_host,
)
from perfstudy.config import DLConfig
from perfstudy.devices import peak_mb, reset_peak, resolve_device
from perfstudy.engines import ENGINES, resolve_engine
from perfstudy.evaluate import BestEpoch, accuracy, to_device
from perfstudy.models import build_model
from perfstudy.optimizers import make_optimizer
from perfstudy.progress import NullProgress
from perfstudy.results import EpochStats, RunResult
from perfstudy.timing import Timer


def prepare_data(cfg, data_dir=None):
    """The run's dataset with ``train_subset``/``eval_subset`` applied (stratified)."""
    ds = datasets.load(cfg.dataset, data_dir=data_dir, split_seed=cfg.split_seed)
    train, val, test = ds.train, ds.val, ds.test
    if cfg.train_subset:
        train = datasets.subset(train, cfg.train_subset, seed=cfg.split_seed)
    if getattr(cfg, "eval_subset", None):
        val = datasets.subset(val, cfg.eval_subset, seed=cfg.split_seed)
        test = datasets.subset(test, cfg.eval_subset, seed=cfg.split_seed)
    return ds, train, val, test


def train_dl(
    cfg: DLConfig,
    data_dir=None,
    progress=None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> RunResult:
    """Train and evaluate one run. ``checkpoint``: a file to save the training state to every
    ``checkpoint_every_s`` seconds (at the end of an epoch) and to resume from, if it holds this
    run's state (``perfstudy.checkpoint``); engines that replay a CUDA graph do not checkpoint
    (their runs take minutes)."""
    progress = progress or NullProgress()
    device = resolve_device(cfg.device)
    engine = resolve_engine(cfg.engine, device)
    ds, train, val, test = prepare_data(cfg, data_dir)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.variant, num_classes=ds.num_classes).to(device)
    optimizer = make_optimizer(model.parameters(), cfg)
    val_x, val_y = to_device(val, device)
    reset_peak(device)

    with Timer(device) as setup_timer:
        setup = ENGINES.get(engine)(
            cfg, model, optimizer, train.x, train.y, ds.mean, ds.std, device, progress
        )
    curve: list[EpochStats] = []
    best = BestEpoch()
    train_ms = eval_ms = 0.0
    done_epochs = 0
    ckpt = (Checkpoint(checkpoint, checkpoint_every_s)
            if checkpoint and setup.checkpointable else None)
    signature = {"keys": [cfg.key()], "engine": engine}
    saved = ckpt.load(signature) if ckpt else None
    if saved is not None:  # resume after the saved epoch
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        for g, state in zip(setup.generators, saved["generators"], strict=True):
            g.set_state(state)
        curve = curve_from_host(saved["curve"])
        best = BestEpoch.from_host(saved["best"], device)
        train_ms, eval_ms, done_epochs = saved["train_ms"], saved["eval_ms"], saved["epoch"]
    bar = progress.add(f"{cfg.model} {cfg.dataset} epochs", total=cfg.epochs)
    progress.advance(bar, done_epochs)
    for epoch in range(done_epochs + 1, cfg.epochs + 1):
        with Timer(device) as t:
            loss = setup.runner.train_epoch(epoch)
        train_ms += t.ms
        with Timer(device) as e:
            val_acc = accuracy(model, val_x, val_y, ds.mean, ds.std)
            best.update(model, val_acc, epoch)
        eval_ms += e.ms
        curve.append(EpochStats(epoch, float(loss), val_acc, t.ms / 1e3))
        progress.update(bar, description=f"{cfg.model} {cfg.dataset} val {val_acc:.2f}%")
        progress.advance(bar)
        if ckpt is not None and ckpt.wants(epoch, cfg.epochs):
            ckpt.save({
                "signature": signature,
                "epoch": epoch,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "generators": [g.get_state() for g in setup.generators],
                "curve": curve_to_host(curve),
                "best": best.to_host(),
                "train_ms": train_ms,
                "eval_ms": eval_ms,
            })
    progress.remove(bar)
    peak = peak_mb(device)

    with Timer(device) as e:
        test_x, test_y = to_device(test, device)
        test_best, test_last = best.test(model, test_x, test_y, ds.mean, ds.std)
    eval_ms += e.ms

    extra = {
        **setup.notes,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "peak_mem_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
        "resumed_after_epoch": done_epochs if saved is not None else None,
        **(ckpt.notes() if ckpt else NO_CHECKPOINT),
    }
    return RunResult(
        kind="dl",
        config=cfg.to_dict(),
        test_acc=test_best,
        val_acc=best.val_acc,
        train_ms=train_ms,
        eval_ms=eval_ms,
        test_acc_last=test_last,
        best_epoch=best.epoch,
        images_per_s=len(train) * cfg.epochs / (train_ms / 1e3),
        peak_mem_mb=peak,
        setup_ms=setup_timer.ms,
        curve=curve,
        extra=extra,
        provenance=provenance.collect(device),
    )
