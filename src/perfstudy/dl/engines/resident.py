"""Training images resident on the device, shuffled and batched there.

The whole training split is 49,000 x 28 x 28 bytes = 38 MB: it lives on the device as uint8
for the whole run, so an epoch moves no image through the host. Each trial owns a
``torch.Generator`` on the device seeded from its ``cfg.seed`` and draws its own permutation
per epoch with ``torch.randperm``; the same seed gives the same order whether the trial trains
alone (``engines.fast``) or packed with others (``dl.packing``).

Batches are cut by a cursor that lives on the device too: ``next_batch`` gathers the next
``size`` indices of each trial's permutation at ``cursor`` and advances it, with no host value
involved, so the same Python call can be recorded once into a CUDA graph and replayed for
every step of every epoch (a host-side slice ``perm[i:i+B]`` would bake ``i`` into the graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Source:
    """One trial's training split: uint8 images (N, 28, 28), int64 labels, pixel statistics."""

    x: np.ndarray
    y: np.ndarray
    mean: float
    std: float


class ResidentBatches:
    """Batches for ``len(seeds)`` trials that step together (same batch size, same length).

    ``sources[t]`` is trial ``t``'s data; trials may share a source (the images are stored once
    per distinct source) or differ (two datasets in one pack). ``next_batch`` returns images of
    shape ``(T, size, 1, 28, 28)`` normalised per trial and labels ``(T, size)``; with
    ``squeeze=True`` (a single trial) the leading trial dimension is dropped.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        seeds: Sequence[int],
        batch_size: int,
        device: torch.device,
        squeeze: bool = False,
    ):
        if len(sources) != len(seeds) or not seeds:
            raise ValueError("one source per trial seed, at least one trial")
        lengths = {len(s.y) for s in sources}
        if len(lengths) != 1:
            raise ValueError(f"trials that step together need equal training sets, got {lengths}")
        self.n = lengths.pop()
        self.trials = len(seeds)
        self.batch_size = min(batch_size, self.n)
        self.device = device
        self.squeeze = squeeze
        if squeeze and self.trials != 1:
            raise ValueError("squeeze=True is for a single trial")

        # distinct sources stored once, concatenated; a trial reads at its source's offset
        unique: list[Source] = []
        where: list[int] = []
        for s in sources:
            k = next((i for i, u in enumerate(unique) if u is s), None)
            if k is None:
                unique.append(s)
                k = len(unique) - 1
            where.append(k)
        xs = np.concatenate([np.ascontiguousarray(u.x) for u in unique])
        ys = np.concatenate([np.asarray(u.y, dtype=np.int64) for u in unique])
        self.x = torch.from_numpy(xs).unsqueeze(1).to(device)  # uint8 (sum N, 1, 28, 28)
        self.y = torch.from_numpy(ys).to(device)
        offsets = [sum(len(unique[j].y) for j in range(k)) for k in where]
        self.offsets = torch.tensor(offsets, dtype=torch.long, device=device).unsqueeze(1)
        shape = (self.trials, 1, 1, 1, 1)
        stats = torch.float64  # as Python floats are; cast once per image dtype (_stats)
        self.mean = torch.tensor([s.mean for s in sources], dtype=stats, device=device).view(shape)
        self.std = torch.tensor([s.std for s in sources], dtype=stats, device=device).view(shape)
        self._cast: dict[torch.dtype, tuple[Tensor, Tensor]] = {}

        # static buffers: a captured graph reads and writes these exact tensors on every replay
        self.perm = torch.arange(self.n, device=device).repeat(self.trials, 1) + self.offsets
        self.cursor = torch.zeros((), dtype=torch.long, device=device)
        self.arange = torch.arange(self.batch_size, device=device)
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.dtype = torch.float32  # of the normalised images (float64 in exactness tests)

    @property
    def full_steps(self) -> int:
        return self.n // self.batch_size

    @property
    def remainder(self) -> int:
        """Images in the last, partial batch of an epoch (0 if the batch size divides N)."""
        return self.n % self.batch_size

    def shuffle(self) -> None:
        """A fresh permutation per trial for the next epoch, and the cursor back to 0."""
        for t, g in enumerate(self.generators):
            p = torch.randperm(self.n, generator=g, device=self.device)
            self.perm[t].copy_(p + self.offsets[t])
        self.cursor.zero_()

    def rewind(self) -> None:
        self.cursor.zero_()

    def _stats(self) -> tuple[Tensor, Tensor]:
        if self.dtype not in self._cast:  # created on first use, before any graph capture
            self._cast[self.dtype] = (self.mean.to(self.dtype), self.std.to(self.dtype))
        return self._cast[self.dtype]

    def next_batch(self, size: int | None = None) -> tuple[Tensor, Tensor]:
        """The next ``size`` images of every trial's permutation; advances the device cursor."""
        size = self.batch_size if size is None else size
        cols = self.cursor + self.arange[:size]
        idx = self.perm.index_select(1, cols)  # (T, size) absolute indices
        self.cursor += size
        flat = idx.reshape(-1)
        x = self.x.index_select(0, flat).view(self.trials, size, *self.x.shape[1:])
        # the arithmetic of evaluate.accuracy: float, / 255, - mean, / std
        mean, std = self._stats()
        x = (x.to(self.dtype) / 255 - mean) / std
        y = self.y.index_select(0, flat).view(self.trials, size)
        if self.squeeze:
            return x[0], y[0]
        return x, y
