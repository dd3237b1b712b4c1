"""The GPU's utilisation sampled through NVML in a thread, for benchmarks that time a whole
command: the idle share is the fraction of samples at 0 %."""

from __future__ import annotations

import threading
import time

PERIOD_S = 0.2


class GpuSampler(threading.Thread):
    def __init__(self, index: int = 0):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []  # (time.time(), utilisation %)
        self.stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle, self.nvml = pynvml.nvmlDeviceGetHandleByIndex(index), pynvml
        except Exception:  # noqa: BLE001 - no NVML (no GPU, or no pynvml): no samples
            self.handle = None

    def run(self) -> None:
        while self.handle is not None and not self.stop.is_set():
            util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            self.samples.append((time.time(), util))
            time.sleep(PERIOD_S)

    def idle_share(self) -> float | None:
        if not self.samples:
            return None
        return sum(u == 0 for _, u in self.samples) / len(self.samples)


def span(rows) -> float:
    """First claim to last result of store rows (0 when there are none)."""
    if not rows:
        return 0.0
    return max(r.finished_at for r in rows) - min(r.started_at for r in rows)
