"""The one epoch loop, for a single run (``dl.train``) and for a pack of runs trained together
(``dl.packing``): one ``Trainee`` in, one ``RunResult`` per trial out.

Per epoch: the trainee trains every trial (timed, device synchronised, data loading included),
then each trial is evaluated on its validation split (timed apart, excluded from training
time); the weights of each trial's best-validation epoch are kept. At the end the test split is
evaluated for the last and the best-validation weights: the test split never selects anything.
Every ``checkpoint_every_s`` seconds, at the end of an epoch, the whole state (the trainee's and
the loop's) is saved, and a run started again resumes after that epoch (``dl.checkpoint``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from perfstudy import provenance
from perfstudy.config import DLConfig
from perfstudy.dl.checkpoint import (
    CHECKPOINT_EVERY_S,
    NO_CHECKPOINT,
    Checkpoint,
    curve_from_host,
    curve_to_host,
)
from perfstudy.dl.device import Timer, peak_kind, peak_mb
from perfstudy.dl.evaluate import BestEpoch, accuracy, to_device
from perfstudy.progress import NullProgress
from perfstudy.results import EpochStats, RunResult


@dataclass
class Trial:
    """One run as the loop sees it: its config, its evaluation splits on the device and the
    pixel statistics it is normalised with."""

    cfg: DLConfig
    mean: float
    std: float
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    sizes: dict[str, int]  # n_train, n_val, n_test

    @classmethod
    def of(cls, cfg: DLConfig, ds, train, val, test, device) -> Trial:
        """From ``data.for_run``'s dataset and splits."""
        sizes = {"n_train": len(train), "n_val": len(val), "n_test": len(test)}
        return cls(cfg, ds.mean, ds.std, to_device(val, device), to_device(test, device), sizes)


class Trainee(Protocol):
    """What the loop trains: one model with its engine, or a pack's fused groups."""

    signature: dict  # identifies the checkpoints it can resume from
    checkpointable: bool

    def train_epoch(self, epoch: int) -> list[float]:
        """Train every trial one epoch; each trial's mean training loss."""

    def trial_model(self, t: int) -> nn.Module:
        """A model holding trial ``t``'s current weights, for evaluation."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class LoopState:
    """The loop's own state between epochs (saved in checkpoints with the trainee's)."""

    curves: list[list[EpochStats]]
    best: list[BestEpoch]
    eval_ms: list[float]
    train_ms: float = 0.0
    wall_ms: float = 0.0  # spent by earlier processes, for a resumed run
    epoch: int = 0
    resumed_after: int | None = None
    test: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def fresh(cls, n: int) -> LoopState:
        return cls([[] for _ in range(n)], [BestEpoch() for _ in range(n)], [0.0] * n)

    def to_host(self, wall_ms: float) -> dict:
        return {"curves": [curve_to_host(c) for c in self.curves],
                "best": [b.to_host() for b in self.best], "eval_ms": list(self.eval_ms),
                "train_ms": self.train_ms, "wall_ms": wall_ms, "epoch": self.epoch}

    @classmethod
    def from_host(cls, saved: dict, device) -> LoopState:
        return cls([curve_from_host(c) for c in saved["curves"]],
                   [BestEpoch.from_host(b, device) for b in saved["best"]],
                   list(saved["eval_ms"]), saved["train_ms"], saved["wall_ms"], saved["epoch"],
                   resumed_after=saved["epoch"])


def train(
    trainee: Trainee,
    trials: Sequence[Trial],
    device: torch.device,
    *,
    label: str,
    setup_ms: float,
    started: float,
    progress=None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> tuple[list[RunResult], LoopState]:
    """Train ``trainee``'s trials for their epochs and evaluate them. ``started``: the
    ``time.perf_counter()`` at which the caller began (data loading and setup count in the
    wall time it gets back in ``LoopState.wall_ms``)."""
    progress = progress or NullProgress()
    ckpt = Checkpoint(checkpoint, checkpoint_every_s) if checkpoint and trainee.checkpointable \
        else None
    state = _resume(trainee, ckpt, device) or LoopState.fresh(len(trials))
    epochs = trials[0].cfg.epochs
    bar = progress.add(f"{label} epochs", total=epochs)
    progress.advance(bar, state.epoch)
    for epoch in range(state.epoch + 1, epochs + 1):
        _epoch(trainee, trials, state, epoch, device)
        state.epoch = epoch
        val = ", ".join(f"{c[-1].val_acc:.2f}" for c in state.curves[:4])
        progress.update(bar, description=f"{label} val {val}%")
        progress.advance(bar)
        if ckpt is not None and ckpt.wants(epoch, epochs):
            wall = state.wall_ms + (time.perf_counter() - started) * 1e3
            ckpt.save({"signature": trainee.signature, "epoch": epoch,
                       "trainee": trainee.state_dict(), "loop": state.to_host(wall)})
    progress.remove(bar)
    peak = peak_mb(device)
    for t, trial in enumerate(trials):
        with Timer(device) as e:
            state.test.append(state.best[t].test(trainee.trial_model(t), *trial.test,
                                                 trial.mean, trial.std, last_epoch=epochs))
        state.eval_ms[t] += e.ms
    state.wall_ms += (time.perf_counter() - started) * 1e3
    notes = {"peak_mem_kind": peak_kind(device), "resumed_after_epoch": state.resumed_after,
             **(ckpt.notes() if ckpt else NO_CHECKPOINT)}
    prov = provenance.collect(device)
    return [_result(trial, state, t, setup_ms, peak, notes, prov)
            for t, trial in enumerate(trials)], state


def _resume(trainee: Trainee, ckpt: Checkpoint | None, device) -> LoopState | None:
    saved = ckpt.load(trainee.signature) if ckpt else None
    if saved is None:
        return None
    trainee.load_state_dict(saved["trainee"])
    return LoopState.from_host(saved["loop"], device)


def _epoch(trainee: Trainee, trials: Sequence[Trial], state: LoopState, epoch: int,
           device) -> None:
    with Timer(device) as t:
        losses = trainee.train_epoch(epoch)
    state.train_ms += t.ms
    for k, trial in enumerate(trials):
        with Timer(device) as e:
            model = trainee.trial_model(k)
            acc = accuracy(model, *trial.val, trial.mean, trial.std)
            state.best[k].update(model, acc, epoch)
        state.eval_ms[k] += e.ms
        state.curves[k].append(EpochStats(epoch, float(losses[k]), acc, t.ms / 1e3))


def _result(trial: Trial, state: LoopState, t: int, setup_ms: float, peak: float, notes: dict,
            prov: dict) -> RunResult:
    cfg = trial.cfg
    return RunResult(
        kind="dl",
        config=cfg.to_dict(),
        test_acc=state.test[t][0],
        val_acc=state.best[t].val_acc,
        train_ms=state.train_ms,
        eval_ms=state.eval_ms[t],
        test_acc_last=state.test[t][1],
        best_epoch=state.best[t].epoch,
        images_per_s=trial.sizes["n_train"] * cfg.epochs / (state.train_ms / 1e3),
        peak_mem_mb=peak,
        setup_ms=setup_ms,
        curve=state.curves[t],
        extra={**trial.sizes, **notes},
        provenance=prov,
    )
