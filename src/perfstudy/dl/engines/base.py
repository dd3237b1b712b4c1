"""What an engine hands the trainer, and which engine ``auto`` means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from perfstudy.config import ENGINES


@dataclass
class EngineSetup:
    """What an engine's ``prepare`` returns (``config.ENGINES`` names them).

    ``train_epoch(epoch)`` trains the model in place for one epoch and returns the mean
    training loss over the epoch's images. The trainer times the call (device synchronised on
    both sides), so everything the user pays for during an epoch - data loading, host-to-device
    copies - happens inside it.
    ``checkpointable``: the trainer may restore the model and optimizer between epochs with
    ``load_state_dict`` (not so for a replayed CUDA graph, which holds their tensors' addresses);
    ``generators``: the random generators an epoch draws its data order from, saved with them.
    """

    train_epoch: Callable[[int], float]
    notes: dict[str, Any] = field(default_factory=dict)  # recorded in RunResult.extra
    checkpointable: bool = False
    generators: list[torch.Generator] = field(default_factory=list)


# prepare(cfg, model, optimizer, train_x_uint8, train_y, mean, std, device, progress) -> EngineSetup
Prepare = Callable[..., EngineSetup]


def resolve_engine(name: str, device: torch.device) -> str:
    """``auto``: the fast engine on CUDA; on a CPU with native bf16 the CPU engine (faster than
    the plain loop there, docs/performance.md); else the plain DataLoader loop."""
    if name != "auto":
        ENGINES.check(name)
        return name
    if device.type == "cuda":
        return "fast"
    from perfstudy.dl.engines.cpu import native_bf16

    return "cpu" if native_bf16() else "plain"
