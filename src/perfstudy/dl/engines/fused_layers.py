"""Several trials of one architecture computed as one model (horizontal fusion, as in HFTA,
MLSys 2021), each with its own weights and BatchNorm statistics.

At batch 16 a ResNet step is hundreds of small kernels that leave most of an H200 idle; fusing
T trials makes every kernel T times larger instead. A copy of the model has its *leaf* layers
swapped for fused ones that carry all T trials, while the containers' own ``forward`` code
(torchvision's ``BasicBlock``, ``Bottleneck``, ``ResNet``, perfstudy's ``CifarResNet``) runs
unchanged. Activations are laid out (B, T*C, H, W), trial-major along channels:

* ``Conv2d`` -> one grouped convolution (``groups = T``) with the T weights stacked; a 1x1
  convolution -> one batched matrix product (cuBLAS beats cuDNN's grouped 1x1 kernels);
* ``BatchNorm2d`` -> one batch norm over T*C channels, each trial's statistics its own channels;
* ``Linear`` -> one batched matrix product;
* perfstudy's ``PadShortcut`` and ``ResizeInput`` -> per-trial versions;
* channel-wise layers (ReLU, pooling, Identity) and the residual adds need nothing.

Parameters and buffers are stacked (T, ...) under the layers' own names, so each trial's slice
is its state. (``torch.func``'s ``vmap`` computes the same, but autocast does not reach inside
it; the module swap runs under plain autocast, as the fast engine runs one model.)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perfstudy.dl.models import PadShortcut, ResizeInput

# fp64 is for tests: early training amplifies fp32 rounding noise to percents within a few
# steps, fused or not, so exact comparisons of two implementations run in float64
FUSED_PRECISIONS = ("bf16", "fp32", "fp64")
CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return torch.stack([t.detach() for t in tensors])


def _batched(weight: Tensor, bias: Tensor | None, xt: Tensor) -> Tensor:
    """(T, N, in) @ (T, in, out) + bias (T, out): every trial's linear map, one ``bmm``."""
    wt = weight.transpose(1, 2)
    if bias is None:
        return torch.bmm(xt, wt)
    return torch.baddbmm(bias.unsqueeze(1), xt, wt)


class FusedConv2d(nn.Module):
    """T convolutions: weights (T, O, C/groups, kh, kw), biases (T, O). With ``channels_last``
    the stack is laid out so that each trial's slice, and the grouped weight made from it, is
    channels_last (a view, not a copy)."""

    def __init__(self, convs: Sequence[nn.Conv2d], channels_last: bool):
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise ValueError(f"cannot fuse {c}: only zero padding given as numbers")
        w = _stack([m.weight for m in convs])
        if channels_last:
            w = w.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(_stack([m.bias for m in convs])) if c.bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = (
            c.stride, c.padding, c.dilation, c.groups)
        self.bmm = len(convs) > 1 and (  # a 1x1 convolution is one matrix product per trial
            c.kernel_size == (1, 1) and c.groups == 1 and c.padding == (0, 0)
            and c.stride[0] == c.stride[1])

    def forward(self, x: Tensor) -> Tensor:
        if self.bmm:
            return self._pointwise(x)
        t, o = self.weight.shape[:2]
        w = self.weight.reshape(t * o, *self.weight.shape[2:])
        b = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups * t)

    def _pointwise(self, x: Tensor) -> Tensor:
        """(T, B*H*W, C) @ (T, C, O). With channels_last activations the input side is a
        strided view (no copy); the output is transposed back to channels_last (B, T*O, H, W)."""
        s = self.stride[0]
        if s != 1:
            x = x[:, :, ::s, ::s]
        t, o, c = self.weight.shape[:3]
        b, _, h, w = x.shape
        xt = x.permute(0, 2, 3, 1).reshape(b * h * w, t, c).transpose(0, 1)  # (T, BHW, C)
        out = _batched(self.weight.reshape(t, o, c), self.bias, xt)
        return out.transpose(0, 1).reshape(b, h, w, t * o).permute(0, 3, 1, 2)


class FusedBatchNorm2d(nn.Module):
    def __init__(self, bns: Sequence[nn.BatchNorm2d]):
        super().__init__()
        b = bns[0]
        if not (b.affine and b.track_running_stats) or b.momentum is None:
            raise ValueError(f"cannot fuse {b}: needs affine, running stats and a momentum")
        self.weight = nn.Parameter(_stack([m.weight for m in bns]))
        self.bias = nn.Parameter(_stack([m.bias for m in bns]))
        self.register_buffer("running_mean", _stack([m.running_mean for m in bns]))
        self.register_buffer("running_var", _stack([m.running_var for m in bns]))
        self.register_buffer("num_batches_tracked", _stack([m.num_batches_tracked for m in bns]))
        self.eps, self.momentum = b.eps, b.momentum

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        # the running statistics are views of the stacked buffers: updated in place, per trial
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1),
                            self.weight.view(-1), self.bias.view(-1), self.training,
                            self.momentum, self.eps)


class FusedLinear(nn.Module):
    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(_stack([m.weight for m in linears]))  # (T, out, in)
        has_bias = linears[0].bias is not None
        self.bias = nn.Parameter(_stack([m.bias for m in linears])) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        t, out, inp = self.weight.shape
        xt = x.reshape(x.shape[0], t, inp).transpose(0, 1)  # (T, B, in)
        return _batched(self.weight, self.bias, xt).transpose(0, 1).reshape(x.shape[0], t * out)


