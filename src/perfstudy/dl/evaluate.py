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


class BestEpoch:
    """Honest selection: keeps the weights of the epoch with the best *validation* accuracy
    (the first epoch reaching it wins ties); the test split is only read at the end."""

    def __init__(self):
        self.val_acc, self.epoch, self.state = -1.0, 0, None

    def update(self, model: torch.nn.Module, val_acc: float, epoch: int) -> None:
        if val_acc > self.val_acc:
            self.val_acc, self.epoch = val_acc, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def to_host(self) -> dict:
        """For a checkpoint: the selection so far, weights on the host."""
        state = None if self.state is None else {k: v.cpu() for k, v in self.state.items()}
        return {"val_acc": self.val_acc, "epoch": self.epoch, "state": state}

    @classmethod
    def from_host(cls, saved: dict, device) -> BestEpoch:
        best = cls()
        best.val_acc, best.epoch = saved["val_acc"], saved["epoch"]
        if saved["state"] is not None:
            best.state = {k: v.to(device) for k, v in saved["state"].items()}
        return best

    def test(self, model, x, y, mean: float, std: float,
             last_epoch: int | None = None) -> tuple[float, float]:
        """(test accuracy at the best-validation epoch, at the last epoch). Leaves ``model``
        holding the best-validation weights. Where the best epoch is ``last_epoch`` (the one
        whose weights ``model`` holds), the two are one set of weights, tested once."""
        last = accuracy(model, x, y, mean, std)
        if self.epoch == last_epoch:
            return last, last
        model.load_state_dict(self.state)
        return accuracy(model, x, y, mean, std), last
