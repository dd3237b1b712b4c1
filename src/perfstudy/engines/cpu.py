"""The CPU engine: the fast engine's eager step with the settings that pay on a CPU.

Measured on the 2 cores of an AMD EPYC (Zen 5, avx512_bf16), batch 16, median ms/step
(docs/performance.md, nothing else running): ResNet-18 plain 152 -> 100 (1.52x), ResNet-32
plain 38 -> 24 (1.61x). What pays is the arithmetic: bf16 autocast (oneDNN's bf16 kernels) and
channels_last (no layout reorders around every oneDNN convolution). What does not: keeping
the data resident alone (the DataLoader's per-item work is small next to a CPU step), CUDA
graphs (CUDA only). On 2 cores the plain loop's 2 DataLoader workers also compete with the 2
compute threads: some of its epochs ran several times slower; this engine has no workers.

bf16 is used only where the CPU has native bf16 arithmetic (oneDNN reports it: avx512_bf16 or
AMX); elsewhere bf16 is emulated and slower, and the engine stays in fp32 with channels_last.
Like the fast engine on the GPU, bf16 autocast keeps fp32 weights and optimizer state.

Adam (and AdamW) step with torch's fused CPU kernel rather than its default loop over the
parameter tensors: ResNet-32's Adam step was 3.1 of its ~22 ms per step (profiled), and the
fused kernel took the whole step from 22.1 to 19.9 ms. Same update rule and hyperparameters;
the rounding order differs. SGD's fused kernel gained nothing measurable and is left alone.
"""

from __future__ import annotations

import os

import torch

from perfstudy.engines.base import ENGINES, EngineSetup
from perfstudy.engines.fast import build
from perfstudy.errors import UsageError


def cpu_threads() -> int:
    """Cores this process may run on (a container's CPU set, not the host's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    """Switch Adam/AdamW to torch's fused kernel (set before any optimizer state exists, as
    ``graphed.make_capturable`` sets ``capturable``); returns the implementation for the notes."""
    kind = type(optimizer).__name__
    if not isinstance(optimizer, FUSED_ON_CPU):
        return f"torch.optim.{kind} (default)"
    for group in optimizer.param_groups:
        group["foreach"], group["fused"] = False, True
    return f"torch.optim.{kind} (fused)"


@ENGINES.register("cpu")
def prepare(cfg, model, optimizer, x, y, mean, std, device, progress) -> EngineSetup:
    if device.type != "cpu":
        raise UsageError(f"engine 'cpu' trains on the CPU, not on {device.type}; use 'fast'")
    threads = cpu_threads()
    torch.set_num_threads(threads)  # one compute thread per core this process may use
    precision = "bf16" if native_bf16() else "fp32"
    optimizer_impl = use_fused_kernel(optimizer)
    setup = build(
        cfg,
        model,
        optimizer,
        x,
        y,
        mean,
        std,
        device,
        progress,
        precision=precision,
        mode="eager",
        channels_last=True,
    )
    setup.notes.update(
        engine="cpu",
        torch_threads=threads,
        native_bf16=precision == "bf16",
        precision="bf16 autocast" if precision == "bf16" else "fp32",
        optimizer_impl=optimizer_impl,
    )
    return setup
