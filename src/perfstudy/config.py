"""What defines one run: a frozen dataclass per kind, hashed into the run's stable key.

Everything that changes a run's outcome is a field here; the store keys runs by
``config.key()`` and writes ``config.to_dict()`` whole into the result row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from perfstudy.errors import UsageError
from perfstudy.registry import Registry

# The choices a config may name. Implementations are imported on first use (``Registry``), so
# this module, and every command that only reads configs, runs without importing torch.
DATASETS = ("mnist", "fashion-mnist")
KERNELS = ("rbf", "poly", "linear")
DEVICES = ("auto", "cpu", "cuda")
VARIANTS = ("native", "imagenet")
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

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

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

    def __post_init__(self):
        self._check_types()
        _check_dataset(self.dataset)
        _check_model(self.model, self.variant)
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.num_workers < 0:
            raise UsageError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.weight_decay < 0:
            raise UsageError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose from: {', '.join(DEVICES)}")
        OPTIMIZERS.check(self.optimizer)
        if self.engine != "auto":
            ENGINES.check(self.engine)
        _check_subset(self.train_subset)
        _check_subset(self.eval_subset)


@dataclass(frozen=True)
class SVMConfig(_Config):
    """One SVM fit (scikit-learn's SVC semantics: one-vs-one, libsvm's dual problem)."""

    kind: ClassVar[str] = "svm"
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
        _check_dataset(self.dataset)
        if self.kernel not in KERNELS:
            raise UsageError(f"unknown kernel {self.kernel!r}; choose from: {', '.join(KERNELS)}")
        if not self.C > 0:
            raise UsageError(f"C must be > 0, got {self.C}")
        if self.backend != "auto":
            SVM_BACKENDS.check(self.backend)
        if self.kernel == "poly" and self.degree < 1:
            raise UsageError(f"degree must be >= 1, got {self.degree}")
        if isinstance(self.gamma, str):
            if self.gamma not in ("scale", "auto"):
                try:
                    object.__setattr__(self, "gamma", float(self.gamma))
                except ValueError:
                    raise UsageError(
                        f"gamma must be 'scale', 'auto' or a number > 0, got {self.gamma!r}"
                    ) from None
        if not isinstance(self.gamma, str) and not self.gamma > 0:
            raise UsageError(f"gamma must be > 0, got {self.gamma}")
        if self.kernel != "poly":
            # degree only matters for poly: normalise it so equal fits hash equal
            object.__setattr__(self, "degree", 0)
        _check_subset(self.train_subset)
        _check_subset(self.eval_subset)


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


def _check_subset(n: int | None) -> None:
    if n is not None and n < 10:
        raise UsageError(f"train subset must be >= 10 images (one per class), got {n}")
