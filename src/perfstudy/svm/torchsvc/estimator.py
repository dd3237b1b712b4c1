"""``TorchSVC``: scikit-learn's ``SVC`` (libsvm's C-SVC, one-vs-one) on PyTorch, CPU or CUDA.

Same problem, kernels, gamma rule, stopping rule (tol on the maximal violating pair), bias, pair
order and voting as libsvm, so it is a drop-in for the study; the solver is in ``smo.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import _ovr_decision_function
from sklearn.utils.validation import check_is_fitted

from perfstudy.svm.torchsvc.kernel_rows import free_memory, make_rows
from perfstudy.svm.torchsvc.kernels import Kernel, resolve_gamma, squared_norms
from perfstudy.svm.torchsvc.smo import solve

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TorchSVC(ClassifierMixin, BaseEstimator):
    """C-SVC with libsvm's solution, fitted as one batched PyTorch program.

    Parameters as ``sklearn.svm.SVC`` where they share a name. Others:
    device: 'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.
    kernel_cache: 'auto' (the whole kernel matrix if it fits in ``memory_fraction`` of free
        memory, else cached rows), 'full' or 'rows'.
    dtype: precision of the dual variables and the gradient ('float64' as libsvm; kernel
        values are fp32 either way).
    tf32: allow TF32 kernel GEMMs on NVIDIA GPUs (off: full fp32).
    check_every / cuda_graph: see ``smo.solve``.
    decision_function_shape: 'ovo' (default here: libsvm's raw pairwise values) or 'ovr'.
    """

    def __init__(
        self,
        C: float = 1.0,
        kernel: str = "rbf",
        degree: int = 3,
        gamma: str | float = "scale",
        coef0: float = 0.0,
        tol: float = 1e-3,
        max_iter: int = -1,
        decision_function_shape: str = "ovo",
        device: str = "auto",
        kernel_cache: str = "auto",
        memory_fraction: float = 0.5,
        dtype: str = "float64",
        tf32: bool = False,
        check_every: int | None = None,
        cuda_graph: bool | None = None,
    ):
        self.C = C
        self.kernel = kernel
        self.degree = degree
        self.gamma = gamma
        self.coef0 = coef0
        self.tol = tol
        self.max_iter = max_iter
        self.decision_function_shape = decision_function_shape
        self.device = device
        self.kernel_cache = kernel_cache
        self.memory_fraction = memory_fraction
        self.dtype = dtype
        self.tf32 = tf32
        self.check_every = check_every
        self.cuda_graph = cuda_graph

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def fit(self, X, y):
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n_samples, n_features) matching y, got {X.shape}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        dev = self._device()
        self.classes_, yi = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        if k < 2:
            raise ValueError("SVC needs samples of at least 2 classes")
        self._gamma = resolve_gamma(self.gamma, X)
        self._kernel = Kernel(self.kernel, self._gamma, int(self.degree), float(self.coef0))

        order, cols, sign = self._pair_layout(yi, k)
        xs = torch.from_numpy(X[order]).to(dev)
        cols_t = torch.from_numpy(cols).to(dev)
        sign_t = torch.from_numpy(sign).to(dev)
        rows = make_rows(xs, self._kernel, self.kernel_cache, self.memory_fraction, self.tf32)
        sol = solve(
            rows,
            cols_t,
            sign_t,
            sign_t != 0,
            self._kernel.diag(xs),
            C=float(self.C),
            tol=float(self.tol),
            max_iter=self.max_iter,
            dtype=_DTYPES[self.dtype],
            check_every=self.check_every,
            cuda_graph=self.cuda_graph,
        )
        self.kernel_cache_used_ = type(rows).__name__
        self.kernel_rows_computed_ = rows.rows_computed
        del rows

        sv_pos, W = self._support_vectors(sol, cols_t, sign_t, len(X))
        self.support_ = order[sv_pos.cpu().numpy()]
        self.support_vectors_ = X[self.support_]
        self.n_support_ = np.bincount(yi[self.support_], minlength=k).astype(np.int32)
        self.intercept_ = -sol.rho.cpu().numpy()
        self.n_iter_ = sol.n_iter.cpu().numpy()
        self.fit_status_ = int((sol.gap >= self.tol).any())
        self.shape_fit_ = X.shape
        self.device_ = str(dev)
        self._sv = xs[sv_pos]
        self._sv_sq = squared_norms(self._sv)
        self._W = W
        self._rho = sol.rho.to(torch.float32)
        return self

    def _pair_layout(self, yi: np.ndarray, k: int):
        """The class-sorted layout libsvm builds: pair (a, b) is class a's block then class
        b's. Returns the sort order and, per pair, its members' positions and signs (+1 a,
        -1 b, 0 padding), (P, L) each."""
        order = np.argsort(yi, kind="stable")
        counts = np.bincount(yi, minlength=k)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.pairs_ = [(a, b) for a in range(k) for b in range(a + 1, k)]
        P, L = len(self.pairs_), max(counts[a] + counts[b] for a, b in self.pairs_)
        cols = np.zeros((P, L), dtype=np.int64)
        sign = np.zeros((P, L), dtype=np.float32)
        for p, (a, b) in enumerate(self.pairs_):
            na, nb = counts[a], counts[b]
            cols[p, :na] = np.arange(starts[a], starts[a] + na)
            cols[p, na : na + nb] = np.arange(starts[b], starts[b] + nb)
            sign[p, :na], sign[p, na : na + nb] = 1.0, -1.0
        return order, cols, sign

    @staticmethod
    def _support_vectors(sol, cols_t: torch.Tensor, sign_t: torch.Tensor, n: int):
        """Positions (in the sorted layout) of the samples with a > 0 in any of their pairs,
        and W[s, p]: support vector s's coefficient a_s y_s in pair p (0 if not in it)."""
        dev = cols_t.device
        P, L = cols_t.shape
        coef = (sol.alpha * sign_t).to(torch.float32)
        is_sv = torch.zeros(n, dtype=torch.bool, device=dev)
        is_sv[cols_t[sol.alpha > 0]] = True
        sv_pos = is_sv.nonzero()[:, 0]
        where_sv = torch.full((n,), -1, dtype=torch.long, device=dev)
        where_sv[sv_pos] = torch.arange(len(sv_pos), device=dev)
        W = torch.zeros(len(sv_pos), P, dtype=torch.float32, device=dev)
        pair_of = torch.arange(P, device=dev)[:, None].expand(P, L)
        nz = sol.alpha > 0
        W[where_sv[cols_t[nz]], pair_of[nz]] = coef[nz]
        return sv_pos, W

    def _pairwise(self, X) -> torch.Tensor:
        """libsvm's decision values (n, n_pairs): kernel blocks against the union of support
        vectors, so each support vector's kernel column is computed once for all pairs."""
        check_is_fitted(self, "support_")
        X = np.ascontiguousarray(X, dtype=np.float32)
        dev = self._sv.device
        n_sv = max(len(self._sv), 1)
        # chunk so one (chunk, n_sv) fp32 block takes at most ~1/8 of free memory (<= 2 GiB)
        budget = min(free_memory(dev) // 8, 2 << 30)
        chunk = int(max(256, min(len(X), budget // (4 * n_sv))))
        out = []
        for r in range(0, len(X), chunk):
            xc = torch.from_numpy(X[r : r + chunk]).to(dev)
            kb = self._kernel.block(xc, self._sv, b_sq=self._sv_sq, tf32=self.tf32)
            out.append(kb @ self._W - self._rho)
        return torch.cat(out)

    def decision_function(self, X) -> np.ndarray:
        """As ``sklearn.svm.SVC.decision_function``: for 2 classes (n,), positive for
        ``classes_[1]``; otherwise (n, n_pairs) in ovo shape, positive for the pair's first
        class, or (n, n_classes) with decision_function_shape='ovr'."""
        dec = self._pairwise(X).cpu().numpy()
        if len(self.classes_) == 2:
            return -dec[:, 0]
        if self.decision_function_shape == "ovr":
            return _ovr_decision_function(dec < 0, -dec, len(self.classes_))
        return dec

    def predict(self, X) -> np.ndarray:
        """libsvm's vote: each pair votes for its first class when its value is > 0, else its
        second; the most votes wins, ties going to the lowest class index."""
        dec = self._pairwise(X)
        k = len(self.classes_)
        first = torch.tensor([a for a, _ in self.pairs_], device=dec.device)
        second = torch.tensor([b for _, b in self.pairs_], device=dec.device)
        winner = torch.where(dec > 0, first, second)
        votes = torch.zeros(len(dec), k, dtype=torch.long, device=dec.device)
        votes.scatter_add_(1, winner, torch.ones_like(winner))
        return self.classes_[votes.argmax(1).cpu().numpy()]
