"""One deep-learning run: one ``DLConfig`` in, one ``RunResult`` out, trained by its engine
(``config.ENGINES``) through the epoch loop (``dl.loop``)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from perfstudy import data
from perfstudy.config import ENGINES, DLConfig
from perfstudy.dl.checkpoint import CHECKPOINT_EVERY_S
from perfstudy.dl.device import Timer, reset_peak, resolve_device
from perfstudy.dl.engines import EngineSetup, resolve_engine
from perfstudy.dl.loop import Trial, train
from perfstudy.dl.models import build_model
from perfstudy.dl.optimizers import make_optimizer
from perfstudy.progress import NullProgress
from perfstudy.results import RunResult


class SingleRun:
    """The loop's trainee for one model: its engine trains it, the model is evaluated as is,
    and model, optimizer and the data order's generators are its checkpointed state."""

    def __init__(self, cfg: DLConfig, engine: str, model, optimizer, setup: EngineSetup):
        self.model, self.optimizer, self.setup = model, optimizer, setup
        self.signature = {"keys": [cfg.key()], "engine": engine}
        self.checkpointable = setup.checkpointable

    def train_epoch(self, epoch: int) -> list[float]:
        return [self.setup.train_epoch(epoch)]

    def trial_model(self, t: int):
        return self.model

    def state_dict(self) -> dict:
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "generators": [g.get_state() for g in self.setup.generators]}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, saved in zip(self.setup.generators, state["generators"], strict=True):
            g.set_state(saved)


def train_dl(
    cfg: DLConfig,
    data_dir=None,
    progress=None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> RunResult:
    """Train and evaluate one run. ``checkpoint``: a file to save the training state to every
    ``checkpoint_every_s`` seconds (at the end of an epoch) and to resume from, if it holds this
    run's state; engines that replay a CUDA graph do not checkpoint (their runs take minutes)."""
    started = time.perf_counter()
    progress = progress or NullProgress()
    device = resolve_device(cfg.device)
    engine = resolve_engine(cfg.engine, device)
    ds, train_split, val, test = data.for_run(cfg, data_dir)
    trial = Trial.of(cfg, ds, train_split, val, test, device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.variant, num_classes=ds.num_classes,
                        weights=cfg.weights).to(device)
    optimizer = make_optimizer(model.parameters(), cfg)
    reset_peak(device)
    with Timer(device) as setup_timer:
        setup = ENGINES.get(engine)(cfg, model, optimizer, train_split.x, train_split.y,
                                    ds.mean, ds.std, device, progress)
    trainee = SingleRun(cfg, engine, model, optimizer, setup)
    (result,), _ = train(trainee, [trial], device, label=f"{cfg.model} {cfg.dataset}",
                         setup_ms=setup_timer.ms, started=started, progress=progress,
                         checkpoint=checkpoint, checkpoint_every_s=checkpoint_every_s)
    result.extra = {**setup.notes, **result.extra}
    return result
