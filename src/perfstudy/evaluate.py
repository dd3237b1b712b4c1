"""Accuracy of a model on a split, in large batches on the device (excluded from training time)."""

from __future__ import annotations

import torch


def to_device(split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as uint8 (N, 1, 28, 28) images (normalised per batch later) and int64 labels
    on the device. ``torch.tensor`` copies: the cached dataset arrays are read-only."""
    x = torch.tensor(split.x, dtype=torch.uint8).unsqueeze(1).to(device)
    return x, torch.tensor(split.y, dtype=torch.int64).to(device)


@torch.no_grad()
def accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mean: float,
    std: float,
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy in percent. ``x`` is uint8 (N, 1, 28, 28) on the model's device."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].float().div_(255).sub_(mean).div_(std)
        correct += (model(xb).argmax(1) == y[i : i + batch_size]).sum()
    model.train(was_training)
    return 100.0 * correct.item() / len(x)
