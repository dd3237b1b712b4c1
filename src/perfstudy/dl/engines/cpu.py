"""The CPU engine: the fast engine's eager step with the settings that pay on a CPU.

bf16 autocast where oneDNN has native bf16 kernels (avx512_bf16 or AMX; elsewhere bf16 is
emulated and slower, so fp32), channels_last (no layout reorders around oneDNN convolutions),
data resident in memory (no DataLoader workers competing with the compute threads), and Adam's
fused CPU kernel. Weights and optimizer state stay fp32. docs/performance.md has the measurements.
"""

from __future__ import annotations

import torch

from perfstudy.dl.engines.base import EngineSetup
from perfstudy.dl.engines.fast import build
from perfstudy.errors import UsageError
from perfstudy.threads import usable_cpus


def native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU."""
    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


FUSED_ON_CPU = (torch.optim.Adam, torch.optim.AdamW)


def use_fused_kernel(optimizer: torch.optim.Optimizer) -> str:
    """Switch Adam/AdamW to torch's fused kernel (SGD's gained nothing), before any optimizer
    state exists; returns the implementation for the notes."""
    kind = type(optimizer).__name__
    if not isinstance(optimizer, FUSED_ON_CPU):
        return f"torch.optim.{kind} (default)"
    for group in optimizer.param_groups:
        group["foreach"], group["fused"] = False, True
    return f"torch.optim.{kind} (fused)"


def prepare(cfg, model, optimizer, x, y, mean, std, device, progress) -> EngineSetup:
    if device.type != "cpu":
        raise UsageError(f"engine 'cpu' trains on the CPU, not on {device.type}; use 'fast'")
    threads = usable_cpus()
    torch.set_num_threads(threads)  # one compute thread per core this process may use
    precision = "bf16" if native_bf16() else "fp32"
    optimizer_impl = use_fused_kernel(optimizer)
    setup = build(cfg, model, optimizer, x, y, mean, std, device, progress,
                  precision=precision, graph=False, channels_last=True)
    setup.notes.update(
        engine="cpu",
        torch_threads=threads,
        native_bf16=precision == "bf16",
        precision="bf16 autocast" if precision == "bf16" else "fp32",
        optimizer_impl=optimizer_impl,
    )
    return setup
