"""SVM backends (``config.SVM_BACKENDS`` names them). Each builds an unfitted estimator with
scikit-learn's ``SVC`` interface (``fit``, ``predict``, ``decision_function``, ``n_support_``)
from an ``SVMConfig``. All three solve libsvm's C-SVC problem to the same tolerance:

- ``sklearn``: libsvm itself, single-threaded; the reference.
- ``sklearnex``: Intel's oneDAL SVC (optional extra ``perfstudy[intel]``), multi-threaded.
- ``torch``: ``svm.torchsvc.TorchSVC``, batched over the one-vs-one pairs, CUDA or CPU.

Every backend reports ``decision_function`` in libsvm's one-vs-one shape (n, n_pairs), so
decision values compare across backends without conversion.
"""

from __future__ import annotations

import importlib.util

from perfstudy.config import SVM_BACKENDS, SVMConfig
from perfstudy.errors import UsageError

INTEL_HINT = "pip install 'perfstudy[intel]'"


def _svc_params(cfg: SVMConfig) -> dict:
    return dict(
        kernel=cfg.kernel,
        C=cfg.C,
        degree=max(cfg.degree, 1),
        gamma=cfg.gamma,
        coef0=cfg.coef0,
        tol=cfg.tol,
        decision_function_shape="ovo",
    )


def sklearn_svc(cfg: SVMConfig):
    from sklearn.svm import SVC

    return SVC(**_svc_params(cfg), cache_size=1000, random_state=cfg.seed)


def sklearnex_svc(cfg: SVMConfig):
    try:
        from sklearnex.svm import SVC
    except ImportError:
        raise UsageError(
            f"SVM backend 'sklearnex' needs scikit-learn-intelex: {INTEL_HINT}"
        ) from None
    return SVC(**_svc_params(cfg), cache_size=1000, random_state=cfg.seed)


def torch_svc(cfg: SVMConfig):
    from perfstudy.svm.torchsvc import TorchSVC

    # deterministic: no random_state needed (libsvm's seed only drives probability estimates)
    return TorchSVC(**_svc_params(cfg))


def _sklearnex_installed() -> bool:
    return importlib.util.find_spec("sklearnex") is not None


def available() -> list[str]:
    """Backends that can run in this environment, in registry order."""
    return [n for n in SVM_BACKENDS.names() if n != "sklearnex" or _sklearnex_installed()]


def default_backend(agrees=None) -> str:
    """The fastest backend here that gives libsvm's answer (docs/performance.md): torch on an
    NVIDIA GPU; on a CPU sklearnex where it is installed and ``agrees()`` (a check fit on this
    machine: ``svm.agreement``), else libsvm itself (torch on a CPU gives the same solution,
    slower than libsvm)."""
    import torch

    if torch.cuda.is_available():
        return "torch"
    if _sklearnex_installed() and agrees is not None and agrees():
        return "sklearnex"
    return "sklearn"


def resolve(name: str, agrees=None) -> str:
    """A backend name as the run should record it: 'auto' becomes :func:`default_backend`;
    an unknown name is a one-line UsageError listing the choices."""
    if name == "auto":
        return default_backend(agrees)
    SVM_BACKENDS.check(name)
    return name


def make_estimator(cfg: SVMConfig, backend: str | None = None):
    """``backend``: the resolved name (default: ``cfg.backend`` resolved without a check fit,
    so ``auto`` on a CPU is libsvm)."""
    return SVM_BACKENDS.get(backend or resolve(cfg.backend))(cfg)
