"""The data layer: MNIST and Fashion-MNIST, verified, pooled and split 70/10/20.

``load(name)`` finds the four IDX files (see ``sources`` for the lookup order and the download),
checks each against its canonical MD5, pools the 60,000 + 10,000 images and splits them into
49,000 train / 7,000 val / 14,000 test, stratified by class and fixed by ``split_seed``.
Normalisation statistics come from the training split only, so nothing about val or test leaks
into training.

Loads are cached in-process: reading and checking ~55 MB costs about a second, and a study
loads the same dataset for every run. The cache key holds each file's size and mtime, so a
replaced file is read again. The arrays are read-only because they are shared between loads.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from perfstudy.data import idx
from perfstudy.data.sources import checksums, locate
from perfstudy.data.splits import Split, pixel_stats, split_indices, subset, take
from perfstudy.errors import DataError

__all__ = ["Dataset", "Split", "check", "for_run", "load", "locate", "register", "subset"]


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    mean: float  # of the train pixels / 255
    std: float
    # {"dir": str, "files": {file name: {"md5": str, "ok": True}}, "how": data_dir|env|cache|...}
    source: dict
    num_classes: int = 10


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split_seed: int = 0,
    *,
    mirrors: Sequence[str] | None = None,
    md5s: Mapping[str, str] | None = None,
) -> Dataset:
    """The dataset ``name``, verified and split; ``mirrors``/``md5s`` replace the dataset's own
    (for generated test data)."""
    if name in _REGISTERED:
        return _split(name, *_REGISTERED[name], split_seed, {"dir": None, "files": {},
                                                             "how": "registered"})
    folder, how = locate(name, data_dir, mirrors=mirrors, md5s=md5s)
    table = md5s if md5s is not None else checksums(name)
    try:
        ds = _load(name, folder.resolve(), _stamp(folder), tuple(sorted(table.items())), split_seed)
    except DataError as e:
        if how in ("cache", "download"):
            raise DataError(f"{e}; delete it to download it again") from None
        raise
    # a fresh source dict per call: callers may edit theirs without touching the cached one
    return dataclasses.replace(ds, source={**copy.deepcopy(ds.source), "how": how})


def for_run(cfg, data_dir: str | os.PathLike | None = None) -> tuple[Dataset, Split, Split, Split]:
    """A run's dataset and its (train, val, test) splits, with the config's ``train_subset`` and
    ``eval_subset`` applied (stratified, drawn with the split seed)."""
    ds = load(cfg.dataset, data_dir=data_dir, split_seed=cfg.split_seed)
    train, val, test = ds.train, ds.val, ds.test
    if cfg.train_subset:
        train = subset(train, cfg.train_subset, seed=cfg.split_seed)
    if cfg.eval_subset:
        val = subset(val, cfg.eval_subset, seed=cfg.split_seed)
        test = subset(test, cfg.eval_subset, seed=cfg.split_seed)
    return ds, train, val, test


def check(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split_seed: int = 0,
    *,
    mirrors: Sequence[str] | None = None,
    md5s: Mapping[str, str] | None = None,
) -> dict:
    """What ``perfstudy data check`` prints: where the files are, their MD5s, the split sizes and
    the per-class counts of each split. JSON-serialisable. A failed check raises ``DataError``."""
    ds = load(name, data_dir, split_seed, mirrors=mirrors, md5s=md5s)
    parts = {"train": ds.train, "val": ds.val, "test": ds.test}
    return {
        "name": ds.name,
        **ds.source,
        "split_seed": split_seed,
        "sizes": {k: len(s) for k, s in parts.items()},
        "class_counts": {
            k: np.bincount(s.y, minlength=ds.num_classes).tolist() for k, s in parts.items()
        },
        "mean": ds.mean,
        "std": ds.std,
    }


def _stamp(folder: Path) -> tuple:
    """(name, size, mtime) of the files load will read: part of the cache key."""
    stamp = []
    for file in idx.NAMES:
        path = idx.find(folder, file)
        if path is None:
            raise DataError(f"{folder / file}[.gz]: missing")
        st = path.stat()
        stamp.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


@lru_cache(maxsize=2)
def _pool(folder: Path, stamp: tuple, md5s: tuple) -> tuple[np.ndarray, np.ndarray, dict]:
    """All images and labels, train file first then t10k, and the verified files."""
    table = dict(md5s)
    xs, ys, files = [], [], {}
    for images, labels in idx.PAIRS.values():
        images, labels = idx.find(folder, images), idx.find(folder, labels)
        x, y, checked = idx.read_pair(images, labels, table)
        if len(y) and y.max() >= Dataset.num_classes:
            raise DataError(f"{labels}: label {y.max()} is not a class 0-{Dataset.num_classes - 1}")
        xs.append(x)
        ys.append(y)
        files.update(checked)
    return np.concatenate(xs), np.concatenate(ys), files


@lru_cache(maxsize=4)
def _load(name: str, folder: Path, stamp: tuple, md5s: tuple, split_seed: int) -> Dataset:
    x, y, files = _pool(folder, stamp, md5s)
    return _split(name, x, y, split_seed, {"dir": str(folder), "files": files, "how": ""})


def _split(name: str, x: np.ndarray, y: np.ndarray, split_seed: int, source: dict) -> Dataset:
    try:
        train, val, test = split_indices(y, split_seed)
    except ValueError as e:  # too few images per class for a stratified 70/10/20 split
        raise DataError(f"{source['dir'] or name}: cannot split {name} 70/10/20 by class: "
                        f"{e}") from None
    train_split = take(x, y, train)
    mean, std = pixel_stats(train_split.x)
    return Dataset(name=name, train=train_split, val=take(x, y, val), test=take(x, y, test),
                   mean=mean, std=std, source=source)


_REGISTERED: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def register(name: str, load) -> None:
    """A dataset of your own for this process: ``load()`` returns all its images, uint8
    ``(N, 28, 28)``, and labels 0-9 ``(N,)``; runs split them 70/10/20 as MNIST's. Loaded
    once, here, and checked."""
    from perfstudy.config import DATASETS, IMAGES

    if name in DATASETS:
        raise ValueError(f"dataset {name!r} is registered twice")
    x, y = load()
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
        raise DataError(f"dataset {name!r}: expected uint8 images (N, 28, 28) and labels (N,), "
                        f"got {x.dtype} {x.shape} and {y.shape}")
    if len(y) and not (0 <= y.min() and y.max() < Dataset.num_classes):
        raise DataError(f"dataset {name!r}: labels must be classes 0-9")
    x.flags.writeable = False
    _REGISTERED[name] = (x, y.astype(np.int64))
    DATASETS.append(name)
    IMAGES[name] = len(y)
