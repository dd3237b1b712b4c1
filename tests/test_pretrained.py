"""ImageNet-pretrained initial weights (``weights: imagenet``) through torchvision's weights
API. No network here: the weights file is made locally, with torchvision's own ResNet, and
put where torch's hub cache looks for the download."""

from __future__ import annotations

import pytest
import torch
import torchvision

from perfstudy.config import DLConfig
from perfstudy.dl.models import build_model
from perfstudy.dl.pretrained import WEIGHTS
from perfstudy.errors import DataError, UsageError


@pytest.fixture
def imagenet_file(tmp_path, monkeypatch):
    """A stand-in for torchvision's ResNet-18 ImageNet file in a fresh torch cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = getattr(torchvision.models, WEIGHTS["resnet18"]).IMAGENET1K_V1.url
    path = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


@pytest.mark.parametrize("variant", ["imagenet", "native"])
def test_imagenet_weights_are_loaded_but_the_classifier(imagenet_file, variant):
    torch.manual_seed(0)
    model = build_model("resnet18", variant, num_classes=10, weights="imagenet")
    core = model.core.state_dict()
    for k in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.bias"):
        assert torch.equal(core[k], imagenet_file[k]), k
    assert core["fc.weight"].shape == (10, 512)  # a new classifier for 10 classes
    if variant == "imagenet":  # the 7x7 stem on the grey image: the RGB filters summed
        assert core["conv1.weight"].shape == (64, 1, 7, 7)
        assert torch.allclose(core["conv1.weight"], imagenet_file["conv1.weight"].sum(1, True))
    else:  # the native 3x3 stem has no pretrained counterpart: as initialised
        torch.manual_seed(0)
        fresh = build_model("resnet18", variant, num_classes=10).core.state_dict()
        assert torch.equal(core["conv1.weight"], fresh["conv1.weight"])
    x = torch.rand(2, 1, 28, 28)
    assert model.eval()(x).shape == (2, 10)


def test_weights_are_a_setting_that_keeps_old_keys():
    assert "weights" not in DLConfig().to_dict()  # stored runs keep their keys
    assert DLConfig(weights="imagenet").to_dict()["weights"] == "imagenet"
    assert DLConfig(weights="imagenet").key() != DLConfig().key()
    with pytest.raises(UsageError, match="no ImageNet weights for resnet32"):
        DLConfig(model="resnet32", weights="imagenet")
    with pytest.raises(UsageError, match="unknown weights 'coco'"):
        DLConfig(weights="coco")


def test_without_the_file_or_a_network_the_error_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    with pytest.raises(DataError) as e:
        build_model("resnet18", "native", weights="imagenet")
    message = str(e.value)
    assert "\n" not in message and "cannot load resnet18's ImageNet weights" in message
    assert f"{tmp_path / 'torch' / 'hub' / 'checkpoints'}/resnet18-" in message


def test_a_pretrained_run_trains(imagenet_file):
    from perfstudy.dl.train import train_dl

    r = train_dl(DLConfig(model="resnet18", weights="imagenet", device="cpu", engine="plain",
                          num_workers=0, epochs=1, train_subset=64, eval_subset=50))
    assert r.config["weights"] == "imagenet" and 0 <= r.test_acc <= 100
