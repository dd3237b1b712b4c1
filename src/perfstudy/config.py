"""What defines one run: a frozen dataclass per kind, hashed into the run's stable key.

Everything that changes a run's outcome is a field here; the store keys runs by
``config.key()`` and writes ``config.to_dict()`` whole into the result row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from perfstudy.errors import UsageError
from perfstudy.registry import Registry

# The choices a config may name. Implementations are imported on first use (``Registry``), so
# this module, and every command that only reads configs, runs without importing torch.
DATASETS = ["mnist", "fashion-mnist"]  # and those registered from Python (data.register)
IMAGES = {"mnist": 70_000, "fashion-mnist": 70_000}  # pooled, before the split
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
SEEDS = 2**32  # seeds are 0 .. 2**32 - 1 (what numpy's and torch's generators all take)
KERNELS = ("rbf", "poly", "linear")
DEVICES = ("auto", "cpu", "cuda")
VARIANTS = ("native", "imagenet")
WEIGHTS = ("none", "imagenet")  # initial weights: random, or torchvision's ImageNet ones
MODELS: Registry = Registry("model", {
    "resnet18": "perfstudy.dl.models:resnet18",
    "resnet50": "perfstudy.dl.models:resnet50",
    "resnet32": "perfstudy.dl.models:resnet32",
})
OPTIMIZERS: Registry = Registry("optimizer", {
    "sgd": "perfstudy.dl.optimizers:sgd",
    "adam": "perfstudy.dl.optimizers:adam",
})
ENGINES: Registry = Registry("engine", {
    "plain": "perfstudy.dl.engines.plain:prepare",
    "cpu": "perfstudy.dl.engines.cpu:prepare",
    "fast": "perfstudy.dl.engines.fast:prepare",
})
PRETRAINED = ("resnet18", "resnet50")  # models torchvision has ImageNet weights for
SVM_BACKENDS: Registry = Registry("SVM backend", {
    "sklearn": "perfstudy.svm.backends:sklearn_svc",
    "sklearnex": "perfstudy.svm.backends:sklearnex_svc",
    "torch": "perfstudy.svm.backends:torch_svc",
})

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float,),
    "bool": (bool,),
    "str": (str,),
    "int | None": (int, type(None)),
    "str | None": (str, type(None)),
    "str | float": (str, float),
}


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Check a field's type; ints become floats in float fields and numeric strings ('1e-3',
    which YAML 1.1 reads as a string) become numbers, so equal settings hash equal."""
    allowed = _TYPES[annotation]
    if float in allowed and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str) and str not in allowed:
            try:
                return float(value)
            except ValueError:
                pass
    if isinstance(value, bool) and bool not in allowed:
        raise UsageError(f"{name} must be {annotation}, got {value!r}")
    if not isinstance(value, allowed):
        raise UsageError(f"{name} must be {annotation}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Config:
    kind: ClassVar[str] = ""

    def _check_types(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))

    def settings(self) -> dict[str, Any]:
        """Every setting, defaults included (what ``--filter`` matches)."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def to_dict(self) -> dict[str, Any]:
        """Every setting; a setting added after runs were stored (``metadata`` ``"added"``) only
        when it is not its default, so those runs keep their keys."""
        d = self.settings()
        for f in dataclasses.fields(self):
            if f.metadata.get("added") and d[f.name] == f.default:
                del d[f.name]
        return d

    def key(self) -> str:
        """Stable 16-hex-digit hash of the full config (sorted-key JSON of ``to_dict``)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = {k: v for k, v in d.items() if k != "kind"}
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise UsageError(f"unknown {cls.kind} setting(s): {', '.join(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class DLConfig(_Config):
    """One deep-learning training run."""

    kind: ClassVar[str] = "dl"
    seeded: ClassVar[bool] = True  # the seed drives initialisation and data order
    dataset: str = "mnist"
    model: str = "resnet18"
    variant: str = "native"
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 10
    pin_memory: bool = True
    num_workers: int = 2
    device: str = "auto"
    engine: str = "auto"
    seed: int = 0
    split_seed: int = 0
    train_subset: int | None = None
    eval_subset: int | None = None  # stratified subset of val and of test, for short runs
    weights: str = dataclasses.field(default="none", metadata={"added": 2})

    def __post_init__(self):
        self._check_types()
        _check_common(self)
        _check_model(self.model, self.variant)
        if self.weights not in WEIGHTS:
            raise UsageError(f"unknown weights {self.weights!r}; choose from: "
                             f"{', '.join(WEIGHTS)}")
        if self.weights == "imagenet" and self.model not in PRETRAINED:
            raise UsageError(f"no ImageNet weights for {self.model}; they exist for "
                             f"{', '.join(PRETRAINED)}")
        check_range("batch size", self.batch_size, 1, 65_536)
        check_range("learning rate", self.lr, 0, 100, low_open=True)
        check_range("momentum", self.momentum, 0, 1)
        check_range("weight decay", self.weight_decay, 0, 100)
        check_range("epochs", self.epochs, 1, 10_000)
        check_range("num_workers", self.num_workers, 0, 64)
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose from: {', '.join(DEVICES)}")
        OPTIMIZERS.check(self.optimizer)
        if self.engine != "auto":
            ENGINES.check(self.engine)


@dataclass(frozen=True)
class SVMConfig(_Config):
    """One SVM fit (scikit-learn's SVC semantics: one-vs-one, libsvm's dual problem)."""

    kind: ClassVar[str] = "svm"
    # the fit is deterministic: the seed only reaches libsvm's probability estimates (unused)
    seeded: ClassVar[bool] = False
    dataset: str = "mnist"
    kernel: str = "rbf"
    C: float = 1.0
    degree: int = 3
    gamma: str | float = "scale"
    coef0: float = 0.0
    tol: float = 1e-3
    backend: str = "auto"  # resolved to the fastest available backend when the run starts
    seed: int = 0
    split_seed: int = 0
    train_subset: int | None = None
    eval_subset: int | None = None

    def __post_init__(self):
        self._check_types()
        _check_common(self)
        if self.kernel not in KERNELS:
            raise UsageError(f"unknown kernel {self.kernel!r}; choose from: {', '.join(KERNELS)}")
        check_range("C", self.C, 0, 1e6, low_open=True)
        check_range("coef0", self.coef0, -1e6, 1e6)
        check_range("tol", self.tol, 0, 1, low_open=True)
        if self.backend != "auto":
            SVM_BACKENDS.check(self.backend)
        if self.kernel == "poly":
            check_range("degree", self.degree, 1, 10)
        if isinstance(self.gamma, str):
            if self.gamma not in ("scale", "auto"):
                try:
                    object.__setattr__(self, "gamma", float(self.gamma))
                except ValueError:
                    raise UsageError(
                        f"gamma must be 'scale', 'auto' or a number > 0, got {self.gamma!r}"
                    ) from None
        if not isinstance(self.gamma, str):
            check_range("gamma", self.gamma, 0, 1e6, low_open=True)
        if self.kernel != "poly":
            # degree only matters for poly: normalise it so equal fits hash equal
            object.__setattr__(self, "degree", 0)


@dataclass(frozen=True)
class FlopsConfig(_Config):
    """A FLOPs count of one model at one input size (no training)."""

    kind: ClassVar[str] = "flops"
    model: str = "resnet18"
    variant: str = "native"
    input: str | None = None  # "CxHxW" fed to the network core; None: the variant's own

    def __post_init__(self):
        self._check_types()
        _check_model(self.model, self.variant)
        if self.input is not None:
            object.__setattr__(self, "input", "x".join(map(str, parse_input(self.input))))


CONFIGS: dict[str, type[_Config]] = {"dl": DLConfig, "svm": SVMConfig, "flops": FlopsConfig}


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes for ``n`` pooled images; train takes the rounding remainder."""
    val = round(n * FRACTIONS["val"])
    test = round(n * FRACTIONS["test"])
    return n - val - test, val, test


def check_range(name: str, value, low=None, high=None, low_open: bool = False) -> None:
    """A finite number in [low, high] (``low_open``: above low), else a one-line error."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or value <= high)
    if not ok:
        bound = [f"{'>' if low_open else '>='} {low:g}" if low is not None else None,
                 f"<= {high:g}" if high is not None else None]
        what = " and ".join(b for b in bound if b) or "a finite number"
        raise UsageError(f"{name} must be {what}, got {value}")


def _check_common(cfg) -> None:
    """Dataset, seeds and subsets: the settings every training config shares."""
    _check_dataset(cfg.dataset)
    check_range("seed", cfg.seed, 0, SEEDS - 1)
    check_range("split_seed", cfg.split_seed, 0, SEEDS - 1)
    n_train, n_val, _ = split_sizes(IMAGES[cfg.dataset])
    for name, n, most in (("train_subset", cfg.train_subset, n_train),
                          ("eval_subset", cfg.eval_subset, n_val)):
        if n is not None and not 10 <= n <= most:
            raise UsageError(f"{name} must be 10 (one image per class) to {most:,} (the "
                             f"{cfg.dataset} {'training' if name[0] == 't' else 'validation'} "
                             f"split), got {n:,}")


def parse_input(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` (or with ``×``, ``X``, ``*``, spaces) -> ``(3, 224, 224)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×X*]\s*(\d+)\s*[x×X*]\s*(\d+)\s*", text)
    if not m or 0 in (shape := tuple(int(g) for g in m.groups())):
        raise UsageError(
            f"bad input shape {text!r}; expected CxHxW with positive integers, e.g. 3x224x224"
        )
    return shape  # type: ignore[return-value]


def _check_model(name: str, variant: str) -> None:
    MODELS.check(name)
    if variant not in VARIANTS:
        raise UsageError(f"unknown variant {variant!r}; choose from: {', '.join(VARIANTS)}")


def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}")



