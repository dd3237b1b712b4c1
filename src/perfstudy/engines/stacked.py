"""The parameters and buffers of T same-shaped layers stacked into (T, ...) tensors, under the
layers' own names: what every fused layer holds, whatever the layout its ``forward`` computes
in (``engines.fused``: trials along channels; ``engines.fused_batch``: along the batch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def stack(tensors: Sequence[Tensor]) -> Tensor:
    return torch.stack([t.detach() for t in tensors])


class StackedConv2d(nn.Module):
    """T convolutions' weights (T, O, C/groups, kh, kw) and biases (T, O); with
    ``channels_last`` the stack is laid out so that every trial's slice, and the (T*O, C, kh, kw)
    grouped weight made from it, is channels_last (a view, not a copy)."""

    def __init__(self, convs: Sequence[nn.Conv2d], channels_last: bool):
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise ValueError(f"cannot fuse {c}: only zero padding given as numbers")
        w = stack([m.weight for m in convs])
        if channels_last:
            w = w.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(stack([m.bias for m in convs])) if c.bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = (
            c.stride,
            c.padding,
            c.dilation,
            c.groups,
        )
        self.is_pointwise = (  # a 1x1 convolution that is one matrix product per trial
            c.kernel_size == (1, 1)
            and c.groups == 1
            and c.padding == (0, 0)
            and c.stride[0] == c.stride[1]
        )

    def matmul(self, xt: Tensor) -> Tensor:
        """A pointwise convolution of every trial: (T, N, C) -> (T, N, O), one ``bmm``."""
        t, o, c = self.weight.shape[:3]
        wt = self.weight.reshape(t, o, c).transpose(1, 2)  # (T, C, O)
        if self.bias is None:
            return torch.bmm(xt, wt)
        return torch.baddbmm(self.bias.unsqueeze(1), xt, wt)


class StackedBatchNorm2d(nn.Module):
    def __init__(self, bns: Sequence[nn.BatchNorm2d]):
        super().__init__()
        b = bns[0]
        if not (b.affine and b.track_running_stats) or b.momentum is None:
            raise ValueError(f"cannot fuse {b}: needs affine, running stats and a momentum")
        self.weight = nn.Parameter(stack([m.weight for m in bns]))
        self.bias = nn.Parameter(stack([m.bias for m in bns]))
        self.register_buffer("running_mean", stack([m.running_mean for m in bns]))
        self.register_buffer("running_var", stack([m.running_var for m in bns]))
        self.register_buffer("num_batches_tracked", stack([m.num_batches_tracked for m in bns]))
        self.eps, self.momentum = b.eps, b.momentum


class StackedLinear(nn.Module):
    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(stack([m.weight for m in linears]))  # (T, out, in)
        has_bias = linears[0].bias is not None
        self.bias = nn.Parameter(stack([m.bias for m in linears])) if has_bias else None

    def batched(self, xt: Tensor) -> Tensor:
        """(T, B, in) -> (T, B, out): every trial's layer on its own rows, one ``bmm``."""
        wt = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(xt, wt)
        return torch.baddbmm(self.bias.unsqueeze(1), xt, wt)
