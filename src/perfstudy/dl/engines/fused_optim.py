"""Adam and SGD for stacked (T, ...) parameters: each trial with its own hyperparameters and
state, the arithmetic torch.optim's, the work one multi-tensor kernel for all trials."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from perfstudy.dl.optimizers import make_optimizer


def same_layout(grads: Sequence[Tensor], params: Sequence[Tensor]) -> list[Tensor]:
    """Each gradient in its parameter's memory layout (strides), copied where it differs.

    ``torch.autograd.grad`` returns gradients in whatever layout the backward op produced (a
    conv weight's, say, not the channels_last-stacked parameter's); ``.backward()`` would have
    matched them to the parameter. ``torch._foreach_*`` takes its fast multi-tensor kernels
    only when every tensor's strides match its partner's, and otherwise runs one generic kernel
    per tensor per operation (such kernels topped a profile of packed ResNet-50s stacked along
    the batch: docs/results/engine-checks-h200/batch-layout.md). One copy per mismatched
    gradient is cheaper than a slow path for every operation of the update."""
    return [
        g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
        for g, p in zip(grads, params, strict=True)
    ]


class FusedOptimizer:
    """Adam and SGD for stacked parameters, each trial with its own hyperparameters and state.

    The arithmetic is torch.optim's (``Adam``: L2 weight decay added to the gradient, bias
    corrections, ``eps`` outside the square root; ``SGD``: momentum buffer, no dampening); the
    hyperparameters come from ``dl.optimizers.make_optimizer`` so a trial means what it
    means alone. Work is done with ``torch._foreach_*`` over per-trial slices (one multi-tensor
    kernel for all trials instead of one kernel per tensor per trial), per-trial values passed
    as scalar lists. All trials step together, so Adam's step count is one device tensor
    (graph-safe: no host value changes between replays).
    """

    def __init__(self, params: Sequence[Tensor], cfgs: Sequence):
        if len(cfgs) != params[0].shape[0]:
            raise ValueError("one config per stacked trial")
        self.params = list(params)
        device = self.params[0].device
        self.hp = []
        for cfg in cfgs:
            probe = make_optimizer([torch.zeros(1, requires_grad=True)], cfg)
            d = dict(probe.defaults)
            kind = type(probe).__name__.lower()
            if kind not in ("adam", "sgd"):
                raise ValueError(f"fused training supports Adam and SGD, not {kind}")
            unsupported = [
                k for k in ("amsgrad", "nesterov", "maximize", "decoupled_weight_decay") if d.get(k)
            ] + (["dampening"] if d.get("dampening") else [])
            if unsupported:
                raise ValueError(f"fused {kind} does not implement: {', '.join(unsupported)}")
            self.hp.append({"kind": kind, **d})
        self.adam = [t for t, h in enumerate(self.hp) if h["kind"] == "adam"]
        self.sgd = [t for t, h in enumerate(self.hp) if h["kind"] == "sgd"]
        if self.adam:
            betas = {tuple(float(b) for b in self.hp[t]["betas"]) for t in self.adam}
            eps = {float(self.hp[t]["eps"]) for t in self.adam}
            if len(betas) != 1 or len(eps) != 1:
                raise ValueError("Adam trials fused together must share betas and eps")
            self.betas, self.eps = betas.pop(), eps.pop()
        # as torch's capturable Adam: the step count is a float on the device (float64 in fp64)
        self.step_count = torch.zeros((), dtype=self.params[0].dtype, device=device)
        zeros = lambda: [torch.zeros_like(p) for p in self.params]  # noqa: E731
        self.exp_avg = zeros() if self.adam else []
        self.exp_avg_sq = zeros() if self.adam else []
        self.momentum = zeros() if self.sgd else []

    def state_tensors(self) -> list[Tensor]:
        return [self.step_count, *self.exp_avg, *self.exp_avg_sq, *self.momentum]

    def reset(self) -> None:
        """Fresh state (zero moments, step 0), in place."""
        for t in self.state_tensors():
            t.zero_()

    def _slices(self, tensors: Sequence[Tensor], trials: Sequence[int]) -> list[Tensor]:
        return [x[t] for t in trials for x in tensors]

    def _per_trial(self, key: str, trials: Sequence[int], sign: float = 1.0) -> list[float]:
        return [sign * float(self.hp[t][key]) for t in trials for _ in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        grads = same_layout(grads, self.params)
        self.step_count += 1
        if self.adam:
            self._adam(grads)
        if self.sgd:
            self._sgd(grads)

    def _weight_decay(self, g: list[Tensor], p: list[Tensor], trials) -> list[Tensor]:
        wd = self._per_trial("weight_decay", trials)
        if not any(wd):
            return g
        return torch._foreach_add(g, torch._foreach_mul(p, wd))

    def _adam(self, grads: Sequence[Tensor]) -> None:
        trials = self.adam
        beta1, beta2 = self.betas
        p = self._slices(self.params, trials)
        g = self._weight_decay(self._slices(grads, trials), p, trials)
        m = self._slices(self.exp_avg, trials)
        v = self._slices(self.exp_avg_sq, trials)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1 - beta2)
        # denom = bias_correction1 * (sqrt(v) / sqrt(bias_correction2) + eps), so that
        # p -= lr * m / denom is torch's p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
        bc1 = 1 - torch.pow(beta1, self.step_count)
        inv_sqrt_bc2 = (1 - torch.pow(beta2, self.step_count)).rsqrt()
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, inv_sqrt_bc2)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_mul_(denom, bc1)
        update = torch._foreach_div(m, denom)
        torch._foreach_mul_(update, self._per_trial("lr", trials, -1.0))
        torch._foreach_add_(p, update)

    def _sgd(self, grads: Sequence[Tensor]) -> None:
        trials = self.sgd
        p = self._slices(self.params, trials)
        g = self._weight_decay(self._slices(grads, trials), p, trials)
        momentum = self._per_trial("momentum", trials)
        if any(momentum):
            # torch's SGD starts the buffer at the first gradient: 0 * momentum + g is that
            buf = self._slices(self.momentum, trials)
            torch._foreach_mul_(buf, momentum)
            torch._foreach_add_(buf, g)
            g = buf
        torch._foreach_add_(p, torch._foreach_mul(g, self._per_trial("lr", trials, -1.0)))
