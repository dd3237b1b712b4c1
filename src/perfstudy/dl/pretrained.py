"""ImageNet-pretrained initial weights (a study's ``weights: imagenet``), through torchvision's
weights API, as fine-tuning notebooks use them: every layer but the classifier (10 classes
here, not 1,000) from torchvision's ResNet-18/50 ``IMAGENET1K_V1`` weights; the first
convolution summed over its 3 colour channels into the 1 channel of a grey image (the same
output as feeding it the image repeated on 3 channels), or, for the ``native`` variant's
3x3 stem, left as initialised (the pretrained stem is 7x7).

The weights are downloaded once by torch into its hub cache (``$TORCH_HOME/hub/checkpoints``,
checked against the hash in the file's name); without a network the file can be put there by
hand under that name.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from perfstudy.errors import DataError

WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}


def imagenet_state(model: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights of ``model`` (downloaded into torch's cache once)."""
    weights = getattr(torchvision.models, WEIGHTS[model]).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as e:  # no network, a torn or foreign file
        name = weights.url.rsplit("/", 1)[-1]
        raise DataError(f"cannot load {model}'s ImageNet weights ({' '.join(str(e).split())[:160]}"
                        f"); download {weights.url} into {torch.hub.get_dir()}/checkpoints/"
                        f"{name}") from None


@torch.no_grad()
def load_imagenet(core: nn.Module, model: str) -> None:
    """Copy the ImageNet weights into ``core`` (a torchvision ResNet of ours), in place."""
    state = imagenet_state(model)
    mine = core.state_dict()
    conv = state["conv1.weight"]
    if mine["conv1.weight"].shape[1] == 1 and conv.shape[2:] == mine["conv1.weight"].shape[2:]:
        state["conv1.weight"] = conv.sum(1, keepdim=True)
    kept = {k: v for k, v in state.items()
            if not k.startswith("fc.") and k in mine and v.shape == mine[k].shape}
    core.load_state_dict(kept, strict=False)
