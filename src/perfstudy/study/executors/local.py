"""The local executor: one unit (a run, or on a GPU a pack of runs) at a time, in this process."""

from __future__ import annotations

from perfstudy.progress import NullProgress
from perfstudy.study.execute import run_unit
from perfstudy.study.executors import Executor, Outcome
from perfstudy.study.schedule import gpu_free_bytes, units
from perfstudy.study.store import Store


class LocalExecutor(Executor):
    def __init__(self, workers: int | None = 1, pack: int | str | None = None,
                 compile: bool = False, checkpoint_every_s: float | None = None):
        self.pack, self.compile, self.checkpoint_every_s = pack, compile, checkpoint_every_s

    def execute(self, runs, store: Store, data_dir, progress=None) -> Outcome:
        progress = progress or NullProgress()
        out = Outcome(total=len(runs))
        bar = progress.add("runs", total=len(runs))
        for unit in units(runs, self.pack, gpu_free_bytes() if runs else None):
            progress.update(bar, description=f"runs · {unit[0].experiment}"
                            + (f" · pack of {len(unit)}" if len(unit) > 1 else ""))
            out.count(run_unit(unit, store, data_dir, progress, compile=self.compile,
                               checkpoint_every_s=self.checkpoint_every_s), unit, progress)
            progress.advance(bar, len(unit))
        progress.remove(bar)
        return out
