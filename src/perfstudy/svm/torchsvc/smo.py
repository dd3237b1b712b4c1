"""libsvm's C-SVC solver, batched over one-vs-one pairs.

Each pair p solves libsvm's dual: min 1/2 a'Qa - e'a, 0 <= a <= C, y'a = 0, Q_st = y_s y_t K_st.
All pairs advance together as (P, L) tensors, padded to the longest pair with masked entries, so
an iteration is a fixed sequence of about seventy small tensor ops whatever the number of pairs. An
iteration is libsvm's: second-order working-set selection (WSS2, Fan, Chen & Lin 2005), the
analytic two-variable step clipped to the box, and the gradient update from two kernel rows.
A pair stops exactly where libsvm stops it, at the first iteration where its maximal-violating-
pair gap m(a) - M(a) is below tol; the step is then masked to zero, on the device, so the host
only looks every ``check_every`` iterations (it would stall the GPU queue every iteration).

Notation: F = -y * grad (libsvm's -y_t G_t), so I_up's maximum of F is m(a) and I_low's minimum
is M(a). I_up / I_low membership is kept as additive penalties (0 or +inf) updated at the two
touched entries only, instead of recomputed over all (P, L) entries each iteration.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

TAU = 1e-12  # libsvm's floor for a non-positive curvature K_ii + K_jj - 2 K_ij
INF = float("inf")


def libsvm_max_iter(n_samples: int) -> int:
    """libsvm's own iteration cap when the caller sets none (max_iter = -1)."""
    return max(10_000_000, 100 * n_samples)


@dataclass
class Solution:
    alpha: torch.Tensor  # (P, L) dual coefficients, 0 on padding
    rho: torch.Tensor  # (P,) libsvm's rho: decision = sum_t alpha_t y_t K(x_t, x) - rho
    n_iter: torch.Tensor  # (P,) iterations each pair ran
    gap: torch.Tensor  # (P,) m(a) - M(a) at the end (< tol when converged)


