"""CUDA-graph capture of a whole training step, and the bookkeeping that makes it safe.

A training step of a small ResNet at batch 16 is a few hundred kernel launches of a few
microseconds each: launched one by one from Python the GPU mostly waits for the CPU. Captured
once into a ``torch.cuda.CUDAGraph`` and replayed, the same kernels go out in one launch.

Rules a replayed step must follow (torch.cuda graph semantics):

* it reads and writes only *static* tensors: those that existed at capture, at the same
  addresses (parameters, optimizer state, the resident data, the cursor, the loss sum). Keep
  them alive as long as the graph; refill them in place (``copy_``), never rebind them;
* host values are frozen at capture: anything that changes per step (data position, Adam's
  step count) must live on the device (hence ``capturable=True`` optimizers);
* the first steps allocate optimizer state and let cuDNN pick algorithms: they run eagerly on a
  side stream before capture (warm-up). Warm-up steps really train, so everything they touch is
  snapshotted before and restored after (:class:`StateSnapshot`): the run starts from the very
  weights ``torch.manual_seed(cfg.seed)`` gave it, with fresh optimizer state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


class StateSnapshot:
    """Copies of tensors that must come back unchanged after warm-up, restored *in place*
    (graphs hold their addresses)."""

    def __init__(self, tensors: Iterable[Tensor]):
        self.tensors = [t for t in tensors]
        with torch.no_grad():
            self.saved = [t.detach().clone() for t in self.tensors]

    @classmethod
    def of_module(cls, module: nn.Module) -> StateSnapshot:
        return cls(list(module.parameters()) + list(module.buffers()))

    def restore(self) -> None:
        with torch.no_grad():
            for t, s in zip(self.tensors, self.saved, strict=True):
                t.copy_(s)


def reset_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Zero every state tensor in place: Adam's ``step``/``exp_avg``/``exp_avg_sq``, SGD's
    ``momentum_buffer``. Zero equals fresh for both: Adam starts from zero moments and step 0;
    torch's SGD sets the buffer to the first gradient, and ``0 * momentum + grad`` is that."""
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                value.zero_()


def make_capturable(optimizer: torch.optim.Optimizer) -> dict:
    """Turn on ``capturable`` where the optimizer has it (Adam: its step count then lives on the
    device), before its state exists. SGD keeps no host state and needs nothing. Returns what
    the optimizer will use, for the run's notes."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    g = optimizer.param_groups[0]
    kind = "fused" if g.get("fused") else "foreach" if g.get("foreach") is not False else "for"
    return {"optimizer_impl": f"torch.optim.{type(optimizer).__name__} ({kind}, capturable)"}


def warm_up(step: Callable[[], object], steps: int, device: torch.device) -> None:
    """Run ``step`` eagerly ``steps`` times on a side stream, as torch's docs prescribe before
    capture (lazy state and cuDNN autotuning happen here, not inside the graph)."""
    if steps <= 0:
        return
    if device.type != "cuda":
        for _ in range(steps):
            step()
        return
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(steps):
            step()
    torch.cuda.current_stream(device).wait_stream(side)


def capture(
    step: Callable[[], object], device: torch.device, pool=None, stream=None
) -> torch.cuda.CUDAGraph:
    """Record one call of ``step`` into a CUDA graph. Nothing runs during capture: the graph
    only executes on ``replay()``, so capture itself changes no tensor.

    ``stream``: graphs that will replay *concurrently* must each be captured on a stream of
    their own: PyTorch keys cuBLAS workspaces by (handle, stream), so graphs captured on one
    stream share a workspace and race on it when replayed together (pytorch/pytorch#193402;
    split-K products then read each other's partial sums)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph, pool=pool, stream=stream):
        step()
    return graph


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool = True):
    """cuDNN autotuning for the warm-up and capture only: the graph keeps the algorithms chosen
    here, and the process-wide flag is left as it was for other engines."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def warm_up_and_capture(
    step: Callable[[int | None], object],
    data,
    snapshot: StateSnapshot,
    reset: Callable[[], object],
    device: torch.device,
    *,
    warmup_steps: int,
    graph: bool,
    before_capture: Callable[[], object] | None = None,
    stream=None,
) -> torch.cuda.CUDAGraph | None:
    """Warm ``step(size)`` up on the first batch (and once on the partial batch's shape, so that
    cuDNN tunes it now, not in epoch 1), capture it as a graph if ``graph``, then undo the
    warm-up: ``snapshot`` restored, ``reset()`` (fresh optimizer state, loss sum), data rewound.
    ``data`` is a ``resident.ResidentBatches``."""

    def rewound(size: int | None = None) -> None:
        data.rewind()  # warm-up reads the first batch again: never past the data
        step(size)

    captured = None
    with cudnn_benchmark(True):
        warm_up(rewound, warmup_steps, device)
        if data.remainder:
            warm_up(lambda: rewound(data.remainder), 1, device)
        if graph:
            if before_capture is not None:
                before_capture()
            data.rewind()
            captured = capture(step, device, stream=stream)
    snapshot.restore()
    reset()
    data.rewind()
    return captured
