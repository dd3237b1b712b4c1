"""Training engines: how one epoch of training is executed. The trainer (``perfstudy.train``)
owns everything else — model, optimizer, evaluation, timing, selection — so engines are
swappable without changing what a run means."""

from perfstudy.engines import plain  # noqa: F401  (registers "plain")
from perfstudy.engines.base import ENGINES, EpochRunner, resolve_engine

__all__ = ["ENGINES", "EpochRunner", "resolve_engine"]
