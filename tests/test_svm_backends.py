"""The SVM backend registry and the process-pool helper for several fits at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perfstudy import data
from perfstudy.config import SVM_BACKENDS, SVMConfig
from perfstudy.errors import UsageError
from perfstudy.svm.agreement import sklearnex_agrees
from perfstudy.svm.backends import (
    available,
    default_backend,
    make_estimator,
    resolve,
)
from perfstudy.svm.fit import features, fit_svm
from perfstudy.threads import threads_per_worker


def _features(x):
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def test_unknown_backend_is_a_usage_error_listing_the_choices():
    with pytest.raises(
        UsageError, match="unknown SVM backend 'libsvm2'.*sklearn, sklearnex, torch"
    ):
        make_estimator(SVMConfig(backend="libsvm2"))


def test_registry_and_defaults():
    assert SVM_BACKENDS.names() == ["sklearn", "sklearnex", "torch"]
    assert {"sklearn", "torch"} <= set(available())
    assert default_backend() in available()
    if torch.cuda.is_available():
        assert default_backend() == "torch"
    assert resolve("auto") == default_backend()
    assert resolve("torch") == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, auto is the torch backend")
def test_auto_takes_sklearnex_only_where_it_agrees_with_libsvm():
    checks = []

    def check(verdict):
        return lambda: checks.append(verdict) or verdict

    assert default_backend() == "sklearn"  # nothing checked: libsvm
    assert default_backend(check(False)) == "sklearn"
    expected = "sklearnex" if "sklearnex" in available() else "sklearn"
    assert default_backend(check(True)) == expected
    assert checks == ([False, True] if "sklearnex" in available() else [])


@pytest.mark.slow
def test_auto_gives_libsvm_s_answer_on_the_full_split(tmp_path, monkeypatch):
    # the check fit decides on this CPU; where it takes sklearnex, the grid's config on the
    # whole split must then give libsvm's answer too (else the check is too weak)
    monkeypatch.setenv("HOME", str(tmp_path))  # a fresh verdict cache
    ds = data.load("mnist")
    backend = resolve("auto", agrees=lambda: sklearnex_agrees("mnist", ds.train, ds.test,
                                                               features))
    cache = tmp_path / ".cache" / "perfstudy" / "sklearnex-agreement.json"
    assert cache.exists() == ("sklearnex" in available() and not torch.cuda.is_available())
    if backend == "sklearn":
        return  # libsvm itself: its answer by definition
    cfg = SVMConfig(dataset="mnist", kernel="rbf", C=10.0)
    auto, ref = fit_svm(cfg.replace(backend=backend)), fit_svm(cfg.replace(backend="sklearn"))
    assert (auto.n_support, auto.test_acc, auto.val_acc) == (
        ref.n_support, ref.test_acc, ref.val_acc), backend

def test_each_backend_builds_the_configured_estimator():
    cfg = SVMConfig(kernel="poly", C=10.0, degree=4, backend="torch")
    est = make_estimator(cfg)
    assert type(est).__name__ == "TorchSVC"
    assert (est.kernel, est.C, est.degree, est.gamma, est.tol) == ("poly", 10.0, 4, "scale", 1e-3)
    ref = make_estimator(cfg.replace(backend="sklearn"))
    assert type(ref).__module__.startswith("sklearn.svm")
    assert ref.decision_function_shape == "ovo"


def test_sklearnex_missing_is_a_one_line_hint(monkeypatch):
    """With the package unimportable (as without the extra), selecting it says how to get it."""
    import sys

    monkeypatch.setitem(sys.modules, "sklearnex", None)
    monkeypatch.setitem(sys.modules, "sklearnex.svm", None)
    with pytest.raises(UsageError, match=r"pip install 'perfstudy\[intel\]'") as e:
        make_estimator(SVMConfig(backend="sklearnex"))
    assert "\n" not in str(e.value)


def test_sklearnex_matches_libsvm_on_a_subset():
    pytest.importorskip("sklearnex")
    ds = data.load("mnist")
    tr, te = data.subset(ds.train, 1000, seed=0), data.subset(ds.test, 500, seed=0)
    cfg = SVMConfig(kernel="rbf", C=10.0)
    preds = {}
    for backend in ("sklearn", "sklearnex"):
        est = make_estimator(cfg.replace(backend=backend)).fit(_features(tr.x), tr.y)
        preds[backend] = est.predict(_features(te.x))
        assert est.decision_function(_features(te.x[:5])).shape == (5, 45)
    assert abs(np.sum(preds["sklearn"] == te.y) - np.sum(preds["sklearnex"] == te.y)) <= 1


def test_threads_per_worker():
    assert threads_per_worker(1, n_cpus=64) == 64
    assert threads_per_worker(4, n_cpus=64) == 16
    assert threads_per_worker(3, n_cpus=8) == 2
    assert threads_per_worker(16, n_cpus=8) == 1
    with pytest.raises(ValueError):
        threads_per_worker(0)
