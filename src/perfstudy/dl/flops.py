"""FLOPs of the registered models, counted by ``torch.utils.flop_counter.FlopCounterMode``.

``flops = 2 * macs`` (the counter counts a multiply-accumulate as 2 FLOPs; tables that quote
"GFLOPs" for CNNs, torchvision's among them, mostly mean GMACs). Counted: convolutions and the
final linear layer, forward and backward; not counted: BatchNorm, ReLU, pooling, residual adds,
loss and optimizer (memory-bound, small next to the convolutions). Measured on the *core*
network at the (C, H, W) it is fed (the ``imagenet`` resize is input preprocessing), built on
the ``meta`` device, so only shapes propagate. docs/flops.md compares the counts with the
seed's figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from perfstudy import provenance
from perfstudy.config import MODELS, VARIANTS, parse_input
from perfstudy.dl.models import build_model, core_input_shape, param_count
from perfstudy.errors import UsageError
from perfstudy.results import RunResult

_BATCH = 2  # BatchNorm in training mode refuses a batch of 1 once the feature map is 1x1
_NUM_CLASSES = 10


@dataclass(frozen=True)
class FlopsInfo:
    """Per-image compute of one model at one core-network input. ``flops == 2 * macs``."""

    model: str
    variant: str
    input: tuple[int, int, int]  # (C, H, W) fed to the core network (after the resize adapter)
    macs: int  # forward multiply-accumulates per image
    flops: int  # forward FLOPs per image = 2 * macs
    train_flops: int  # forward + backward FLOPs per training image
    params: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input"] = list(self.input)  # JSON has no tuples
        d["gmacs"] = self.macs / 1e9
        d["gflops"] = self.flops / 1e9
        return d


def _output_stride(core: nn.Module, channels: int) -> int:
    """Total downsampling of ``core`` before its global pool (8 for native ResNet-18, 32 for
    torchvision's), found by pushing a 512x512 tensor through and reading the pooled map.
    ``core`` must be on the meta device, where this costs nothing."""
    pool = next(m for m in core.modules() if isinstance(m, nn.AdaptiveAvgPool2d))
    seen: list[int] = []
    hook = pool.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[-1]))
    try:
        was_training = core.training
        core.eval()
        with torch.no_grad():
            core(torch.zeros(1, channels, 512, 512, device="meta"))
        core.train(was_training)
    finally:
        hook.remove()
    return 512 // seen[0]


def measure(core: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """(forward FLOPs, forward+backward FLOPs) per image of ``core`` at ``input_shape``.

    Runs on the device of ``core``'s parameters (use ``meta`` for speed). The training pass
    updates BatchNorm statistics and gradients, so pass a throwaway module.
    """
    device = next(core.parameters()).device
    x = torch.zeros(_BATCH, *input_shape, device=device)
    target = torch.zeros(_BATCH, dtype=torch.long, device=device)
    core.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fwd:
        core(x)
    core.train()
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(core(x), target).backward()
    core.zero_grad(set_to_none=True)
    fwd_total, train_total = fwd.get_total_flops(), train.get_total_flops()
    assert fwd_total % (2 * _BATCH) == 0 and train_total % _BATCH == 0, (fwd_total, train_total)
    return fwd_total // _BATCH, train_total // _BATCH


@cache
def _count(model: str, variant: str, shape: tuple[int, int, int]) -> FlopsInfo:
    channels, h, w = shape
    with torch.device("meta"):
        core = build_model(model, variant, _NUM_CLASSES, in_channels=channels).core
    stride = _output_stride(core, channels)
    if min(h, w) < stride:
        raise UsageError(
            f"input {channels}x{h}x{w} is too small for {model} ({variant}): it downsamples "
            f"{stride}x, so H and W must be at least {stride}"
        )
    flops, train_flops = measure(core, shape)
    return FlopsInfo(model, variant, shape, flops // 2, flops, train_flops, param_count(core))


def count(
    model: str, variant: str = "native", input_shape: tuple[int, int, int] | None = None
) -> FlopsInfo:
    """Per-image MACs/FLOPs of ``model``'s core network at ``input_shape`` (C, H, W).

    Defaults to the variant's own input (1x28x28 native, 3x224x224 imagenet); a channel count
    other than the variant's default builds the network with that many input channels.
    10 output classes, as everywhere in perfstudy. Cached: the result is deterministic.
    """
    MODELS.check(model)  # unknown names -> UsageError before anything is built
    shape = tuple(input_shape) if input_shape is not None else core_input_shape(variant)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise UsageError(f"input shape must be 3 positive integers (C, H, W), got {input_shape!r}")
    return _count(model, variant, shape)


def table() -> list[FlopsInfo]:
    """Every registered model at its default setting (native, 1x28x28) and at the seed's
    (imagenet variant, 3x224x224)."""
    return [count(name, v) for name in MODELS.names() for v in VARIANTS]


def flops_result(cfg, data_dir=None, progress=None) -> RunResult:
    """A study's FLOPs count (``FlopsConfig``) as a run's result: the counts in ``extra``."""
    shape = parse_input(cfg.input) if cfg.input else None
    info = count(cfg.model, cfg.variant, shape)
    return RunResult(kind="flops", config=cfg.to_dict(), extra=info.to_dict(),
                     provenance=provenance.collect())
