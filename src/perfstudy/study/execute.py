"""From claimed runs to stored results: the one place where a unit (a run, or a pack of runs
that train together on a GPU) is trained and its outcome recorded in the store.

``train_unit`` trains and returns results without touching the store (any process may run it);
``run_unit`` claims the runs in the store, trains them in this process and records the outcome:
done with its result, failed with its error (the study goes on), or interrupted.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence

from perfstudy.dl.checkpoint import Checkpoint, checkpoint_path
from perfstudy.registry import Registry
from perfstudy.results import RunResult
from perfstudy.study.spec import Run
from perfstudy.study.store import Store

# config kind -> trainer(cfg, data_dir=, progress=, **options) -> RunResult
TRAINERS: Registry = Registry("run kind", {
    "dl": "perfstudy.dl.train:train_dl",
    "svm": "perfstudy.svm.fit:fit_svm",
    "flops": "perfstudy.dl.flops:flops_result",
})
INTERRUPTED = "interrupted by the user (Ctrl-C or SIGTERM)"


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop after marking the current runs interrupted."""


def train_unit(cfgs: Sequence, data_dir=None, progress=None, *, compile: bool = False,
               checkpoint=None, checkpoint_every_s: float | None = None) -> list[RunResult]:
    """Train one unit: one config alone (any kind), or several DL configs as one GPU pack.
    ``checkpoint``: the file deep-learning training saves its state to and resumes from."""
    options = {} if checkpoint_every_s is None else {"checkpoint_every_s": checkpoint_every_s}
    if len(cfgs) > 1:
        from perfstudy.dl.packing import train_pack

        return train_pack(cfgs, data_dir, progress, compile=compile, checkpoint=checkpoint,
                          **options)
    (cfg,) = cfgs
    if cfg.kind != "dl":
        options = {}
    elif checkpoint is not None:
        options["checkpoint"] = checkpoint
    return [TRAINERS.get(cfg.kind)(cfg, data_dir=data_dir, progress=progress, **options)]


def checkpoint_of(store: Store, runs: Sequence[Run]) -> str | None:
    """Where a deep-learning unit checkpoints: beside the store, one file per run or pack."""
    if runs[0].config.kind != "dl":
        return None
    return str(checkpoint_path(store.path, [r.key for r in runs]))


def run_unit(unit: Sequence[Run], store: Store, data_dir=None, progress=None, *,
             compile: bool = False, checkpoint_every_s: float | None = None) -> list[str]:
    """Claim, train and record one unit in this process; each run's final status (``skipped``:
    done or running elsewhere). A pack of which only one run could be claimed trains alone."""
    claimed = [r for r in unit if store.claim(r.key)]
    status = {r.key: "skipped" for r in unit}
    if claimed:
        status.update(record(claimed, store, lambda ckpt: train_unit(
            [r.config for r in claimed], data_dir, progress, compile=compile, checkpoint=ckpt,
            checkpoint_every_s=checkpoint_every_s)))
    return [status[r.key] for r in unit]


def record(claimed: Sequence[Run], store: Store, train) -> dict[str, str]:
    """Run ``train(checkpoint)`` for runs this process has claimed and store its outcome."""
    try:
        results = train(checkpoint_of(store, claimed))
    except (KeyboardInterrupt, Interrupted):
        fail_unit(store, claimed, INTERRUPTED, status="interrupted")
        raise
    except Exception as exc:  # a failed unit is stored and the study goes on
        _release_gpu_memory()
        return fail_unit(store, claimed, error_text(exc))
    return finish_unit(store, claimed, results)


def finish_unit(store: Store, claimed: Sequence[Run], results) -> dict[str, str]:
    """Store the results of claimed runs; their checkpoint goes once they are stored (a
    failed or killed unit keeps it)."""
    for r, result in zip(claimed, results, strict=True):
        store.finish(r.key, result)
    ckpt = checkpoint_of(store, claimed)
    if ckpt is not None:
        Checkpoint(ckpt).remove()
    return {r.key: "done" for r in claimed}


def fail_unit(store: Store, claimed: Sequence[Run], error: str,
              status: str = "failed") -> dict[str, str]:
    for r in claimed:
        store.fail(r.key, error, status=status)
    return {r.key: status for r in claimed}


def error_text(exc: BaseException) -> str:
    """First line: what went wrong; then the traceback's last frames, for the store."""
    tb = "".join(traceback.format_exception(exc)[-6:])
    return f"{type(exc).__name__}: {exc}\n{tb}"


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
