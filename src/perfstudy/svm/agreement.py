"""Whether scikit-learn-intelex gives libsvm's answer on this machine.

oneDAL's SVC solves libsvm's problem but does not always find libsvm's solution: on an Intel
Xeon, MNIST, RBF, C=10, full split, 98.08 % against libsvm's 98.41 % (46 of 14,000 test images
apart); on the 2-core AMD EPYC of the development machine, a 5,000-image fit of the same setting
had libsvm's support vectors but 1 of the 14,000 test predictions apart. So ``auto`` takes it
only where a check fit on this machine agrees with libsvm exactly: 5,000 training images of the
run's dataset, RBF, C=10, the same support vectors and the same predictions on the whole test
split. The verdict is kept per CPU, versions and dataset in
``~/.cache/perfstudy/sklearnex-agreement.json``: the check costs seconds (11 s on 2 cores),
once.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from perfstudy.data import subset
from perfstudy.data.sources import cache_root

PROBE_IMAGES = 5_000
PROBE = {"kernel": "rbf", "C": 10.0, "gamma": "scale", "decision_function_shape": "ovo"}


def _key(dataset: str) -> str:
    from importlib.metadata import version

    from perfstudy.provenance import cpu_model

    return (f"{cpu_model()} | scikit-learn {version('scikit-learn')} | scikit-learn-intelex "
            f"{version('scikit-learn-intelex')} | {dataset}")


def agrees(x: np.ndarray, y: np.ndarray, xt: np.ndarray) -> bool:
    """Fit libsvm and oneDAL on (x, y) with the probe's settings; the same support vectors and
    the same predictions on ``xt``?"""
    from sklearn.svm import SVC
    from sklearnex.svm import SVC as OneDalSVC

    ref, other = SVC(**PROBE).fit(x, y), OneDalSVC(**PROBE).fit(x, y)
    return (np.array_equal(ref.n_support_, other.n_support_)
            and np.array_equal(ref.predict(xt), other.predict(xt)))


def sklearnex_agrees(dataset: str, train, test, features) -> bool:
    """The verdict for this machine and ``dataset``, checked on first use and remembered."""
    path = cache_root() / "sklearnex-agreement.json"
    key = _key(dataset)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return bool(known[key])
    probe = subset(train, PROBE_IMAGES, seed=0)
    verdict = agrees(features(probe.x), probe.y, features(test.x))
    known[key] = verdict
    try:  # written whole, then renamed: concurrent runs never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(known, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # not remembered: checked again next time
    return verdict
