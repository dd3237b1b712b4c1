"""The one timer: synchronise the device before reading the clock, so a figure covers the
work actually done rather than the work merely queued."""

from __future__ import annotations

import time

import torch


def sync(device: torch.device | str | None) -> None:
    """Wait for queued device work. Note: this is a CPU-GPU sync point, keep it off hot loops."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """``with Timer(device) as t: ...`` then ``t.ms``. Synchronises at entry and exit."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.ms = 0.0

    def __enter__(self) -> Timer:
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.ms = (time.perf_counter() - self._t0) * 1e3
