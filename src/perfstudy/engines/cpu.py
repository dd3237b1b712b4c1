"""The CPU engine: the fast engine's eager step with the settings that pay on a CPU.

Measured on the 2 cores of an AMD EPYC (Zen 5, avx512_bf16), batch 16, median ms/step
(docs/performance.md): ResNet-18 plain 149 -> 95 (1.56x), ResNet-32 plain 31 -> 22
(about 1.45x). What pays is the arithmetic: bf16 autocast (oneDNN's bf16 kernels) and
channels_last (no layout reorders around every oneDNN convolution). What does not: keeping
the data resident alone (the DataLoader's per-item work is small next to a CPU step), CUDA
graphs (CUDA only). On 2 cores the plain loop's 2 DataLoader workers also compete with the 2
compute threads: some of its epochs ran several times slower; this engine has no workers.

bf16 is used only where the CPU has native bf16 arithmetic (oneDNN reports it: avx512_bf16 or
AMX); elsewhere bf16 is emulated and slower, and the engine stays in fp32 with channels_last.
Like the fast engine on the GPU, bf16 autocast keeps fp32 weights and optimizer state.
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


@ENGINES.register("cpu")
def prepare(cfg, model, optimizer, x, y, mean, std, device, progress) -> EngineSetup:
    if device.type != "cpu":
        raise UsageError(f"engine 'cpu' trains on the CPU, not on {device.type}; use 'fast'")
    threads = cpu_threads()
    torch.set_num_threads(threads)  # one compute thread per core this process may use
    precision = "bf16" if native_bf16() else "fp32"
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
    )
    return setup
