"""Fused layers for the *batch* layout: T trials' activations stacked along the batch dimension,
(T*B, C, H, W), trial-major, so that each trial's images are one contiguous block.

Measured on the H200 (docs/performance.md): a packed ResNet-50 step at batch 16 spends most
of its kernel time outside convolutions (batch norm, ReLU, residual adds, casts), in hundreds
of small kernels per trial. The channel layout (``engines.fused``: HFTA's grouped
convolutions) batches them but pays in cuDNN's slow grouped 3x3 convolutions. In this layout:

* every per-image layer (ReLU, pooling, residual adds, ``PadShortcut``, ``ResizeInput``) is
  already per trial and runs unchanged, one kernel for all T trials;
* ``BatchNorm2d`` -> per-trial statistics over each trial's own (B, H, W), computed for all
  trials at once on a (T, B, C, H, W) view (:class:`BatchFusedBatchNorm2d`); under
  ``torch.compile`` Inductor turns it into a few reduction kernels;
* ``Conv2d`` 1x1 -> one batched matrix product over the trials; others -> one ordinary dense
  convolution per trial on its contiguous slice (cuDNN's fast kernels), concatenated;
* ``Linear`` -> one batched matrix product.

Parameters and buffers are stacked (T, ...) under the layers' own names (``engines.stacked``,
shared with the channel layout), so ``FusedTrials.trial_tensors`` and ``FusedOptimizer`` work
on either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perfstudy.engines.stacked import StackedBatchNorm2d, StackedConv2d, StackedLinear


def _trials_view(x: Tensor, t: int) -> Tensor:
    """(T*B, ...) as (T, B, ...): a view whatever the memory format."""
    return x.view(t, x.shape[0] // t, *x.shape[1:])


class BatchFusedConv2d(StackedConv2d):
    def forward(self, x: Tensor) -> Tensor:
        if self.is_pointwise:
            return self._pointwise(x)
        t = self.weight.shape[0]
        b = x.shape[0] // t
        out = [
            F.conv2d(
                x[i * b : (i + 1) * b],
                self.weight[i],
                None if self.bias is None else self.bias[i],
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
            for i in range(t)
        ]
        return out[0] if t == 1 else torch.cat(out)

    def _pointwise(self, x: Tensor) -> Tensor:
        """1x1 convolution of every trial as (T, B*H*W, C) @ (T, C, O); with channels_last
        activations the input side is a view and the output is channels_last."""
        s = self.stride[0]
        if s != 1:
            x = x[:, :, ::s, ::s]
        t, o, c = self.weight.shape[:3]
        tb, _, h, w = x.shape
        xt = x.permute(0, 2, 3, 1).reshape(t, (tb // t) * h * w, c)
        return self.matmul(xt).view(tb, h, w, o).permute(0, 3, 1, 2)


class BatchFusedBatchNorm2d(StackedBatchNorm2d):
    """Training-mode batch norm with each trial's own statistics over its own (B, H, W), as
    ``F.batch_norm`` computes them: biased variance to normalise, unbiased (n / (n - 1)) into
    the running variance, ``running = (1 - momentum) * running + momentum * batch``. The
    arithmetic runs in at least fp32 (bf16 inputs are promoted, as the native kernel does);
    the output has the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        t, c = self.weight.shape
        x5 = _trials_view(x, t)  # (T, B, C, H, W)
        xf = x5.to(torch.promote_types(x.dtype, self.weight.dtype))
        if self.training:
            var, mean = torch.var_mean(xf, dim=(1, 3, 4), correction=0)  # (T, C)
            n = x5.shape[1] * x5.shape[3] * x5.shape[4]
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * (n / max(n - 1, 1)), self.momentum)
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps) * self.weight
        shift = self.bias - mean * scale
        y = xf * scale[:, None, :, None, None] + shift[:, None, :, None, None]
        return y.to(x.dtype).view(x.shape)


class BatchFusedLinear(StackedLinear):
    def forward(self, x: Tensor) -> Tensor:
        return self.batched(_trials_view(x, self.weight.shape[0])).reshape(x.shape[0], -1)


def fuse_leaf(mods: Sequence[nn.Module], channels_last: bool) -> nn.Module | None:
    """The batch-layout version of one leaf layer across trials; None: no fused version (the
    caller decides whether the layer is per-image, hence kept as it is)."""
    m = mods[0]
    if type(m) is nn.Conv2d:
        return BatchFusedConv2d(mods, channels_last)
    if type(m) is nn.BatchNorm2d:
        return BatchFusedBatchNorm2d(mods)
    if type(m) is nn.Linear:
        return BatchFusedLinear(mods)
    return None
