"""Pooling and splitting: one 70/10/20 stratified split of all 70,000 images, and subsets.

The original 60,000/10,000 split has no validation set; pooling and re-splitting gives
49,000/7,000/14,000 with the same class proportions in each part, reproducible from one seed.
scikit-learn's ``train_test_split(stratify=...)`` does the stratified draw; sizes are passed as
integers so that the counts are exact rather than rounded from fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from perfstudy.config import split_sizes
from perfstudy.errors import UsageError


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, 28, 28) uint8
    y: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)


def split_indices(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into the pooled data of (train, val, test), stratified by the labels ``y``.

    Two draws: test off the pool, then val off the rest (stratified by the rest's labels).
    Raises sklearn's ValueError when a class has too few images to be in every part.
    """
    n_train, n_val, n_test = split_sizes(len(y))
    pool = np.arange(len(y))
    rest, test = train_test_split(pool, test_size=n_test, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=y[rest], random_state=seed)
    assert (len(train), len(val), len(test)) == (n_train, n_val, n_test)
    return train, val, test


def take(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> Split:
    """The rows ``index`` as a read-only Split: loaded datasets are cached and shared, so an
    in-place edit by one user must fail instead of changing everyone's data."""
    sx, sy = x[index], y[index].astype(np.int64)
    sx.flags.writeable = False
    sy.flags.writeable = False
    return Split(sx, sy)


def subset(split: Split, n: int, seed: int = 0) -> Split:
    """A stratified, deterministic subset of ``n`` images (``n >= len(split)``: the split)."""
    if n >= len(split):
        return split
    classes = len(np.unique(split.y))
    if n < classes:
        raise UsageError(f"a subset of {n} images cannot hold one of each of {classes} classes")
    index = np.arange(len(split))
    if len(split) - n < classes:
        # sklearn needs one image per class on both sides; leaving out fewer images than there
        # are classes cannot be stratified anyway, so leave them out at random
        keep = np.random.default_rng(seed).choice(index, size=n, replace=False)
    else:
        try:
            keep, _ = train_test_split(index, train_size=n, stratify=split.y, random_state=seed)
        except ValueError as e:  # a class with a single image cannot be stratified
            raise UsageError(f"cannot draw a stratified subset of {n} images: {e}") from None
    return take(split.x, split.y, keep)


def pixel_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and (population) std of the pixels of ``x`` scaled to [0, 1].

    From a histogram of the 256 byte values, exact in float64 and without a float copy of the
    images (49,000 images would make a 300 MB one); chunks bound bincount's int64 temporary.
    """
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(x), 4096):
        counts += np.bincount(x[start : start + 4096].reshape(-1), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = float(counts @ values / total)
    var = float(counts @ (values - mean) ** 2 / total)
    return mean, math.sqrt(var)
