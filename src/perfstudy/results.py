"""What a run measured. Trainers return a ``RunResult``; they never print or touch the store."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


def json_safe(o: Any) -> Any:
    """JSON has no NaN/inf: they become null rather than invalid JSON (SQLite's json
    functions and other readers refuse ``NaN``)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o


def dumps(o: Any, **kw) -> str:
    """``json.dumps`` of :func:`json_safe` ``o``: always valid JSON."""
    return json.dumps(json_safe(o), allow_nan=False, default=str, **kw)


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy over the epoch's training images
    val_acc: float  # percent
    seconds: float  # training wall time of this epoch (device synchronised, data loading in)


@dataclass
class RunResult:
    """One finished run. Accuracies are percentages; times are milliseconds.

    DL: ``test_acc`` is the test accuracy of the weights from the epoch with the best
    validation accuracy (``best_epoch``); ``test_acc_last`` that of the last epoch's weights.
    The test split is never used for selection.
    SVM: ``train_ms`` is the fit time, ``eval_ms`` the prediction time for val + test.
    FLOPs: no accuracy or time; the counts are in ``extra``.
    """

    kind: str
    config: dict[str, Any]
    test_acc: float | None = None
    val_acc: float | None = None
    train_ms: float | None = None
    eval_ms: float | None = None
    test_acc_last: float | None = None
    best_epoch: int | None = None
    images_per_s: float | None = None  # training images per second of train_ms
    peak_mem_mb: float | None = None  # peak device memory (CUDA) or process RSS (CPU)
    setup_ms: float | None = None  # untimed warm-up / graph capture / compilation, kept apart
    n_support: int | None = None
    curve: list[EpochStats] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # engine, backend, not-applicable notes
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        d = dict(d)
        d["curve"] = [EpochStats(**e) for e in d.get("curve", [])]
        return cls(**d)