class _Batch:
    """The solver's state for the pairs still running, plus one captured or eager iteration."""

    def __init__(self, rows, cols, y, valid, diag, C, tol, dtype):
        self.rows, self.cols, self.tol = rows, cols, tol
        self.y = y.to(dtype)
        P, L = cols.shape
        dev = cols.device
        # bounds as tensors of the state's dtype: a python C would round to fp32 in torch.where
        self.C = torch.tensor(C, dtype=dtype, device=dev)
        self.zero = torch.zeros((), dtype=dtype, device=dev)
        self.inf = torch.tensor(INF, dtype=dtype, device=dev)
        self.dirs = torch.tensor([[1.0, -1.0]], dtype=dtype, device=dev)  # i moves +y, j -y
        self.alpha = torch.zeros(P, L, dtype=dtype, device=dev)
        # a = 0: grad = -e, so F = -y * grad = y
        self.F = self.y.clone()
        self.D = diag[cols].to(dtype)
        pos, neg = (self.y > 0) & valid, (self.y < 0) & valid
        # at a = 0: I_up = {y = +1}, I_low = {y = -1}
        self.up_pen = torch.where(pos, self.zero, self.inf)
        self.low_pen = torch.where(neg, self.zero, self.inf)
        self.n_iter = torch.zeros(P, dtype=torch.long, device=dev)
        self.gap = torch.full((P,), INF, dtype=dtype, device=dev)
        self.active = torch.ones(P, dtype=torch.bool, device=dev)
        self.arange = torch.arange(L, dtype=torch.int32, device=dev)

    def fields(self):
        return ("cols", "y", "alpha", "F", "D", "up_pen", "low_pen", "n_iter", "gap", "active")

    def keep(self, idx: torch.Tensor) -> None:
        """Drop the pairs not in ``idx`` (done ones), so later iterations cost less."""
        for name in self.fields():
            setattr(self, name, getattr(self, name)[idx])

    def _last_best(self, v: torch.Tensor):
        """(max value, its last index) per row. libsvm keeps the last of equal candidates (its
        loops test >= and <=), which at a = 0, where all of a class tie, decides the path;
        torch's argmax keeps the first, and on CPU is a scalar loop slower than these ops."""
        best = v.amax(1, keepdim=True)
        idx = torch.where(v == best, self.arange, -1).amax(1, keepdim=True)
        return best, idx.long()

    def _row(self, idx: torch.Tensor) -> torch.Tensor:
        """Kernel row of each pair's member ``idx`` (P, 1) against all its members: (P, L)."""
        return self.rows.rows(self.cols.gather(1, idx)[:, 0], self.cols).to(self.F.dtype)

    def step(self) -> None:
        F, C, zero, inf = self.F, self.C, self.zero, self.inf
        # working set, first index: i = argmax_{I_up} F; gap = max_{I_up} F - min_{I_low} F
        gmax, i = self._last_best(F - self.up_pen)
        fmin = (F + self.low_pen).amin(dim=1, keepdim=True)
        torch.sub(gmax, fmin, out=self.gap[:, None])
        active = self.gap[:, None] >= self.tol
        self.active.copy_(active[:, 0])
        ki = self._row(i)
        # second index (WSS2): j = argmax_{t in I_low, b_t > 0} b_t^2 / a_t, a_t the curvature
        # K_ii + K_tt - 2 K_it, floored at TAU (libsvm takes TAU for a_t <= 0; the two differ
        # only for 0 < a_t < 1e-12, where the step is clipped to the box either way)
        b = gmax - F
        a = torch.add(self.D, ki, alpha=-2.0).add_(self.D.gather(1, i)).clamp_(min=TAU)
        gain = b.clamp(min=0.0).square_().div_(a).sub_(self.low_pen)
        _, j = self._last_best(gain)
        kj = self._row(j)
        # the step: a_i += y_i lam, a_j -= y_j lam (keeps y'a = 0), lam = b_j / a_j clipped to
        # the box; both variables handled as one (P, 2) tensor, d their direction of motion
        ij = torch.cat([i, j], dim=1)
        y2, a2 = self.y.gather(1, ij), self.alpha.gather(1, ij)
        d = y2 * self.dirs
        room = torch.where(d > 0, C - a2, a2)
        lam = torch.minimum(b.gather(1, j) / a.gather(1, j), room.amin(dim=1, keepdim=True))
        lam = torch.where(active, lam, zero)
        # a variable that reaches its bound is set to it exactly, as libsvm does
        new = torch.where(active & (lam == room), torch.where(d > 0, C, zero), a2 + d * lam)
        self.alpha.scatter_(1, ij, new)
        # grad_t += y_t lam (K_ti - K_tj)  <=>  F_t += lam (K_tj - K_ti)
        F.addcmul_(kj.sub_(ki), lam)
        # I_up: y=+1 & a<C, or y=-1 & a>0; I_low: y=+1 & a>0, or y=-1 & a<C
        pos, below_c, above_0 = y2 > 0, new < C, new > 0
        self.up_pen.scatter_(1, ij, torch.where(torch.where(pos, below_c, above_0), zero, inf))
        self.low_pen.scatter_(1, ij, torch.where(torch.where(pos, above_0, below_c), zero, inf))
        self.n_iter.add_(active[:, 0])


