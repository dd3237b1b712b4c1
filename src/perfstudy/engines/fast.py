"""The fast engine: the same training run, at the GPU's speed instead of Python's.

What it changes, and why each keeps the run's meaning:

* data resident on the device as uint8 (``engines.resident``): no DataLoader, no host copies,
  no pinned memory; shuffling is ``torch.randperm`` on the device, one permutation per epoch
  from a device generator seeded with ``cfg.seed``. Same batch size, same images per epoch, the
  last partial batch included; a different (but equally uniform) order than the plain engine;
* bf16 autocast with fp32 weights and fp32 optimizer state, channels_last activations;
* the whole step - gather, normalise, forward, loss, backward, optimizer step, loss sum - is
  captured once as a CUDA graph and replayed (``engines.graphed``); Adam gets
  ``capturable=True`` so its step count lives on the device;
* the loss is summed on the device and read once per epoch (one CPU-GPU sync per epoch, not
  one per step as in the plain loop's ``loss.item()``);
* the last partial batch (49,000 % 16 = 8 images) runs as one eager step per epoch: one step in
  3,063 at batch 16, cheaper than capturing, warming and keeping a second graph for it.

Warm-up and capture happen in ``prepare``, which the trainer times apart as ``setup_ms``; the
warm-up steps are undone (weights, BatchNorm statistics, optimizer state restored) so training
starts from the seed's initial weights. Other ``mode``s (``MODES``) exist for the benchmark's
comparison with ``torch.compile``; docs/performance.md has the numbers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perfstudy.engines.base import ENGINES, EngineSetup
from perfstudy.engines.graphed import (
    StateSnapshot,
    capture,
    cudnn_benchmark,
    make_capturable,
    reset_optimizer_state,
    warm_up,
)
from perfstudy.engines.resident import ResidentBatches, Source
from perfstudy.progress import NullProgress

PRECISIONS = ("bf16", "fp32", "fp64")  # fp64: exactness tests only (see engines.fused)
# graph: the hand-made whole-step CUDA graph (the engine's choice); eager: the same step without
# it; compile: torch.compile(mode="reduce-overhead") of the model (its own CUDA graphs, optimizer
# step eager); compile+graph: torch.compile's fused kernels inside the hand-made graph
MODES = ("graph", "eager", "compile", "compile+graph")
GRAPHED = ("graph", "compile+graph")
WARMUP_STEPS = 3
PROGRESS_EVERY = 256  # steps between progress-bar updates (host-only work, kept off every step)


class FastRunner:
    """Trains ``model`` in place, one epoch per ``train_epoch`` call.

    ``precision`` is ``bf16`` (autocast, the engine's setting), ``fp32`` or ``fp64`` (what the
    tests use to compare the graph with eager execution and packed with alone runs).
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
        mode: str = "graph",
        warmup_steps: int = WARMUP_STEPS,
        progress=None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "eager" and device.type != "cuda":
            raise ValueError(f"mode {mode!r} needs a CUDA device")
        self.model, self.optimizer, self.data, self.device = model, optimizer, data, device
        self.precision, self.channels_last, self.mode = precision, channels_last, mode
        self.progress = progress or NullProgress()
        self.loss_sum = torch.zeros((), device=device)
        if precision == "fp64":
            data.dtype = torch.float64  # the test converts the model to float64 itself
        self.graph: torch.cuda.CUDAGraph | None = None
        self.forward = model
        if channels_last:
            model.to(memory_format=torch.channels_last)  # in place: the optimizer keeps its params
        if mode == "compile":
            self.forward = torch.compile(model, mode="reduce-overhead")
        elif mode == "compile+graph":
            self.forward = torch.compile(model)
        self._prepare(warmup_steps)

    def _step(self, size: int | None = None) -> None:
        """One training step on the next ``size`` images. Everything it touches is static."""
        x, y = self.data.next_batch(size)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mode == "compile":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(
            self.device.type, torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False
        ):
            loss = F.cross_entropy(self.forward(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().float() * y.shape[0]

    def _prepare(self, warmup_steps: int) -> None:
        """Warm up (and capture), then put the model and optimizer back as they were."""
        if self.mode == "eager" and self.device.type != "cuda":
            return  # nothing to tune or capture: the first step is the first training step
        snapshot = StateSnapshot.of_module(self.model)
        self.model.train()

        def full_step():
            self.data.rewind()  # warm-up reads the first batch again: never past the data
            self._step()

        def partial_step():
            self.data.rewind()
            self._step(self.data.remainder)

        with cudnn_benchmark(True):
            warm_up(full_step, warmup_steps, self.device)
            if self.data.remainder:  # tune the partial batch's shapes now, not in epoch 1
                warm_up(partial_step, 1, self.device)
            if self.mode in GRAPHED:
                self.optimizer.zero_grad(set_to_none=True)  # grads are allocated in the graph
                self.data.rewind()
                self.graph = capture(self._step, self.device)
        snapshot.restore()
        reset_optimizer_state(self.optimizer)
        self.data.rewind()
        self.loss_sum.zero_()

    def train_epoch(self, epoch: int) -> float:
        # eager steps (the partial batch; every step in eager mode) use the algorithms cuDNN
        # picked at warm-up, like the graph: one set of kernels whatever the mode
        with cudnn_benchmark(self.device.type == "cuda"):
            return self._train_epoch(epoch)

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()  # the trainer's evaluation leaves it in eval mode
        self.data.shuffle()
        self.loss_sum.zero_()
        steps = self.data.full_steps
        bar = self.progress.add(f"epoch {epoch} batches", total=steps + bool(self.data.remainder))
        for i in range(steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            if (i + 1) % PROGRESS_EVERY == 0:
                self.progress.advance(bar, PROGRESS_EVERY)
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
    mode: str | None = None,
    channels_last: bool = True,
    warmup_steps: int = WARMUP_STEPS,
) -> EngineSetup:
    """``prepare`` with the engine's internals exposed (tests run it in fp32 or eagerly)."""
    device = torch.device(device)
    mode = mode or ("graph" if device.type == "cuda" else "eager")
    opt_notes = make_capturable(optimizer) if device.type == "cuda" else {}
    data = ResidentBatches([Source(x, y, mean, std)], [cfg.seed], cfg.batch_size, device, True)
    runner = FastRunner(
        model,
        optimizer,
        data,
        device,
        precision=precision,
        channels_last=channels_last,
        mode=mode,
        warmup_steps=warmup_steps,
        progress=progress,
    )
    on = "GPU" if device.type == "cuda" else "CPU, no DataLoader"
    notes = {
        "engine": "fast",
        "pin_memory": f"n/a (data resident on {on})",
        "num_workers": f"n/a (data resident on {on})",
        "pin_memory_effective": False,
        "precision": {"bf16": "bf16 autocast", "fp32": "fp32", "fp64": "fp64"}[precision],
        "weights": "fp64" if precision == "fp64" else "fp32",
        "channels_last": channels_last,
        "graph": mode in GRAPHED,
        "mode": mode if mode != "compile" else "torch.compile(mode='reduce-overhead')",
        "shuffle": "torch.randperm on the device, generator seeded with cfg.seed",
        "partial_batch": (
            f"{data.remainder} images, one eager step per epoch" if data.remainder else "none"
        ),
        "warmup_steps": warmup_steps if device.type == "cuda" else 0,
        "warmup_undone": True,
        "cudnn_benchmark": device.type == "cuda",
        "loss_sync": "once per epoch",
        **opt_notes,
    }
    return EngineSetup(runner, notes, checkpointable=mode == "eager", generators=data.generators)


@ENGINES.register("fast")
def prepare(cfg, model, optimizer, x, y, mean, std, device, progress) -> EngineSetup:
    return build(cfg, model, optimizer, x, y, mean, std, device, progress)
