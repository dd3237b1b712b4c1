"""Training engines: how one epoch of training is executed. The trainer (``dl.loop``) owns
everything else - model, optimizer, evaluation, timing, selection - so engines are swappable
without changing what a run means. ``config.ENGINES`` names them: ``plain`` (a DataLoader loop
as a notebook writes it), ``fast`` (data resident on the GPU, the step replayed as a CUDA graph)
and ``cpu`` (the fast engine's eager step with what pays on a CPU). ``fused`` trains several
runs as one model, for packs (``dl.packing``)."""

from perfstudy.dl.engines.base import EngineSetup, Prepare, resolve_engine

__all__ = ["EngineSetup", "Prepare", "resolve_engine"]
