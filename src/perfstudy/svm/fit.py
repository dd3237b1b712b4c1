"""The SVM trainer: one ``SVMConfig`` in, one ``RunResult`` out. Pixels are scaled to [0, 1]."""

from __future__ import annotations

import time

import numpy as np

from perfstudy import data, provenance
from perfstudy.config import SVMConfig
from perfstudy.progress import NullProgress
from perfstudy.results import RunResult
from perfstudy.svm.agreement import sklearnex_agrees
from perfstudy.svm.backends import make_estimator, resolve


def features(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]."""
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1e3


def fit_svm(cfg: SVMConfig, data_dir=None, progress=None) -> RunResult:
    progress = progress or NullProgress()
    _, train, val, test = data.for_run(cfg, data_dir)
    backend = resolve(cfg.backend, agrees=lambda: sklearnex_agrees(cfg.dataset, train, test,
                                                                   features))
    est = make_estimator(cfg, backend)
    bar = progress.add(f"svm {cfg.kernel} C={cfg.C} {cfg.dataset}: fit", total=None)
    _, fit_ms = _timed(est.fit, features(train.x), train.y)
    progress.update(bar, description=f"svm {cfg.kernel} C={cfg.C} {cfg.dataset}: predict")
    val_pred, val_ms = _timed(est.predict, features(val.x))
    test_pred, test_ms = _timed(est.predict, features(test.x))
    progress.remove(bar)
    # Backends that run on a GPU synchronise inside predict()/fit() (they return numpy).
    device = getattr(est, "device_", "cpu")
    return RunResult(
        kind="svm",
        config=cfg.to_dict(),
        test_acc=100.0 * float(np.mean(test_pred == test.y)),
        val_acc=100.0 * float(np.mean(val_pred == val.y)),
        train_ms=fit_ms,
        eval_ms=val_ms + test_ms,
        n_support=int(np.sum(est.n_support_)),
        extra={
            "backend": backend,
            "predict_test_ms": test_ms,
            "predict_val_ms": val_ms,
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
        },
        provenance=provenance.collect(device),
    )