class FusedPadShortcut(nn.Module):
    def __init__(self, m: PadShortcut, trials: int):
        super().__init__()
        self.extra, self.stride, self.trials = m.extra_channels, m.stride, trials

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        b, tc, h, w = x.shape
        x = x.reshape(b, self.trials, tc // self.trials, h, w)
        x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # each trial's channels padded on its own
        return x.reshape(b, -1, h, w)


class FusedResizeInput(nn.Module):
    def __init__(self, m: ResizeInput, trials: int):
        super().__init__()
        self.size, self.channels, self.trials = m.size, m.channels, trials

    def forward(self, x: Tensor) -> Tensor:  # (B, T, H, W): one input channel per trial
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.channels != 1:
            b, t, h, w = x.shape
            x = x.unsqueeze(2).expand(b, t, self.channels, h, w).reshape(b, -1, h, w)
        return x


def _fuse_leaf(mods: Sequence[nn.Module], channels_last: bool) -> nn.Module | None:
    """The fused version of one leaf layer across trials; None: channel-wise, kept as is."""
    m = mods[0]
    if isinstance(m, CHANNELWISE):
        return None
    fusers = {
        nn.Conv2d: lambda: FusedConv2d(mods, channels_last),
        nn.BatchNorm2d: lambda: FusedBatchNorm2d(mods),
        nn.Linear: lambda: FusedLinear(mods),
        PadShortcut: lambda: FusedPadShortcut(m, len(mods)),
        ResizeInput: lambda: FusedResizeInput(m, len(mods)),
    }
    if type(m) not in fusers:
        raise ValueError(f"cannot fuse a {type(m).__name__} layer (no fused version)")
    return fusers[type(m)]()


def fuse_models(models: Sequence[nn.Module], channels_last: bool = True) -> nn.Module:
    """One module that computes all ``models`` (same architecture) at once: input
    (B, T*C, H, W), output (B, T*classes); parameters and buffers stacked (T, ...) under the
    models' own names."""
    fused = copy.deepcopy(models[0])
    for name, mod in models[0].named_modules():
        if list(mod.children()):
            if next(mod.parameters(recurse=False), None) is not None:
                raise ValueError(f"cannot fuse {name}: a container with its own parameters")
            continue
        new = _fuse_leaf([m.get_submodule(name) for m in models], channels_last)
        if new is not None:
            parent, _, child = name.rpartition(".")
            setattr(fused.get_submodule(parent) if parent else fused, child, new)
    return fused.train(models[0].training)


def trial_losses(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per trial, shape (T,), of the fused ``module`` on ``x``
    (B, T*C, H, W) and labels ``y`` (T, B)."""
    t, b = y.shape
    logits = module(x).reshape(b * t, -1)  # rows: (image, trial)
    loss = F.cross_entropy(logits, y.t().reshape(-1), reduction="none")
    return loss.view(b, t).mean(0)


# Compiled graphs are cached per code object and guarded on the module's structure: every fused
# group of one architecture, trial count and batch shape shares one compilation, and a study
# meets several (models x batch sizes x trials per group): room for them.
RECOMPILE_LIMIT = 64


@cache
def compiled_trial_losses():
    """``trial_losses`` through ``torch.compile`` (Inductor fuses BatchNorm, ReLU, residual adds
    and casts into a few kernels; convolutions stay cuDNN's), one static graph per shape."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    return torch.compile(trial_losses, dynamic=False)


class FusedTrials:
    """The fused model of T same-architecture models, and the per-trial losses of a batch of
    shape (T, B, C, H, W) under the precision (bf16 autocast, fp32 or fp64). ``compile``: the
    forward and loss through :func:`compiled_trial_losses`."""

    def __init__(self, models: Sequence[nn.Module], precision: str = "bf16",
                 channels_last: bool = True, compile: bool = False):
        if precision not in FUSED_PRECISIONS:
            raise ValueError(f"precision must be one of {FUSED_PRECISIONS}, got {precision!r}")
        self.trials, self.precision, self.channels_last = len(models), precision, channels_last
        self.forward = compiled_trial_losses() if compile else trial_losses
        self.module = fuse_models(models, channels_last)
        named = list(self.module.named_parameters())
        self.names = [n for n, _ in named]
        self.params: list[Tensor] = [p for _, p in named]
        self.buffers: list[Tensor] = list(self.module.buffers())

    def losses(self, x: Tensor, y: Tensor, compiled: bool = True) -> Tensor:
        """Mean cross-entropy per trial, shape (T,); ``x`` (T, B, C, H, W), ``y`` (T, B).
        ``compiled=False``: eagerly even when compiled (the once-per-epoch partial batch, whose
        shape would cost a compilation of its own)."""
        t, b = y.shape
        x = x.transpose(0, 1).reshape(b, t * x.shape[2], *x.shape[3:])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "fp64":
            x = x.double()
        with torch.autocast(
            x.device.type, torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False
        ):
            forward = self.forward if compiled else trial_losses
            return forward(self.module, x, y)

    def trial_tensors(self, t: int) -> dict[str, Tensor]:
        """Trial ``t``'s parameters and buffers as views, keyed like the model's state_dict."""
        return {k: v[t] for k, v in self.module.state_dict(keep_vars=True).items()}

    @torch.no_grad()
    def load_into(self, t: int, module: nn.Module) -> nn.Module:
        """Copy trial ``t``'s weights and BatchNorm statistics into an ordinary model."""
        module.load_state_dict(self.trial_tensors(t))
        return module
