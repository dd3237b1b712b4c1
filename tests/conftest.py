"""Shared test fixtures: where the real datasets are, tiny generated ones in the IDX format for
fast tests, and the ``cuda`` marker: a test that needs an NVIDIA GPU carries it and is skipped
where PyTorch sees none (``pytest -m cuda`` runs them all on a GPU machine)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from perfstudy.data import idx

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch  # only when a selected test needs to know

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked cuda)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def real_data_dir():
    """Point ``$PERFSTUDY_DATA_DIR`` at the shared real datasets (``<repo>/../shared/datasets``)
    unless it is already set, so tests load the real data without a download."""
    var = "PERFSTUDY_DATA_DIR"
    preset = os.environ.get(var)
    if not preset:
        os.environ[var] = str(REPO.parent / "shared" / "datasets")
    yield Path(os.environ[var])
    if not preset:
        os.environ.pop(var, None)


def write_fake_dataset(
    folder: Path, n_train: int = 60, n_t10k: int = 40, gz: bool = True, seed: int = 0
) -> dict[str, str]:
    """The four IDX files of a tiny MNIST-like dataset in ``folder``; returns their MD5 table.

    Labels cycle through the 10 classes (equal counts when the sizes are multiples of 10), and
    each image is noise with a bright row band at a class-dependent height, so a model can
    learn it.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for (images, labels), n in zip(idx.PAIRS.values(), (n_train, n_t10k), strict=True):
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 64, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label : 5 + 2 * label] = 255
        for name, array in ((images, x), (labels, y)):
            data = idx.write(folder / (f"{name}.gz" if gz else name), array)
            md5s[name] = idx.md5(data)
    return md5s


@pytest.fixture
def make_fake_dataset():
    """``write_fake_dataset`` as a fixture, for tests that need several generated datasets."""
    return write_fake_dataset


@pytest.fixture
def fake_dataset(tmp_path):
    """A tiny generated dataset: ``(folder, md5s)``; load it with
    ``perfstudy.data.load("mnist", folder, md5s=md5s)``."""
    folder = tmp_path / "fake"
    return folder, write_fake_dataset(folder)


@pytest.fixture
def deterministic_kernels():
    """fp32 without TF32, deterministic cuDNN kernels: graphed, fused and eager steps then run
    the same arithmetic, so a comparison tests the engine rather than rounding."""
    import torch

    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved
