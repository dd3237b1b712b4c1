"""The deep-learning trainer: one ``DLConfig`` in, one ``RunResult`` out.

Per epoch: the engine trains (timed, device synchronised, data loading included), then the
model is evaluated on the validation split (timed separately, excluded from training time).
The weights of the best-validation epoch are kept; at the end the test split is evaluated
for the last and the best-validation weights. The test split never selects anything.
"""

from __future__ import annotations

import torch

from perfstudy import data as datasets
from perfstudy import provenance
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


def train_dl(cfg: DLConfig, data_dir=None, progress=None) -> RunResult:
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
    bar = progress.add(f"{cfg.model} {cfg.dataset} epochs", total=cfg.epochs)
    for epoch in range(1, cfg.epochs + 1):
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
