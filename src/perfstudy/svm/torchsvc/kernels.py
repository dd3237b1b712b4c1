"""The SVM kernels, computed as matrix products so a whole block is one GEMM.

rbf    exp(-gamma * ||x - x'||^2), with ||x - x'||^2 = ||x||^2 + ||x'||^2 - 2<x, x'> clamped >= 0
poly   (gamma * <x, x'> + coef0) ** degree
linear <x, x'>

These are libsvm's definitions; gamma='scale' / 'auto' resolve as in scikit-learn's SVC.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

KERNELS = ("rbf", "poly", "linear")


@dataclass(frozen=True)
class Kernel:
    """A kernel with its numeric gamma already resolved (see :func:`resolve_gamma`)."""

    kind: str
    gamma: float = 1.0
    degree: int = 3
    coef0: float = 0.0

    def __post_init__(self):
        if self.kind not in KERNELS:
            raise ValueError(f"unknown kernel {self.kind!r}; choose from: {', '.join(KERNELS)}")

    def block(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        b_sq: torch.Tensor | None = None,
        tf32: bool = False,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """K(a_i, b_j) for all rows, shape (len(a), len(b)), in a's dtype.

        ``b_sq`` (the squared norms of ``b``) can be passed when ``b`` is reused across blocks.
        ``tf32`` allows TF32 GEMMs on NVIDIA GPUs; off by default (see :func:`_matmul_precision`).
        ``out`` receives the block (all later steps are in place), so a precomputed matrix is
        filled without a temporary of its size.
        """
        with _matmul_precision("high" if tf32 else "highest"):
            dot = torch.matmul(a, b.T, out=out)
        if self.kind == "linear":
            return dot
        if self.kind == "poly":
            return dot.mul_(self.gamma).add_(self.coef0).pow_(self.degree)
        a_sq = squared_norms(a)
        if b_sq is None:
            b_sq = squared_norms(b)
        # -2<a,b> + ||a||^2 + ||b||^2, clamped: rounding can make near-duplicates slightly < 0
        d2 = dot.mul_(-2.0).add_(a_sq[:, None]).add_(b_sq[None, :]).clamp_(min=0.0)
        return d2.mul_(-self.gamma).exp_()

    def diag(self, x: torch.Tensor) -> torch.Tensor:
        """K(x_i, x_i) for each row: what the SMO step's curvature K_ii + K_jj - 2 K_ij needs."""
        if self.kind == "rbf":
            return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        sq = squared_norms(x)
        if self.kind == "linear":
            return sq
        return (sq * self.gamma + self.coef0).pow_(self.degree)


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,ij->i", x, x)


def resolve_gamma(gamma: str | float, x: np.ndarray) -> float:
    """scikit-learn's rule: 'scale' = 1 / (n_features * X.var()), 'auto' = 1 / n_features.

    The variance is over the whole training matrix, in float64 as scikit-learn computes it
    (SVC converts X to float64 first), so both backends get the same gamma to the last bit.
    """
    n_features = x.shape[1]
    if gamma == "scale":
        var = float(np.asarray(x, dtype=np.float64).var())
        return 1.0 / (n_features * var) if var != 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    if isinstance(gamma, str):
        raise ValueError(f"gamma must be 'scale', 'auto' or a number, got {gamma!r}")
    return float(gamma)


@contextlib.contextmanager
def _matmul_precision(precision: str):
    """Pin fp32 GEMM precision for the block, whatever the caller set globally: libsvm computes
    kernels in float64, so full fp32 is the default and TF32 (10-bit mantissa) an opt-in whose
    effect on equivalence is measured, not assumed (docs/performance.md)."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
