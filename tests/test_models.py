"""perfstudy.models: every model x variant trains on (B, 1, 28, 28); ResNet-32 is the paper's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from perfstudy.dl.models import (
    MODELS,
    VARIANTS,
    PadShortcut,
    ResizeInput,
    build_model,
    core_input_shape,
    param_count,
)
from perfstudy.errors import UsageError


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", MODELS.names())
def test_forward_backward(name, variant):
    torch.manual_seed(0)
    model = build_model(name, variant).train()
    x = torch.randn(2, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([3, 7])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Not a dead network: the first conv and the classifier both receive gradient.
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0
    assert model.core.fc.weight.grad.abs().sum() > 0


def test_resnet32_is_the_papers():
    native = build_model("resnet32")  # 1 input channel
    cifar = build_model("resnet32", in_channels=3)  # the paper's CIFAR-10 network
    assert param_count(native) == 463_866
    assert param_count(cifar) == 464_154
    assert abs(param_count(cifar) / 1e6 - 0.46) <= 0.01
    # Independent sum: 6n+1 = 31 3x3 convs (no bias) each followed by BN (2 params/channel),
    # the stem conv, and a 64->10 linear layer. Option-A shortcuts add no parameters.
    convs = 9 * 1 * 16 + 10 * 9 * 16 * 16 + 9 * 16 * 32 + 9 * 9 * 32 * 32
    convs += 9 * 32 * 64 + 9 * 9 * 64 * 64
    bns = 2 * (16 + 10 * 16 + 10 * 32 + 10 * 64)
    assert convs + bns + 64 * 10 + 10 == 463_866
    convs_ = [m for m in native.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs_) == 31 and all(c.kernel_size == (3, 3) for c in convs_)
    assert sum(isinstance(m, PadShortcut) for m in native.modules()) == 2


def test_pad_shortcut_subsamples_and_zero_pads():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = PadShortcut(16, 2)(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


def test_stems():
    r18n = build_model("resnet18").core
    assert r18n.conv1.weight.shape == (64, 1, 3, 3) and r18n.conv1.stride == (1, 1)
    assert isinstance(r18n.maxpool, nn.Identity)
    r18i = build_model("resnet18", "imagenet").core
    assert r18i.conv1.weight.shape == (64, 3, 7, 7) and r18i.conv1.stride == (2, 2)
    assert isinstance(r18i.maxpool, nn.MaxPool2d)
    r32i = build_model("resnet32", "imagenet").core
    assert r32i.conv1.weight.shape == (16, 3, 7, 7) and isinstance(r32i.maxpool, nn.MaxPool2d)
    r50 = build_model("resnet50", "imagenet", in_channels=1).core
    assert r50.conv1.weight.shape == (64, 1, 7, 7)


def test_adapters():
    assert isinstance(build_model("resnet32").adapter, nn.Identity)
    adapter = build_model("resnet32", "imagenet").adapter
    assert isinstance(adapter, ResizeInput)
    x = torch.randn(2, 1, 28, 28)
    y = adapter(x)
    assert y.shape == (2, 3, 224, 224)
    assert torch.equal(y[:, 0], y[:, 2])
    # Bilinear resize of a constant image is that constant.
    assert torch.allclose(adapter(torch.full((1, 1, 28, 28), 0.5)), torch.tensor(0.5))
    # Native with 3 core channels: repeat only, no resize.
    assert build_model("resnet32", in_channels=3).adapter(x).shape == (2, 3, 28, 28)


def test_core_input_shape():
    assert core_input_shape("native") == (1, 28, 28)
    assert core_input_shape("imagenet") == (3, 224, 224)
    assert core_input_shape("imagenet", 1) == (1, 224, 224)


def test_unknown_names():
    with pytest.raises(UsageError, match="unknown model 'vgg'.*resnet18, resnet50, resnet32"):
        build_model("vgg")
    with pytest.raises(UsageError, match="unknown variant 'cifar'.*native, imagenet"):
        build_model("resnet18", "cifar")
    with pytest.raises(UsageError, match="unknown variant"):
        core_input_shape("cifar")


def test_num_classes():
    assert build_model("resnet32", num_classes=100)(torch.randn(1, 1, 28, 28)).shape == (1, 100)


@pytest.mark.parametrize("name", MODELS.names())
def test_same_seed_same_weights(name):
    def weights(seed):
        torch.manual_seed(seed)
        return build_model(name).state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["core.conv1.weight"], c["core.conv1.weight"])
