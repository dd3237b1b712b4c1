"""perfstudy from Python: the calls a notebook or a script uses (``perfstudy.<name>``).

>>> import perfstudy
>>> study = perfstudy.load_study("studies/quick.yaml", only=["flops"])
>>> outcome = perfstudy.run(study, db="quick.db")
>>> df = perfstudy.read_results("quick.db")           # one row per run (pandas)
>>> perfstudy.write_report("quick.db", out="report")  # report.md, report.html, results.csv

Everything else in the package is internal and may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfstudy.results import RunResult


def load_study(path: str | Path, overrides: dict[str, Any] | None = None,
               only: list[str] | None = None):
    """A study file, validated and ready to run.

    >>> study = perfstudy.load_study("studies/seed.yaml", overrides={"epochs": 1}, only=["q2"])
    >>> len(study.runs())
    12
    """
    from perfstudy.study.spec import load

    return load(path, overrides=overrides, only=only)


@dataclass
class Outcome:
    """What :func:`run` did: runs done and failed by this call, and the store's totals."""

    done: int
    failed: int
    skipped: int  # done before (or failed before, without retry_failed)
    waiting_for_gpu: int  # CUDA runs this machine cannot train, left pending
    total: int
    db: str


def run(study, db: str | Path = "perfstudy.db", executor: str = "local", *,
        filters: dict[str, Any] | None = None, retry_failed: bool = False,
        data_dir: str | Path | None = None, progress: bool = True, **options) -> Outcome:
    """Run a study (or a study file's path): every run not yet done in ``db``, stored as it ends.

    ``executor``: ``local``, ``pool`` or ``ray``; ``options`` are its own (``pack``,
    ``compile``, ``workers``, ``address``, ``cpus_per_run``, ``checkpoint_every_s``).
    ``filters``: keep runs whose config has every ``key=value``.

    >>> outcome = perfstudy.run("studies/quick.yaml", db="quick.db", filters={"kind": "flops"})
    >>> outcome.done
    6
    """
    from perfstudy.progress import progress_bars, wanted
    from perfstudy.study.executors import execute_plan, make
    from perfstudy.study.plan import find_data, plan
    from perfstudy.study.spec import filter_runs
    from perfstudy.study.store import Store

    study = study if hasattr(study, "runs") else load_study(study)
    runs = filter_runs(study.runs(), filters or {})
    ex = make(executor, **options)
    store = Store(db)
    try:
        p = plan(study, runs, store, retry_failed=retry_failed, cuda=ex.cuda_available())
        find_data(p.todo, data_dir)
        with progress_bars(wanted(not progress)) as bars:
            out = execute_plan(p, store, ex, data_dir=data_dir, progress=bars)
    finally:
        ex.close()
        store.close()
    return Outcome(out.done, out.failed, len(p.done) + len(p.failed), len(p.need_gpu), p.total,
                   str(db))


def read_results(db: str | Path = "perfstudy.db", study: str | None = None):
    """The stored runs as a pandas DataFrame, one row per run: its config, status and what it
    measured (the columns of ``perfstudy runs``); ``pip install pandas`` for it.

    >>> df = perfstudy.read_results("quick.db")
    >>> df[df.status == "done"].groupby("model").test_acc.max()
    """
    try:
        import pandas as pd
    except ImportError:
        from perfstudy.errors import UsageError

        raise UsageError("perfstudy.read_results needs pandas: pip install 'perfstudy[pandas]'") \
            from None
    from perfstudy.study.flat import flatten
    from perfstudy.study.store import Store

    store = Store(db, create=False)
    try:
        return pd.DataFrame([flatten(r) for r in store.rows(study=study)])
    finally:
        store.close()


def write_report(db: str | Path = "perfstudy.db", out: str | Path = "report",
                 study: str | None = None) -> Path:
    """Write report.md, report.html, results.csv and figures into ``out``; the HTML's path.

    >>> html = perfstudy.write_report("quick.db", out="report")
    """
    from perfstudy import report

    return report.write_report(db, out, study=study).files[1]


def train(**settings) -> RunResult:
    """Train one deep-learning run (``DLConfig``'s settings) and return what it measured.

    >>> r = perfstudy.train(model="resnet32", dataset="mnist", epochs=1, train_subset=500)
    >>> r.test_acc, r.train_ms
    """
    from perfstudy.config import DLConfig
    from perfstudy.dl.train import train_dl

    data_dir = settings.pop("data_dir", None)
    return train_dl(DLConfig(**settings), data_dir=data_dir)


def fit_svm(**settings) -> RunResult:
    """Fit one SVM (``SVMConfig``'s settings) and return what it measured.

    >>> r = perfstudy.fit_svm(kernel="rbf", C=10, train_subset=2000)
    >>> r.test_acc, r.n_support
    """
    from perfstudy.config import SVMConfig
    from perfstudy.svm.fit import fit_svm as fit

    data_dir = settings.pop("data_dir", None)
    return fit(SVMConfig(**settings), data_dir=data_dir)


def count_flops(model: str, variant: str = "native", input: str | None = None) -> dict:
    """MACs, FLOPs (= 2 x MACs), training FLOPs and parameters of one image's forward pass.

    >>> perfstudy.count_flops("resnet18", "imagenet")["gmacs"]
    1.8136...
    """
    from perfstudy.config import parse_input
    from perfstudy.dl import flops

    return flops.count(model, variant, parse_input(input) if input else None).to_dict()


def register_model(name: str, builder) -> None:
    """Make a model of your own available to runs and study files of this process.

    ``builder(large_stem, num_classes, in_channels)`` returns the network: it takes
    ``(B, in_channels, H, W)`` (28x28, or 224x224 for ``variant: imagenet``, where
    ``large_stem`` asks for an ImageNet-style stem) and returns ``(B, num_classes)`` logits.
    Such runs train alone, not packed.

    >>> def tiny(large_stem, num_classes, in_channels):
    ...     return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))
    >>> perfstudy.register_model("tiny", tiny)
    """
    from perfstudy.config import MODELS

    MODELS.register(name, builder)


def list_models() -> list[str]:
    """The names a run's ``model`` may take (built in, and registered in this process)."""
    from perfstudy.config import MODELS

    return MODELS.names()


def register_dataset(name: str, load) -> None:
    """Make a dataset of your own available to runs and study files of this process.

    ``load()`` returns ``(images, labels)``: uint8 ``(N, 28, 28)`` and integer ``(N,)`` class
    numbers 0-9, all the images, which are split 70/10/20 as MNIST's are.

    >>> perfstudy.register_dataset("digits8", lambda: (images, labels))
    """
    from perfstudy import data

    data.register(name, load)


def list_datasets() -> list[str]:
    from perfstudy.config import DATASETS

    return list(DATASETS)
