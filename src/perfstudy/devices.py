"""Device selection and peak-memory readings."""

from __future__ import annotations

import resource
import sys

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
