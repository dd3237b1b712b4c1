"""The engine interface and registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from perfstudy.registry import Registry


class EpochRunner(Protocol):
    """Trains the model in place for one epoch over the training split.

    Returns the mean training loss over the epoch's images. The trainer times the call
    (device synchronised on both sides), so everything the user pays for during an
    epoch — data loading, host-to-device copies — must happen inside it.
    """

    def train_epoch(self, epoch: int) -> float: ...


@dataclass
class EngineSetup:
    """What an engine hands back from ``prepare``: the runner, plus notes for the result.

    ``checkpointable``: the trainer may restore the model and optimizer between epochs with
    ``load_state_dict`` (not so for a replayed CUDA graph, which holds their tensors' addresses);
    ``generators``: the random generators an epoch draws its data order from, saved with them.
    """

    runner: EpochRunner
    notes: dict[str, Any] = field(default_factory=dict)  # recorded in RunResult.extra
    checkpointable: bool = False
    generators: list[torch.Generator] = field(default_factory=list)


# prepare(cfg, model, optimizer, train_x_uint8, train_y, mean, std, device, progress) -> EngineSetup
Prepare = Callable[..., EngineSetup]
ENGINES: Registry[Prepare] = Registry("engine")


def resolve_engine(name: str, device: torch.device) -> str:
    """``auto``: the fast engine on CUDA; on a CPU with native bf16 the CPU engine (measured
    1.56x the plain loop for ResNet-18 on 2 cores, docs/performance.md); else the plain
    DataLoader loop."""
    if name != "auto":
        ENGINES.get(name)  # validates
        return name
    if device.type == "cuda":
        return "fast"
    from perfstudy.engines.cpu import native_bf16

    return "cpu" if native_bf16() else "plain"
