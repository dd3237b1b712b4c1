"""The optimizers a run may name (``config.OPTIMIZERS``), built from its config."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from perfstudy.config import OPTIMIZERS


def sgd(params: Iterable, cfg, **kw) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw
    )


def adam(params: Iterable, cfg, **kw) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)


def make_optimizer(params: Iterable, cfg, **kw) -> torch.optim.Optimizer:
    """``kw`` passes engine-specific flags (e.g. ``capturable=True`` for CUDA graphs)."""
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg, **kw)
