"""Training engines: how one epoch of training is executed. The trainer (``perfstudy.train``)
owns everything else — model, optimizer, evaluation, timing, selection — so engines are
swappable without changing what a run means."""

from perfstudy.engines import cpu, fast, plain  # noqa: F401  (register the engines)
from perfstudy.engines.base import ENGINES, EpochRunner, resolve_engine

__all__ = ["ENGINES", "EpochRunner", "resolve_engine"]
