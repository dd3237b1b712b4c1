"""perfstudy.flops: FlopCounterMode counts reproduce torchvision's published GMACs."""

from __future__ import annotations

import pytest
import torchvision

from perfstudy.dl import flops
from perfstudy.dl.models import MODELS, VARIANTS, build_model, param_count
from perfstudy.errors import UsageError


@pytest.mark.parametrize(
    ("name", "published", "macs"),
    [("resnet18", 1.81e9, 1_813_566_464), ("resnet50", 4.09e9, 4_087_156_736)],
)
def test_torchvision_published_gmacs(name, published, macs):
    # torchvision's docs list 1.81 / 4.09 "GFLOPS"; they are GMACs (1000 classes there, 10 here:
    # the classifier is < 0.05 % of the total, invisible at 2 decimals).
    info = flops.count(name, "imagenet", (3, 224, 224))
    assert abs(info.macs - published) <= 0.01e9
    assert round(info.macs / 1e9, 2) == published / 1e9
    assert info.macs == macs
    assert info.flops == 2 * info.macs


def test_resnet32_native_macs_by_hand():
    # Independent check: sum k*k*Cin*Cout*Hout*Wout over the convs plus the linear layer.
    stem = 9 * 1 * 16 * 28 * 28
    stage1 = 10 * 9 * 16 * 16 * 28 * 28
    stage2 = (9 * 16 * 32 + 9 * 9 * 32 * 32) * 14 * 14
    stage3 = (9 * 32 * 64 + 9 * 9 * 64 * 64) * 7 * 7
    assert flops.count("resnet32").macs == stem + stage1 + stage2 + stage3 + 64 * 10 == 52_497_280


def test_meta_count_equals_cpu_count():
    # count() runs on the meta device; a real CPU run must give the same numbers.
    core = build_model("resnet32").core  # CPU
    fwd, train = flops.measure(core, (1, 28, 28))
    info = flops.count("resnet32")
    assert (fwd, train) == (info.flops, info.train_flops) == (104_994_560, 314_757_888)


def test_train_flops_about_three_times_forward():
    for info in flops.table():
        assert 2.5 <= info.train_flops / info.flops <= 3.5, info
    r18 = flops.count("resnet18")
    # Just under 3: the first conv computes no gradient w.r.t. the image.
    assert r18.train_flops == 2_733_901_824
    assert round(r18.train_flops / r18.flops, 3) == 2.999


def test_params_match_torchvision():
    r18 = flops.count("resnet18", "imagenet")
    r50 = flops.count("resnet50", "imagenet")
    assert (r18.params, r50.params) == (11_181_642, 23_528_522)
    # torchvision's 1000-class counts, less their classifier, plus ours (10 classes).
    tv18 = param_count(torchvision.models.resnet18(weights=None))
    assert tv18 == 11_689_512
    assert r18.params == tv18 - (512 * 1000 + 1000) + (512 * 10 + 10)
    assert r50.params == param_count(torchvision.models.resnet50(weights=None, num_classes=10))


def test_channel_count_from_input_shape():
    one = flops.count("resnet18", "imagenet", (1, 224, 224))
    three = flops.count("resnet18", "imagenet")
    assert three.params - one.params == 2 * 64 * 7 * 7  # first conv: 2 fewer input channels
    assert three.macs - one.macs == 2 * 64 * 7 * 7 * 112 * 112
    assert flops.count("resnet32", "native", (1, 32, 32)).macs == 68_567_680


def test_too_small_input():
    with pytest.raises(UsageError, match="too small.*at least 32"):
        flops.count("resnet18", "imagenet", (1, 4, 4))
    assert flops.count("resnet32", "native", (1, 4, 4)).macs > 0  # downsamples only 4x


def test_bad_arguments():
    with pytest.raises(UsageError, match="unknown model"):
        flops.count("vgg")
    with pytest.raises(UsageError, match="unknown variant"):
        flops.count("resnet18", "cifar")
    with pytest.raises(UsageError, match="3 positive integers"):
        flops.count("resnet18", "native", (1, 28))


@pytest.mark.parametrize(
    ("text", "shape"),
    [("3x224x224", (3, 224, 224)), ("3×224×224", (3, 224, 224)), (" 1 X 28 x 28 ", (1, 28, 28))],
)
def test_parse_input(text, shape):
    assert flops.parse_input(text) == shape


@pytest.mark.parametrize("text", ["", "224x224", "3x224x224x1", "3x-1x4", "0x28x28", "axbxc"])
def test_parse_input_bad(text):
    with pytest.raises(UsageError, match="bad input shape"):
        flops.parse_input(text)


def test_table_covers_every_model_at_both_settings():
    rows = flops.table()
    got = {(i.model, i.variant, i.input) for i in rows}
    want = {(m, "native", (1, 28, 28)) for m in MODELS.names()}
    want |= {(m, "imagenet", (3, 224, 224)) for m in MODELS.names()}
    assert got == want and len(rows) == len(MODELS.names()) * len(VARIANTS)
    assert all(i.flops == 2 * i.macs for i in rows)


def test_to_dict_and_cache():
    info = flops.count("resnet32")
    d = info.to_dict()
    assert d["input"] == [1, 28, 28] and d["macs"] == 52_497_280
    assert d["gmacs"] == pytest.approx(0.05249728) and d["gflops"] == pytest.approx(0.10499456)
    assert flops.count("resnet32", "native", (1, 28, 28)) is info  # cached
