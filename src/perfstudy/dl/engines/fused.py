"""A fused group: T trials stepping together (``fused_layers``: one model carrying them all;
``fused_optim``: their optimizers), on data resident on the device, each trial with its own
seed, data order and hyperparameters. On CUDA the whole step is captured as one graph and
replayed on the group's own stream, so the groups of a pack overlap on the GPU."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from perfstudy.dl.engines.fast import WARMUP_STEPS
from perfstudy.dl.engines.fused_layers import FusedTrials
from perfstudy.dl.engines.fused_optim import FusedOptimizer
from perfstudy.dl.engines.graphed import StateSnapshot, warm_up_and_capture
from perfstudy.dl.engines.resident import ResidentBatches, Source


class FusedGroup:
    """T trials stepping together: fused model, per-trial optimizer, resident data, and (on
    CUDA) the whole step captured as one graph, replayed on this group's own stream."""

    def __init__(
        self,
        cfgs: Sequence,
        models: Sequence[nn.Module],
        sources: Sequence[Source],
        device: torch.device,
        *,
        precision: str = "bf16",
        channels_last: bool = True,
        graph: bool | None = None,
        warmup_steps: int = WARMUP_STEPS,
        compile: bool = False,
    ):
        self.cfgs, self.device = list(cfgs), torch.device(device)
        graph = self.device.type == "cuda" if graph is None else graph
        if graph and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        batch = {c.batch_size for c in cfgs}
        if len(batch) != 1:
            raise ValueError(f"fused trials need one batch size, got {sorted(batch)}")
        if channels_last:
            for m in models:
                m.to(memory_format=torch.channels_last)
        self.model = FusedTrials(models, precision, channels_last, compile)
        # an ordinary fp32 model to evaluate trials with, as the trainer evaluates its model
        self.template = copy.deepcopy(models[0]).float()
        self.optimizer = FusedOptimizer(self.model.params, cfgs)
        self.data = ResidentBatches(sources, [c.seed for c in cfgs], batch.pop(), self.device)
        if precision == "fp64":
            self.data.dtype = torch.float64  # normalised in float64, as the fast engine's fp64
        self.loss_sum = torch.zeros(len(cfgs), device=self.device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.graph: torch.cuda.CUDAGraph | None = None
        if self.device.type == "cuda":
            self._prepare(warmup_steps, graph)

    def _on_stream(self):
        return contextlib.nullcontext() if self.stream is None else torch.cuda.stream(self.stream)

    def _step(self, size: int | None = None) -> None:
        x, y = self.data.next_batch(size)
        losses = self.model.losses(x, y, compiled=size is None)
        grads = torch.autograd.grad(losses.sum(), self.model.params)
        self.optimizer.step(grads)
        self.loss_sum += losses.detach() * y.shape[1]

    def _prepare(self, warmup_steps: int, graph: bool) -> None:
        """Warm up (cuDNN autotuning, lazy allocations) and capture; then undo the warm-up."""

        def reset() -> None:
            self.optimizer.reset()
            self.loss_sum.zero_()

        # captured on the group's own stream: its own cuBLAS workspace (graphed.capture)
        self.graph = warm_up_and_capture(
            self._step, self.data, StateSnapshot(self.model.params + self.model.buffers), reset,
            self.device, warmup_steps=warmup_steps, graph=graph, stream=self.stream)

    # --- the epoch, in three parts so that several groups can interleave on their streams

    def start_epoch(self) -> None:
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with self._on_stream():
            self.data.shuffle()
            self.loss_sum.zero_()

    def step(self) -> None:
        with self._on_stream():
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()

    def finish_epoch(self) -> None:
        with self._on_stream():
            if self.data.remainder:
                self._step(self.data.remainder)  # eager: one partial batch per epoch
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)

    # --- the training state between epochs, for a checkpoint (dl.checkpoint)

    def state_tensors(self) -> list[Tensor]:
        """Everything an epoch changes: stacked weights, BatchNorm statistics, optimizer state.
        (The permutation, cursor and loss sum are made afresh at the start of each epoch.)"""
        return [*self.model.params, *self.model.buffers, *self.optimizer.state_tensors()]

    def state_dict(self) -> dict:
        """The state between two epochs, on the host: tensors and each trial's data generator."""
        return {
            "tensors": [t.detach().cpu() for t in self.state_tensors()],
            "generators": [g.get_state() for g in self.data.generators],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` *in place* (a captured graph holds these tensors)."""
        mine = self.state_tensors()
        shapes = [tuple(t.shape) for t in mine]
        if shapes != [tuple(t.shape) for t in state["tensors"]]:
            raise ValueError("checkpoint of a different fused group (tensor shapes differ)")
        for t, saved in zip(mine, state["tensors"], strict=True):
            t.copy_(saved)
        for g, saved in zip(self.data.generators, state["generators"], strict=True):
            g.set_state(saved)

    def epoch_losses(self) -> list[float]:
        """Mean training loss of each trial over the epoch. Note: a CPU-GPU sync point."""
        return (self.loss_sum / self.data.n).tolist()
