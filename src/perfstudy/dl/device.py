"""Device selection, peak-memory readings and the one timer.

The timer synchronises the device before reading the clock, so a figure covers the work
actually done rather than the work merely queued.
"""

from __future__ import annotations

import resource
import sys
import time

import torch

from perfstudy.errors import UsageError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is visible to PyTorch")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose from: auto, cpu, cuda")
    return torch.device(name)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated by tensors, or (CPU) the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def peak_kind(device: torch.device) -> str:
    """What :func:`peak_mb` measured, for a result's notes."""
    return "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"


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
