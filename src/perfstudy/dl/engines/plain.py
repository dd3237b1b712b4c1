"""The plain engine: a ``torch.utils.data.DataLoader`` loop as a typical notebook writes it.

It exists so that ``pin_memory`` and ``num_workers`` mean what they meant in the seed study:
images are converted and normalised per item on the CPU (the notebook's ``ToTensor`` +
``Normalize``), collated by the DataLoader, copied to the device each step, and the loss is
read back with ``.item()`` every step (a CPU-GPU sync point, as in the notebook).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from perfstudy.dl.engines.base import EngineSetup


class NormalisedImages(Dataset):
    """uint8 (N, 28, 28) images -> normalised float (1, 28, 28) tensors, one item at a time."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: float, std: float):
        self.x, self.y = x, y
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = torch.tensor(self.x[i], dtype=torch.float32)  # copies: cached data is read-only
        return img.div_(255).sub_(self.mean).div_(self.std).unsqueeze(0), int(self.y[i])


class PlainEpochs:
    def __init__(self, model, optimizer, loader: DataLoader, device, progress):
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.device, self.progress = device, progress
        self.criterion = nn.CrossEntropyLoss()

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        running, seen = 0.0, 0
        bar = self.progress.add(f"epoch {epoch} batches", total=len(self.loader))
        for images, labels in self.loader:
            images, labels = images.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(images), labels)
            loss.backward()
            self.optimizer.step()
            running += loss.item() * labels.size(0)
            seen += labels.size(0)
            self.progress.advance(bar)
        self.progress.remove(bar)
        return running / seen


def prepare(cfg, model, optimizer, x, y, mean, std, device, progress) -> EngineSetup:
    generator = torch.Generator().manual_seed(cfg.seed)  # the shuffle order depends on the seed
    loader = DataLoader(
        NormalisedImages(x, y, mean, std),
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory and device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
        generator=generator,
    )
    notes = {"engine": "plain", "pin_memory_effective": loader.pin_memory}
    epochs = PlainEpochs(model, optimizer, loader, device, progress)
    return EngineSetup(epochs.train_epoch, notes, checkpointable=True, generators=[generator])
