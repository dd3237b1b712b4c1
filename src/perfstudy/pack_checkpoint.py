"""A pack's training state saved between epochs, so that a crash costs minutes, not the pack.

A pack trains its runs together and stores them only when all are done; on an H200 a pack of 8
ResNet-50s at batch 16 takes about 8.6 minutes, which a crash (a killed process, a lost
machine) would otherwise throw away: its runs go back to pending and start from scratch. So
every ``every_s`` seconds, at the end of an epoch, ``packing.train_pack`` writes what the next
epoch needs (stacked weights, BatchNorm statistics, optimizer state, each trial's data
generator, the curves and best-validation weights so far, the time spent) to one file beside the
results store; a pack started again with the same runs and grouping resumes after that epoch.
The file is written whole and then renamed over the old one, so a crash mid-write leaves the
previous checkpoint intact; the executor deletes it once the pack's results are stored.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

FORMAT = 1
# at most this much training (plus one epoch) is lost in a crash; each save writes the pack's
# weights and optimizer state (a pack of 8 ResNet-50s: ~2 GB) - measured in docs/performance.md
CHECKPOINT_EVERY_S = 120.0


def checkpoint_path(db_path: str | Path, keys: Sequence[str]) -> Path:
    """Where the checkpoint of the pack of these runs lives: ``<db>.checkpoints/pack-<hash>.pt``."""
    digest = hashlib.sha256(",".join(keys).encode()).hexdigest()[:16]
    return Path(f"{db_path}.checkpoints") / f"pack-{digest}.pt"


class PackCheckpoint:
    def __init__(self, path: str | Path, every_s: float = CHECKPOINT_EVERY_S):
        self.path, self.every_s = Path(path), every_s
        self._last = time.perf_counter()

    def load(self, signature: dict) -> dict | None:
        """The saved state if there is one for this ``signature`` (same runs, same grouping),
        else None: a missing, torn or foreign file means starting afresh."""
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

    def due(self) -> bool:
        return time.perf_counter() - self._last >= self.every_s

    def save(self, state: dict) -> None:
        """Write ``state`` whole to a temporary file, then rename it over the checkpoint."""
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"format": FORMAT, **state}, tmp)
        os.replace(tmp, self.path)
        self._last = time.perf_counter()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()  # only if no other pack's checkpoint is there
        except OSError:
            pass
