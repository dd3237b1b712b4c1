"""Optimizers by name, built from a run's config."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from perfstudy.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable, cfg, **kw) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw
    )


@OPTIMIZERS.register("adam")
def _adam(params: Iterable, cfg, **kw) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)


def make_optimizer(params: Iterable, cfg, **kw) -> torch.optim.Optimizer:
    """``kw`` passes engine-specific flags (e.g. ``capturable=True`` for CUDA graphs)."""
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg, **kw)
