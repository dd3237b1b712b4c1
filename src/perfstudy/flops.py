"""FLOPs of the registered models, counted by ``torch.utils.flop_counter.FlopCounterMode``.

Units. FlopCounterMode counts a multiply-accumulate as 2 FLOPs, so here ``flops = 2 * macs``.
Tables that quote "GFLOPs" for CNNs (torchvision's docs among them: ResNet-18 1.81, ResNet-50
4.09) usually mean GMACs; every field below says which one it is.

What is counted: the ops FlopCounterMode has formulas for, which for these CNNs are the
convolutions (``aten.convolution`` and ``aten.convolution_backward``) and the final linear layer
(``addmm`` forward, ``mm`` backward). Not counted: BatchNorm, ReLU, pooling, the residual adds, the
loss and the optimizer step: elementwise, memory-bound work, small next to the convs. BatchNorm's
train/eval mode therefore does not change the numbers.

What is measured: the *core network* (``build_model(...).core``) at the (C, H, W) it is fed. The
``imagenet`` variant's resize adapter (bilinear interpolate + channel repeat) is input
preprocessing done on the fly, not model compute, so it is bypassed.

How: the model is built on the ``meta`` device, so only shapes are propagated; the counts are
identical to a CPU run (``tests/test_flops.py`` checks one) and take milliseconds even for
ResNet-50 at 224x224. A batch of 2 is counted and divided by 2, because BatchNorm in training mode
refuses a batch of 1 once the feature map is 1x1. ``train_flops`` is forward + ``loss.backward()``
in one counting context; it is a bit under 3x the forward because the first conv needs no
gradient with respect to the image.

The seed's figures (ResNet-18 1.751 G, ResNet-32 3.311 G, ResNet-50 3.967 G, called "FLOPs")
are MAC-sized (real FLOPs would be about twice as large) but match none of our counts. GMACs per
image, 10 classes ("stem 3x3/s1" = the native network fed a 224x224 image):

========  ==============  ==============  ==============  =============  =====
model     imagenet 3x224  imagenet 1x224  stem 3x3/s1 224 native 1x28x28  seed
========  ==============  ==============  ==============  =============  =====
resnet18  1.8136          1.7349          27.158          0.4558         1.751
resnet50  4.0872          4.0085          63.535          1.0468         3.967
resnet32  0.2390          0.2194          3.3598          0.0525         3.311
========  ==============  ==============  ==============  =============  =====

ResNet-18's seed value lies between our 1- and 3-channel 224x224 counts, ResNet-50's lies below
both, and no single square input size from 200 to 240 reproduces both within 0.005 G, so the two
do not share one convention we can reconstruct. ResNet-32's 3.311 G is only reached by the CIFAR
network (3x3/s1 stem, no down-sampling stem) fed a ~221x221 image - 14x the 0.239 G of our
imagenet-stem ResNet-32 - which suggests the seed ran ResNet-32 on up-sized images without a
down-sampling stem. Treat the seed's figures as unverified; the numbers here are measured.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from perfstudy.errors import UsageError
from perfstudy.models import MODELS, VARIANTS, build_model, core_input_shape, param_count

_BATCH = 2  # see module docstring: BatchNorm in train mode needs > 1 value per channel
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


def parse_input(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` (or with ``×``, ``X``, ``*``, spaces) -> ``(3, 224, 224)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×X*]\s*(\d+)\s*[x×X*]\s*(\d+)\s*", text)
    if not m or 0 in (shape := tuple(int(g) for g in m.groups())):
        raise UsageError(
            f"bad input shape {text!r}; expected CxHxW with positive integers, e.g. 3x224x224"
        )
    return shape  # type: ignore[return-value]


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
    MODELS.get(model)  # unknown names -> UsageError before anything is built
    shape = tuple(input_shape) if input_shape is not None else core_input_shape(variant)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise UsageError(f"input shape must be 3 positive integers (C, H, W), got {input_shape!r}")
    return _count(model, variant, shape)


def table() -> list[FlopsInfo]:
    """Every registered model at its default setting (native, 1x28x28) and at the seed's
    (imagenet variant, 3x224x224)."""
    return [count(name, v) for name in MODELS.names() for v in VARIANTS]