def solve(
    rows,
    cols: torch.Tensor,
    y: torch.Tensor,
    valid: torch.Tensor,
    diag: torch.Tensor,
    C: float,
    tol: float = 1e-3,
    max_iter: int = -1,
    dtype: torch.dtype = torch.float64,
    check_every: int | None = None,
    cuda_graph: bool | None = None,
    shrink_below: float = 0.5,
) -> Solution:
    """Solve the P binary problems whose members are ``cols`` (P, L) (row positions into the
    kernel source ``rows``), labels ``y`` (+1/-1, any value on padding) and ``valid`` mask.

    ``dtype`` is the precision of alpha and the gradient (libsvm: float64); kernel rows are
    fp32. Every ``check_every`` iterations the host checks for the end and drops finished pairs
    once fewer than ``shrink_below`` of the batch still run. ``cuda_graph`` (default: on CUDA
    with a graph-safe row source) replays ``check_every`` iterations as one CUDA graph, which
    removes the per-op launch cost that dominates these small ops.
    """
    P, L = cols.shape
    dev = cols.device
    if max_iter is None or max_iter < 0:
        max_iter = libsvm_max_iter(int(valid.sum(1).max()))
    if cuda_graph is None:
        cuda_graph = dev.type == "cuda" and rows.graph_safe
    if check_every is None:
        check_every = 50 if dev.type == "cuda" else 10
    batch = _Batch(rows, cols, y, valid, diag, C, tol, dtype)
    out = _Finished(P, L, dtype, dev)
    ids = _iterate(batch, out, check_every, cuda_graph, max_iter, shrink_below)
    out.take(batch, ids, torch.ones(len(ids), dtype=torch.bool, device=dev))
    y = y.to(dtype)
    return Solution(alpha=out.alpha, rho=_rho(out.alpha, out.F, y, valid, C),
                    n_iter=out.n_iter, gap=out.gap)


class _Finished:
    """Each pair's final alpha, gradient, iterations and gap, taken from the batch as pairs
    finish (finished pairs are dropped from the batch)."""

    def __init__(self, P: int, L: int, dtype, dev):
        self.alpha = torch.zeros(P, L, dtype=dtype, device=dev)
        self.F = torch.zeros(P, L, dtype=dtype, device=dev)
        self.n_iter = torch.zeros(P, dtype=torch.long, device=dev)
        self.gap = torch.zeros(P, dtype=dtype, device=dev)

    def take(self, batch: _Batch, ids: torch.Tensor, sel: torch.Tensor) -> None:
        for name in ("alpha", "F", "n_iter", "gap"):
            getattr(self, name)[ids[sel]] = getattr(batch, name)[sel]


def _iterate(batch: _Batch, out: _Finished, check_every: int, cuda_graph: bool,
             max_iter: int, shrink_below: float) -> torch.Tensor:
    """Iterate until every pair has converged (or ``max_iter``); returns the ids of the pairs
    still in the batch."""
    ids = torch.arange(batch.alpha.shape[0], device=batch.alpha.device)
    graph = None
    while True:
        if cuda_graph:
            if graph is None:
                graph = _capture(batch, check_every)
            graph.replay()
        else:
            for _ in range(check_every):
                batch.step()
        n_active = int(batch.active.sum())  # the host sync, once per check_every iterations
        if n_active == 0:
            return ids
        if int(batch.n_iter.max()) >= max_iter:
            warnings.warn(
                f"SVM solver stopped at max_iter={max_iter} with {n_active} pair(s) "
                "not converged; consider a larger tol or max_iter",
                stacklevel=4,
            )
            return ids
        if n_active < shrink_below * len(ids):
            out.take(batch, ids, ~batch.active)
            keep = batch.active.nonzero()[:, 0]
            batch.keep(keep)
            ids = ids[keep]
            graph = None  # shapes changed: capture again


def _capture(batch: _Batch, steps: int) -> torch.cuda.CUDAGraph:
    # CUDA graphs need warm-up on a side stream first; these are real, counted iterations
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            batch.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(steps):
            batch.step()
    return graph


def _rho(alpha, F, y, valid, C) -> torch.Tensor:
    """libsvm's calculate_rho: the mean of y_t grad_t over free SVs (0 < a < C); without any,
    the midpoint of the bounds the at-bound variables give."""
    yg = -F
    free = valid & (alpha > 0) & (alpha < C)
    n_free = free.sum(1)
    mean_free = torch.where(free, yg, 0.0).sum(1) / n_free.clamp(min=1)
    at_c, at_0 = valid & (alpha >= C), valid & (alpha <= 0)
    ub_set = (at_c & (y < 0)) | (at_0 & (y > 0))
    lb_set = (at_c & (y > 0)) | (at_0 & (y < 0))
    ub = torch.where(ub_set, yg, INF).amin(1)
    lb = torch.where(lb_set, yg, -INF).amax(1)
    return torch.where(n_free > 0, mean_free, (ub + lb) / 2)
