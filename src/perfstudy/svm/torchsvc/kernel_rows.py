"""Where the SMO solver gets kernel rows from: one precomputed n x n matrix when it fits in
memory, else a cache of rows computed on demand.

Rows are indexed by the position of a training sample in the class-sorted training matrix, so
one row serves every one-vs-one pair its sample belongs to. The whole matrix (49k samples:
9.6 GB in fp32) is smaller and cheaper to compute than the 45 per-pair matrices (~17 GB),
because each class's own block appears in nine pairs.
"""

from __future__ import annotations

import os

import torch

from perfstudy.svm.torchsvc.kernels import Kernel, squared_norms

_BYTES = 4  # rows are kept in fp32
_memory_share = 1.0  # this process's share of free memory; see set_memory_share


def set_memory_share(share: float) -> None:
    """Take only ``share`` of the free memory this process sees, for ``share`` = 1/n when n
    processes fit at once: each reads the same free memory before any of them allocates."""
    global _memory_share
    if not 0 < share <= 1:
        raise ValueError(f"memory share must be in (0, 1], got {share}")
    _memory_share = share


def free_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device`` (GPU: driver's free; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class FullKernel:
    """All of K, computed once in row chunks written straight into the matrix. Row lookups are
    pure indexing, so the solver's iteration can be captured in a CUDA graph."""

    graph_safe = True

    def __init__(self, x: torch.Tensor, kernel: Kernel, tf32: bool = False, chunk: int = 4096):
        n = x.shape[0]
        self.k = torch.empty(n, n, dtype=torch.float32, device=x.device)
        x_sq = squared_norms(x)
        for r in range(0, n, chunk):
            kernel.block(x[r : r + chunk], x, b_sq=x_sq, tf32=tf32, out=self.k[r : r + chunk])
        self.rows_computed = n

    def rows(self, g: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """K[g[p], cols[p, :]] for each pair p: shape (P, L)."""
        return _take(self.k, g, cols)


class CachedRows:
    """Rows K[g, :] computed on demand and kept in a least-recently-used cache of ``slots``
    rows (libsvm's scheme, over all pairs at once). Deciding which rows are missing needs
    the host, so this source cannot be graph-captured; it is the fallback for small memory."""

    graph_safe = False

    def __init__(self, x: torch.Tensor, kernel: Kernel, slots: int, tf32: bool = False):
        n = x.shape[0]
        self.x, self.kernel, self.tf32 = x, kernel, tf32
        self.x_sq = squared_norms(x)
        self.slots = max(2, min(slots, n))
        self.buf = torch.empty(self.slots, n, dtype=torch.float32, device=x.device)
        self.slot_of = torch.full((n,), -1, dtype=torch.long, device=x.device)
        self.owner = torch.full((self.slots,), -1, dtype=torch.long, device=x.device)
        self.last_used = torch.full((self.slots,), -1, dtype=torch.long, device=x.device)
        self.clock = 0
        self.rows_computed = 0

    def rows(self, g: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        self.clock += 1
        slot = self.slot_of[g]
        hit = slot >= 0
        self.last_used[slot[hit]] = self.clock  # protect this call's hits from eviction
        missing = torch.unique(g[~hit])
        m = missing.numel()
        if m:
            if m > self.slots:
                raise RuntimeError(f"kernel row cache holds {self.slots} rows, {m} needed at once")
            victims = torch.topk(self.last_used, m, largest=False).indices
            old = self.owner[victims]
            self.slot_of[old[old >= 0]] = -1
            block = self.kernel.block(self.x[missing], self.x, b_sq=self.x_sq, tf32=self.tf32)
            self.buf.index_copy_(0, victims, block)
            self.slot_of[missing] = victims
            self.owner[victims] = missing
            self.rows_computed += m
            slot = self.slot_of[g]
        self.last_used[slot] = self.clock
        return _take(self.buf, slot, cols)


def _take(m: torch.Tensor, r: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """m[r[p], cols[p, :]] as one flat gather: 2-D advanced indexing is ~10x slower on CPU."""
    flat = (r[:, None] * m.shape[1] + cols).view(-1)
    return m.view(-1).index_select(0, flat).view(cols.shape)


def make_rows(
    x: torch.Tensor,
    kernel: Kernel,
    mode: str = "auto",
    memory_fraction: float = 0.5,
    tf32: bool = False,
) -> FullKernel | CachedRows:
    """``mode``: 'full', 'rows', or 'auto' = full when n^2 fp32 fits in ``memory_fraction`` of
    the device's free memory, else a row cache filling that budget."""
    n = x.shape[0]
    budget = int(free_memory(x.device) * memory_fraction * _memory_share)
    if mode == "auto":
        mode = "full" if n * n * _BYTES <= budget else "rows"
    if mode == "full":
        return FullKernel(x, kernel, tf32=tf32)
    if mode == "rows":
        return CachedRows(x, kernel, slots=budget // (n * _BYTES), tf32=tf32)
    raise ValueError(f"unknown kernel cache mode {mode!r}; choose from: auto, full, rows")
