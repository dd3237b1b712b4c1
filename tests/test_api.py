"""perfstudy's Python API: a study loaded, run, read back as a DataFrame and reported; one-run
calls; a model and a dataset registered from Python and used by a study file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import perfstudy
from perfstudy.errors import UsageError

FLOPS = "experiments:\n  f:\n    kind: flops\n    grid: {model: [resnet18, resnet32]}\n"


def test_import_perfstudy_is_light_and_lists_its_calls():
    out = subprocess.run([sys.executable, "-c", "import sys, perfstudy; print(sorted(m for m in "
                          "sys.modules if m.split('.')[0] in ('torch', 'sklearn')))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert {"load_study", "run", "read_results", "write_report", "train", "fit_svm",
            "count_flops", "register_model", "register_dataset"} <= set(dir(perfstudy))
    with pytest.raises(AttributeError):
        perfstudy.no_such_call  # noqa: B018


def test_a_study_from_python_to_a_dataframe_and_a_report(tmp_path):
    (tmp_path / "s.yaml").write_text(FLOPS)
    study = perfstudy.load_study(tmp_path / "s.yaml")
    out = perfstudy.run(study, db=tmp_path / "r.db", progress=False)
    assert (out.done, out.failed, out.skipped, out.total) == (2, 0, 0, 2)
    again = perfstudy.run(tmp_path / "s.yaml", db=tmp_path / "r.db", progress=False)
    assert (again.done, again.skipped) == (0, 2)  # stored: nothing trained twice
    df = perfstudy.read_results(tmp_path / "r.db")
    assert list(df.model) == ["resnet18", "resnet32"] and set(df.status) == {"done"}
    assert df.set_index("model").macs["resnet18"] == 455_800_832
    html = perfstudy.write_report(tmp_path / "r.db", out=tmp_path / "report")
    assert html == tmp_path / "report" / "report.html"
    assert "FLOPs per image, forward pass (f)" in html.read_text()


def test_one_run_calls():
    flops = perfstudy.count_flops("resnet18", "imagenet")
    assert round(flops["gmacs"], 4) == 1.8136 and flops["flops"] == 2 * flops["macs"]
    svm = perfstudy.fit_svm(kernel="rbf", C=10.0, train_subset=500, eval_subset=200,
                            backend="sklearn")
    assert svm.kind == "svm" and 80 < svm.test_acc <= 100 and svm.n_support > 0
    with pytest.raises(UsageError, match="unknown kernel 'cubic'"):
        perfstudy.fit_svm(kernel="cubic")


@pytest.fixture
def registries():
    """Registrations of a test end with it: later tests see the built-in names only."""
    from perfstudy import data
    from perfstudy.config import DATASETS, IMAGES, MODELS

    saved = (dict(MODELS._items), list(DATASETS), dict(IMAGES), dict(data._REGISTERED))
    yield
    for live, old in zip((MODELS._items, DATASETS, IMAGES, data._REGISTERED), saved,
                         strict=True):
        live.clear()
        live.update(old) if isinstance(live, dict) else live.extend(old)


def _tiny(large_stem, num_classes, in_channels):
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(7), torch.nn.Flatten(),
                               torch.nn.Linear(196, num_classes))


def test_a_registered_model_and_dataset_are_used_by_a_study_file(tmp_path, registries):
    rng = np.random.default_rng(0)
    y = np.arange(1000) % 10
    x = rng.integers(0, 40, (1000, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):  # a bright band whose height is the class
        x[i, 2 + 2 * label: 5 + 2 * label] = 255
    perfstudy.register_model("tiny", _tiny)
    perfstudy.register_dataset("bands", lambda: (x, y))
    assert "tiny" in perfstudy.list_models() and "bands" in perfstudy.list_datasets()
    (tmp_path / "s.yaml").write_text(
        "experiments:\n  mine:\n    kind: dl\n    pack: auto\n    epochs: 15\n"
        "    fixed: {model: tiny, dataset: bands, device: cpu, batch_size: 16, lr: 0.01}\n"
        "    grid: {optimizer: [adam, sgd]}\n")
    out = perfstudy.run(tmp_path / "s.yaml", db=tmp_path / "r.db", progress=False)
    assert out.done == 2 and out.failed == 0
    df = perfstudy.read_results(tmp_path / "r.db")
    assert set(df.model) == {"tiny"} and set(df.dataset) == {"bands"}
    assert list(df.n_train) == [700, 700]  # split 70/10/20 like MNIST
    assert df.test_acc.max() > 50  # the bands are learnable: chance is 10 %
    with pytest.raises(ValueError, match="registered twice"):
        perfstudy.register_model("tiny", _tiny)
    with pytest.raises(UsageError, match="train_subset must be 10 .* to 700"):
        perfstudy.train(model="tiny", dataset="bands", train_subset=701)


def test_registrations_end_with_their_test():
    assert "tiny" not in perfstudy.list_models() and "bands" not in perfstudy.list_datasets()


def test_a_registered_dataset_is_checked(registries):
    from perfstudy.errors import DataError

    with pytest.raises(DataError, match="expected uint8 images"):
        perfstudy.register_dataset("floats", lambda: (np.zeros((10, 28, 28)), np.zeros(10)))
    assert "floats" not in perfstudy.list_datasets()
