"""How config values read in the report: ResNet-18, Fashion-MNIST, Adam, 0.001, GPU."""

from __future__ import annotations

from typing import Any

MODELS = {"resnet18": "ResNet-18", "resnet32": "ResNet-32", "resnet50": "ResNet-50"}
DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
KERNELS = {"rbf": "RBF", "poly": "Poly", "linear": "Linear"}
DEVICES = {"cpu": "CPU", "cuda": "GPU", "auto": "auto"}
KEYS = {"batch_size": "batch", "optimizer": "optimizer", "lr": "lr", "model": "model",
        "dataset": "dataset", "pin_memory": "pin_memory", "kernel": "kernel", "C": "C",
        "degree": "degree", "device": "device", "epochs": "epochs"}


def model(name: str) -> str:
    return MODELS.get(name, name)


def dataset(name: str) -> str:
    return DATASETS.get(name, name)


def value(key: str, v: Any) -> str:
    """One config value as a table cell shows it."""
    if v is None:
        return "–"
    if key == "model":
        return model(v)
    if key == "dataset":
        return dataset(v)
    if key == "optimizer":
        return OPTIMIZERS.get(v, v)
    if key == "kernel":
        return KERNELS.get(v, v)
    if key == "device":
        return DEVICES.get(v, v)
    if key == "degree" and v == 0:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def setting(key: str, v: Any) -> str:
    """``lr 0.001``, ``batch 16``, ``Adam``, ``ResNet-50``: a value named in a sentence."""
    if key in ("model", "optimizer", "dataset", "device"):
        return value(key, v)
    if key == "kernel_degree":
        return v
    return f"{KEYS.get(key, key)} {value(key, v)}"


def config(cfg: dict, keys: list[str]) -> str:
    """A configuration in a sentence: ``ResNet-50 · Adam · lr 0.001 · batch 16``."""
    return " · ".join(setting(k, cfg.get(k)) for k in keys) or "the only configuration"
