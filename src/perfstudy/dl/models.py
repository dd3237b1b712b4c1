"""Model registry: ResNet-18/50 (torchvision's definitions) and the CIFAR ResNet-32 of He et al.

Every model of every variant takes the same input, a normalised float batch ``(B, 1, 28, 28)``,
and returns logits ``(B, num_classes)``. A model is ``nn.Sequential(adapter, core)``:

* ``core`` is the network proper. Its first conv takes ``in_channels`` channels (1 for
  ``native``, 3 for ``imagenet`` by default); FLOPs are counted on it alone.
* ``adapter`` turns the 1x28x28 image into what ``core`` expects: identity for ``native``; for
  ``imagenet`` a bilinear resize to 224x224 and a channel repeat (:class:`ResizeInput`). Doing this
  inside the model, rather than in the data pipeline, keeps one dataset/loader for all variants.

Variants differ only in the stem:

* ``native``: 3x3 stride-1 conv, no max-pool, for small images (torchvision's 7x7/s2 conv and
  max-pool would shrink 28x28 to 7x7 before the first stage).
* ``imagenet``: torchvision's 7x7 stride-2 conv + 3x3 stride-2 max-pool (ResNet-32 gets the same
  stem with its 16 channels), fed with 224x224 images as in the ImageNet setting.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from perfstudy.config import MODELS, VARIANTS
from perfstudy.errors import UsageError

INPUT_SHAPE = (1, 28, 28)  # (C, H, W) of the images every model accepts


@dataclass(frozen=True)
class _Variant:
    size: int  # side of the square image the core network sees
    channels: int  # default channels of the core network's first conv
    large_stem: bool  # 7x7/s2 conv + 3x3/s2 max-pool instead of a 3x3/s1 conv


_VARIANT_SPECS = {
    "native": _Variant(size=28, channels=1, large_stem=False),
    "imagenet": _Variant(size=224, channels=3, large_stem=True),
}
assert tuple(_VARIANT_SPECS) == VARIANTS

# A builder (``config.MODELS``) makes the core network: (large_stem, num_classes, in_channels).
Builder = Callable[[bool, int, int], nn.Module]


def _variant(variant: str) -> _Variant:
    try:
        return _VARIANT_SPECS[variant]
    except KeyError:
        raise UsageError(
            f"unknown variant {variant!r}; choose from: {', '.join(VARIANTS)}"
        ) from None


def _kaiming_init(module: nn.Module) -> None:
    """torchvision's ResNet init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0.
    Linear layers keep PyTorch's default init, as in torchvision."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ResizeInput(nn.Module):
    """Resize a ``(B, C, H, W)`` batch to ``size x size`` (bilinear) and repeat a single channel
    to ``channels``. ``expand`` is a view, so the repeat costs no memory; ``size=None`` keeps the
    spatial size."""

    def __init__(self, size: int | None = 224, channels: int = 3):
        super().__init__()
        self.size = size
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ValueError(f"can only repeat 1 channel to {self.channels}, got {x.shape[1]}")
            x = x.expand(-1, self.channels, -1, -1)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, channels={self.channels}"


# --- ResNet-18 / ResNet-50: torchvision's definitions with the stem swapped for `native`.


def _torchvision_resnet(fn: Callable[..., torchvision.models.ResNet]) -> Builder:
    def build(large_stem: bool, num_classes: int, in_channels: int) -> nn.Module:
        model = fn(weights=None, num_classes=num_classes)  # weights=None: never downloads
        if large_stem and in_channels == 3:
            return model  # exactly torchvision's network
        kernel, stride, padding = (7, 2, 3) if large_stem else (3, 1, 1)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
        _kaiming_init(model.conv1)
        if not large_stem:
            model.maxpool = nn.Identity()
        return model

    return build


resnet18 = _torchvision_resnet(torchvision.models.resnet18)
resnet50 = _torchvision_resnet(torchvision.models.resnet50)


# --- CIFAR ResNet (He et al. 2016, sec. 4.2): 3 stages x n basic blocks, 6n+2 weighted layers.


class PadShortcut(nn.Module):
    """Option-A shortcut of He et al. 2016: subsample by ``stride`` and zero-pad the extra
    channels. Parameter-free, which is why ResNet-32 has 0.46 M parameters, not more."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads trailing dims first: (W left, W right, H top, H bottom, C front, C back).
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class CifarResNet(nn.Module):
    """ResNet for small images with option-A (zero-padding identity) shortcuts, as in the paper.

    Blocks are torchvision's ``BasicBlock`` with a :class:`PadShortcut` as its ``downsample``.
    ``large_stem`` swaps the 3x3/s1 stem for a 7x7/s2 conv + 3x3/s2 max-pool (ImageNet setting).
    """

    def __init__(
        self,
        n: int,
        widths: tuple[int, ...] = (16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 3,
        large_stem: bool = False,
    ):
        super().__init__()
        w0 = widths[0]
        if large_stem:
            self.conv1 = nn.Conv2d(in_channels, w0, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, w0, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        inplanes = w0
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                shortcut = None
                if s != 1 or inplanes != planes:
                    shortcut = PadShortcut(planes - inplanes, s)
                blocks.append(BasicBlock(inplanes, planes, s, downsample=shortcut))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        _kaiming_init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.stages(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet32(large_stem: bool, num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(5, (16, 32, 64), num_classes, in_channels, large_stem)


# --- Public API.


def core_input_shape(variant: str, in_channels: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) seen by the core network: (1, 28, 28) native, (3, 224, 224) imagenet."""
    v = _variant(variant)
    return (in_channels or v.channels, v.size, v.size)


def build_model(
    name: str, variant: str = "native", num_classes: int = 10, in_channels: int | None = None,
    weights: str = "none",
) -> nn.Module:
    """``nn.Sequential(adapter, core)`` taking ``(B, 1, 28, 28)`` and returning logits.

    ``in_channels`` sets the core network's first conv (default 1 native, 3 imagenet); the
    adapter repeats the single input channel to match. Deterministic given ``torch.manual_seed``.
    ``weights="imagenet"``: torchvision's ImageNet weights (``dl.pretrained``), the first conv
    taking the grey image's 1 channel.
    """
    builder = MODELS.get(name)
    v = _variant(variant)
    if weights != "none" and in_channels is None:
        in_channels = 1
    channels, size, _ = core_input_shape(variant, in_channels)
    if channels < 1 or num_classes < 1:
        raise UsageError(f"in_channels and num_classes must be >= 1, got {channels}, {num_classes}")
    core = builder(v.large_stem, num_classes, channels)
    if weights == "imagenet":
        from perfstudy.dl.pretrained import load_imagenet

        load_imagenet(core, name)
    if (channels, size, size) == INPUT_SHAPE:
        adapter: nn.Module = nn.Identity()
    else:
        adapter = ResizeInput(size=None if size == INPUT_SHAPE[1] else size, channels=channels)
    return nn.Sequential(OrderedDict(adapter=adapter, core=core))


def param_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not; BN running stats are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
