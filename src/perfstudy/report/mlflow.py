"""Export the stored runs to MLflow (optional extra: ``pip install 'perfstudy[mlflow]'``).

Every done run becomes one MLflow run: its config as params, its measurements as metrics,
its per-epoch curve as metric steps (``val_acc``, ``train_loss``, ``epoch_seconds`` at
step = epoch) and its provenance as tags. Each MLflow run is tagged with the perfstudy run key,
and keys already exported (finished) are skipped, so exporting twice logs nothing twice; an
export cut short leaves its half-logged run unfinished, and the next export replaces it.

mlflow is imported only when an export runs, so perfstudy imports without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perfstudy.errors import UsageError
from perfstudy.study.flat import METRICS
from perfstudy.study.store import Row, Store

KEY_TAG = "perfstudy.key"
# Per-epoch curves are logged under these names; the best validation accuracy (a single
# number) is ``best_val_acc`` so it does not collide with the ``val_acc`` curve.
SUMMARY_RENAME = {"val_acc": "best_val_acc"}
BATCH = 100  # well under MLflow's limits per log_batch call (1000 metrics, 100 params/tags)


@dataclass
class Exported:
    experiment: str
    logged: int
    skipped: int
    replaced: int


def _mlflow():
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("MLflow export needs mlflow, which is not installed: "
                         "pip install 'perfstudy[mlflow]'") from None
    return MlflowClient, Metric, Param, RunTag


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def run_name(row: Row) -> str:
    c = row.config
    parts = [" ".join(row.experiments)]
    for k in ("model", "variant", "dataset", "kernel", "optimizer", "device"):
        if k in c and c[k] not in (None, "auto", "native"):
            parts.append(str(c[k]))
    for k, short in (("lr", "lr"), ("batch_size", "bs"), ("C", "C"), ("degree", "d"),
                     ("seed", "seed")):
        if k in c and not (k == "degree" and c.get("kernel") != "poly"):
            parts.append(f"{short}={c[k]:g}" if isinstance(c[k], float) else f"{short}={c[k]}")
    return " ".join(p for p in parts if p)


def metrics_of(row: Row) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step) for the run's summary metrics and curves."""
    r = row.result
    end = int((row.finished_at or 0) * 1000)
    out = []
    for m in METRICS:
        v = _number(getattr(r, m))
        if v is not None:
            out.append((SUMMARY_RENAME.get(m, m), v, end, 0))
    for k, v in r.extra.items():
        v = _number(v)
        if v is not None and k not in METRICS:
            out.append((k, v, end, 0))
    t = int((row.started_at or 0) * 1000)
    for e in r.curve:
        t += int(e.seconds * 1000)
        out += [("val_acc", float(e.val_acc), t, e.epoch),
                ("train_loss", float(e.train_loss), t, e.epoch),
                ("epoch_seconds", float(e.seconds), t, e.epoch)]
    return out


def tags_of(row: Row, study: str | None) -> dict[str, str]:
    r = row.result
    tags = {KEY_TAG: row.key, "perfstudy.kind": row.kind,
            "perfstudy.experiments": " ".join(row.experiments)}
    if study:
        tags["perfstudy.study"] = study
    for k, v in r.provenance.items():
        if v is not None:
            tags[f"provenance.{k}"] = str(v)
    for k, v in r.extra.items():
        if v is not None and _number(v) is None:
            tags[f"extra.{k}"] = str(v)
    if r.provenance.get("git_commit"):
        tags["mlflow.source.git.commit"] = str(r.provenance["git_commit"])
    return tags


def _existing(client, experiment_id: str) -> dict[str, list]:
    """perfstudy key -> MLflow runs already carrying it (active runs only)."""
    found: dict[str, list] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            key = run.data.tags.get(KEY_TAG)
            if key:
                found.setdefault(key, []).append(run)
        token = page.token
        if not token:
            return found


# the tracking stores MLflow 2-3 accept; anything else fails deep inside MLflow
SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def export(db: str, tracking_uri: str, experiment: str | None = None,
           study: str | None = None) -> Exported:
    MlflowClient, Metric, Param, RunTag = _mlflow()
    store = Store(db, create=False)
    try:
        studies = [study] if study else store.studies()
        if study and study not in store.studies():
            raise UsageError(f"{db}: no study {study!r} stored (studies: "
                             f"{', '.join(store.studies()) or 'none'})")
        rows: dict[str, tuple[Row, str]] = {}
        for s in studies:
            for r in store.rows(study=s, status="done"):
                rows.setdefault(r.key, (r, s))
    finally:
        store.close()
    name = experiment or (studies[0] if len(studies) == 1 else "perfstudy")
    scheme = tracking_uri.partition("://")[0] if "://" in tracking_uri else ""
    if scheme not in SCHEMES:
        raise UsageError(f"--tracking-uri {tracking_uri}: MLflow stores runs at "
                         f"{', '.join(s + '://' for s in SCHEMES if s)} URIs or in a folder")
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else client.create_experiment(name)
    except Exception as e:  # noqa: BLE001 - MLflow's own errors (unreachable server, bad URI)
        raise UsageError(f"--tracking-uri {tracking_uri}: MLflow refused it: "
                         f"{' '.join(str(e).split())[:300]}") from None
    existing = _existing(client, exp_id)
    logged = skipped = replaced = 0
    for key, (row, s) in rows.items():
        runs = existing.get(key, [])
        if any(r.info.status == "FINISHED" for r in runs):
            skipped += 1
            continue
        for r in runs:  # cut short by an earlier export: replace it
            client.delete_run(r.info.run_id)
            replaced += 1
        _log(client, exp_id, row, s, Metric, Param, RunTag)
        logged += 1
    return Exported(name, logged, skipped, replaced)


def _log(client, exp_id: str, row: Row, study: str, Metric, Param, RunTag) -> None:
    name = run_name(row)
    tags = tags_of(row, study)
    run = client.create_run(exp_id, start_time=int((row.started_at or 0) * 1000) or None,
                            tags={KEY_TAG: row.key}, run_name=name)
    run_id = run.info.run_id
    params = [Param(k, str(v)) for k, v in sorted(row.config.items())]
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in metrics_of(row)]
    tag_list = [RunTag(k, v) for k, v in tags.items() if k != KEY_TAG]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i:i + BATCH])
    for i in range(0, len(tag_list), BATCH):
        client.log_batch(run_id, tags=tag_list[i:i + BATCH])
    for i in range(0, len(metrics), BATCH * 5):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH * 5])
    client.set_terminated(run_id, "FINISHED",
                          end_time=int((row.finished_at or 0) * 1000) or None)
