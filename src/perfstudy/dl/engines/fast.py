"""The fast engine: the same training run, at the GPU's speed instead of Python's.

What it changes, and why each keeps the run's meaning:

* data resident on the device as uint8 (``engines.resident``): no DataLoader, no host copies;
  shuffling is ``torch.randperm`` on the device, one permutation per epoch from a generator
  seeded with ``cfg.seed``. Same batch size, same images per epoch, the last partial batch
  included; a different (equally uniform) order than the plain engine;
* bf16 autocast with fp32 weights and fp32 optimizer state, channels_last activations;
* the whole step - gather, normalise, forward, loss, backward, optimizer step, loss sum - is
  captured once as a CUDA graph and replayed (``engines.graphed``);
* the loss is summed on the device and read once per epoch, not once per step;
* the last partial batch runs as one eager step per epoch (cheaper than a second graph).

Warm-up and capture happen in ``prepare``, which the trainer times apart as ``setup_ms``; the
warm-up steps are undone so training starts from the seed's initial weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perfstudy.dl.engines.base import EngineSetup
from perfstudy.dl.engines.graphed import (
    StateSnapshot,
    cudnn_benchmark,
    make_capturable,
    reset_optimizer_state,
    warm_up_and_capture,
)
from perfstudy.dl.engines.resident import ResidentBatches, Source
from perfstudy.progress import NullProgress

PRECISIONS = {"bf16": "bf16 autocast", "fp32": "fp32", "fp64": "fp64"}  # fp32/fp64: tests
WARMUP_STEPS = 3
# steps between progress-bar updates on a GPU (host work, kept off the replays); every step on CPU
PROGRESS_EVERY = 64


class FastEpochs:
    """Trains ``model`` in place, one epoch per ``train_epoch`` call.

    ``graph`` (default: on CUDA) replays the captured step; ``forward`` replaces the model's
    forward in the step (a benchmark passes ``torch.compile(model)``); ``precision`` fp32 and
    fp64 let the tests compare the graph with eager steps and packed with alone runs.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: ResidentBatches,
        device: torch.device,
        *,
        precision: str = "bf16",
        channels_last: bool = True,
        graph: bool | None = None,
        forward: Callable | None = None,
        warmup_steps: int = WARMUP_STEPS,
        progress=None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        graph = device.type == "cuda" if graph is None else graph
        if graph and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.model, self.optimizer, self.data, self.device = model, optimizer, data, device
        self.precision, self.channels_last = precision, channels_last
        self.progress = progress or NullProgress()
        self.loss_sum = torch.zeros((), device=device)
        if precision == "fp64":
            data.dtype = torch.float64  # the test converts the model to float64 itself
        if channels_last:
            model.to(memory_format=torch.channels_last)  # in place: the optimizer keeps its params
        self.forward = forward or model
        self.graph: torch.cuda.CUDAGraph | None = None
        if device.type == "cuda":  # on a CPU the first step is simply the first training step
            self._prepare(warmup_steps, graph)

    def _step(self, size: int | None = None) -> None:
        """One training step on the next ``size`` images. Everything it touches is static."""
        x, y = self.data.next_batch(size)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False
        ):
            loss = F.cross_entropy(self.forward(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().float() * y.shape[0]

    def _prepare(self, warmup_steps: int, graph: bool) -> None:
        """Warm up (and capture), then put the model and optimizer back as they were."""
        self.model.train()

        def reset() -> None:
            reset_optimizer_state(self.optimizer)
            self.loss_sum.zero_()

        self.graph = warm_up_and_capture(
            self._step, self.data, StateSnapshot.of_module(self.model), reset, self.device,
            warmup_steps=warmup_steps, graph=graph,
            # gradients are allocated inside the graph
            before_capture=lambda: self.optimizer.zero_grad(set_to_none=True))

    def train_epoch(self, epoch: int) -> float:
        # eager steps (the partial batch; every step without a graph) use the algorithms cuDNN
        # picked at warm-up, like the graph: one set of kernels either way
        with cudnn_benchmark(self.device.type == "cuda"):
            self.model.train()  # the trainer's evaluation leaves it in eval mode
            self.data.shuffle()
            self.loss_sum.zero_()
            steps = self.data.full_steps
            every = PROGRESS_EVERY if self.device.type == "cuda" else 1
            total = steps + bool(self.data.remainder)
            bar = self.progress.add(f"epoch {epoch} batches", total=total)
            for i in range(steps):
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self._step()
                if (i + 1) % every == 0 or i + 1 == steps:
                    self.progress.update(bar, completed=i + 1)
            if self.data.remainder:
                self._step(self.data.remainder)  # eager: one partial batch per epoch
            self.progress.remove(bar)
        # note: this .item() is the epoch's only CPU-GPU sync point
        return self.loss_sum.item() / self.data.n


def build(
    cfg,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    mean: float,
    std: float,
    device: torch.device,
    progress=None,
    *,
    precision: str = "bf16",
    graph: bool | None = None,
    channels_last: bool = True,
    forward: Callable | None = None,
) -> EngineSetup:
    """``prepare`` with the engine's internals exposed (tests run it in fp32/fp64 or eagerly;
    the CPU engine and benchmarks build on it)."""
    device = torch.device(device)
    opt_notes = make_capturable(optimizer) if device.type == "cuda" else {}
    data = ResidentBatches([Source(x, y, mean, std)], [cfg.seed], cfg.batch_size, device, True)
    epochs = FastEpochs(model, optimizer, data, device, precision=precision,
                        channels_last=channels_last, graph=graph, forward=forward,
                        progress=progress)
    on = "GPU" if device.type == "cuda" else "CPU, no DataLoader"
    notes = {
        "engine": "fast",
        "pin_memory": f"n/a (data resident on {on})",
        "num_workers": f"n/a (data resident on {on})",
        "pin_memory_effective": False,
        "precision": PRECISIONS[precision],
        "weights": "fp64" if precision == "fp64" else "fp32",
        "channels_last": channels_last,
        "graph": epochs.graph is not None,
        "mode": "graph" if epochs.graph is not None else "eager",
        "shuffle": "torch.randperm on the device, generator seeded with cfg.seed",
        "partial_batch": (
            f"{data.remainder} images, one eager step per epoch" if data.remainder else "none"
        ),
        "warmup_steps": WARMUP_STEPS if device.type == "cuda" else 0,
        "warmup_undone": True,
        "cudnn_benchmark": device.type == "cuda",
        "loss_sync": "once per epoch",
        **opt_notes,
    }
    return EngineSetup(epochs.train_epoch, notes, checkpointable=epochs.graph is None,
                       generators=data.generators)


def prepare(cfg, model, optimizer, x, y, mean, std, device, progress) -> EngineSetup:
    return build(cfg, model, optimizer, x, y, mean, std, device, progress)
