"""One flat row per stored run: config keys, status and metrics side by side. Used by
``perfstudy runs`` and by the report's ``results.csv`` (one definition of the columns)."""

from __future__ import annotations

from typing import Any

METRICS = (
    "test_acc", "test_acc_last", "val_acc", "best_epoch", "train_ms", "eval_ms",
    "images_per_s", "peak_mem_mb", "setup_ms", "n_support",
)
EXTRA = ("engine", "backend", "pack_size", "predict_test_ms", "n_train", "n_test",
         "macs", "flops", "train_flops", "params")


def flatten(row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": row.key,
        "experiments": " ".join(row.experiments),
        "status": row.status,
        **row.config,
    }
    r = row.result
    for m in METRICS:
        out[m] = getattr(r, m) if r else None
    for m in EXTRA:
        out[m] = r.extra.get(m) if r else None
    out["device_name"] = r.provenance.get("device_name") if r else None
    out["seconds"] = row.seconds
    out["error"] = row.error.splitlines()[0] if row.error else None
    return out


def columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def varying(rows: list[dict[str, Any]], keep: tuple[str, ...] = ("key", "status")) -> list[str]:
    """Columns whose value differs between rows (plus ``keep``): what a table should show."""
    cols = columns(rows)
    return [c for c in cols
            if c in keep or len({repr(r.get(c)) for r in rows}) > 1
            or (len(rows) == 1 and rows[0].get(c) is not None)]
