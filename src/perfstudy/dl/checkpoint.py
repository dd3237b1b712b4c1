"""Training state saved between epochs, so that a crash costs minutes, not the run.

A run is stored only when it is done, and some take long (a pack of ResNet-50s minutes on an
H200, a ResNet run of the seed's grid hours on a laptop's CPU). So every ``every_s`` seconds,
at the end of an epoch, the epoch loop (``dl.loop``) writes what the next epoch needs to one
file beside the results store, and the same run or pack started again resumes after that
epoch. The file is written whole and then renamed over the old one, so a crash mid-write leaves
the previous checkpoint intact; the executor deletes it once the results are stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

FORMAT = 2  # 2: the trainee's state and the loop's, under "trainee" and "loop"
# at most this much training (plus one epoch) is lost in a crash; each save costs seconds for a
# pack (docs/performance.md measures it)
CHECKPOINT_EVERY_S = 120.0


def checkpoint_path(db_path: str | Path, keys: Sequence[str]) -> Path:
    """Where the checkpoint of these runs (one run, or a pack) lives:
    ``<db>.checkpoints/<hash of their keys>.pt``."""
    digest = hashlib.sha256(",".join(keys).encode()).hexdigest()[:16]
    return Path(f"{db_path}.checkpoints") / f"{digest}.pt"


NO_CHECKPOINT = {"checkpoint_every_s": None, "checkpoint_saves": 0, "checkpoint_ms": 0.0}


def curve_to_host(curve) -> list[dict]:
    """A run's ``EpochStats`` so far, as plain values (:func:`curve_from_host` reads them)."""
    return [dataclasses.asdict(e) for e in curve]


def curve_from_host(saved: list[dict]) -> list:
    from perfstudy.results import EpochStats

    return [EpochStats(**e) for e in saved]


class Checkpoint:
    def __init__(self, path: str | Path, every_s: float = CHECKPOINT_EVERY_S):
        self.path, self.every_s = Path(path), every_s
        self._last = self._asked = time.perf_counter()
        self.saves, self.save_ms = 0, 0.0  # in this process
        self.failed: list[str] = []  # saves that could not be written (a full disk, say)

    def load(self, signature: dict) -> dict | None:
        """The saved state if there is one for this ``signature`` (same runs, same engine or
        grouping), else None: a missing, torn or foreign file means starting afresh."""
        import torch  # not at import: the command line starts without torch

        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - unreadable: train from the start, overwrite later
            return None
        if state.get("format") != FORMAT or state.get("signature") != signature:
            return None
        return state

    def wants(self, epoch: int, epochs: int) -> bool:
        """Whether to save after ``epoch``: ``every_s`` has passed since the last save, and it
        is not the last epoch (whose results are stored next)."""
        self._asked = time.perf_counter()
        return epoch < epochs and self._asked - self._last >= self.every_s

    def notes(self) -> dict:
        """For a result's ``extra``: how often it saved and what that cost."""
        notes = {"checkpoint_every_s": self.every_s, "checkpoint_saves": self.saves,
                 "checkpoint_ms": self.save_ms}
        if self.failed:
            notes["checkpoint_failures"] = self.failed
        return notes

    def save(self, state: dict) -> None:
        """Write ``state`` whole to a temporary file, then rename it over the checkpoint. Timed
        from :meth:`wants`, so that making ``state`` (copies to the host) counts too."""
        import torch

        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"format": FORMAT, **state}, tmp)
            os.replace(tmp, self.path)
        except (OSError, RuntimeError) as e:  # no room: train on, the last good file stays
            tmp.unlink(missing_ok=True)
            self.failed.append(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
            self._last = time.perf_counter()
            return
        self._last = time.perf_counter()
        self.saves += 1
        self.save_ms += (self._last - self._asked) * 1e3

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()  # only if no other run's or pack's checkpoint is there
        except OSError:
            pass
