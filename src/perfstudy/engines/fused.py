"""Several trials of one architecture trained as one model (horizontal fusion, as in HFTA,
MLSys 2021), each with its own weights, data order, learning rate and optimizer state.

Why: at batch 16 a ResNet step is hundreds of small kernels that leave most of an H200 idle,
and running more trials side by side on CUDA streams saturates at a few percent of the chip
(launch-bound). Fusing T trials makes every kernel T times larger instead.

How: a copy of the model whose *leaf* layers are swapped for fused ones that carry all T
trials at once, while the containers' own ``forward`` code (torchvision's ``BasicBlock``,
``Bottleneck``, ``ResNet``, perfstudy's ``CifarResNet``) runs unchanged. Activations are laid
out (B, T*C, H, W), trial-major along channels:

* ``Conv2d`` -> one grouped convolution (``groups = T``) with the T weights stacked;
* ``BatchNorm2d`` -> one batch norm over T*C channels, the T trials' running statistics views
  of one stacked buffer (each trial's statistics are its own channels);
* ``Linear`` -> one batched matrix product (``bmm``);
* perfstudy's ``PadShortcut`` and ``ResizeInput`` -> per-trial versions;
* channel-wise layers (ReLU, pooling, Identity) and the residual adds need nothing.

Each trial stays its own run: weights from its own ``torch.manual_seed(cfg.seed)``, its own
permutation per epoch (``engines.resident``), its own loss (the losses are summed, so each
trial's gradient is exactly the gradient of its own loss), its own BatchNorm statistics, and
its own optimizer (:class:`FusedOptimizer`: torch.optim's Adam/SGD arithmetic with each
trial's hyperparameters). Trials with different optimizers share one fused model; only the
elementwise update differs.

Why not ``torch.func`` (``stack_module_state`` + ``vmap``): it computes the same thing (its
batching rules also make grouped convolutions) and was tried first, but ``torch.autocast`` does
not reach inside ``vmap`` (convolutions silently stay fp32) and functorch's BatchNorm rule
applies the affine transform outside the kernel in the promoted dtype, so bf16 inputs with
fp32 BatchNorm weights fail. The module swap runs under plain autocast, exactly as the fast
engine runs one model.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perfstudy.engines import fused_batch
from perfstudy.engines.graphed import StateSnapshot, capture, cudnn_benchmark, warm_up
from perfstudy.engines.resident import ResidentBatches, Source
from perfstudy.engines.stacked import StackedBatchNorm2d, StackedConv2d, StackedLinear
from perfstudy.models import PadShortcut, ResizeInput
from perfstudy.optimizers import make_optimizer

# fp64 is for tests: early training is chaotic enough that fp32 rounding noise (1e-7) grows
# to percents within a few steps, identically for fused and unfused, so exact comparisons of
# two implementations run in float64
FUSED_PRECISIONS = ("bf16", "fp32", "fp64")
CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


class FusedConv2d(StackedConv2d):
    """T convolutions as one grouped convolution; 1x1 ones optionally as one batched matrix
    product (``pointwise="bmm"``), which cuBLAS runs faster than cuDNN's grouped 1x1 kernels
    on some shapes (docs/performance.md)."""

    def __init__(self, convs: Sequence[nn.Conv2d], channels_last: bool, pointwise: str = "conv"):
        super().__init__(convs, channels_last)
        self.bmm = pointwise == "bmm" and len(convs) > 1 and self.is_pointwise

    def forward(self, x: Tensor) -> Tensor:
        if self.bmm:
            return self._pointwise(x)
        t, o = self.weight.shape[:2]
        w = self.weight.reshape(t * o, *self.weight.shape[2:])
        b = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups * t)

    def _pointwise(self, x: Tensor) -> Tensor:
        """1x1 convolution of every trial as (T, B*H*W, C) @ (T, C, O). With channels_last
        activations the input side is a strided view (no copy); the output is transposed back
        to (B, H, W, T*O), i.e. channels_last (B, T*O, H, W)."""
        s = self.stride[0]
        if s != 1:
            x = x[:, :, ::s, ::s]
        t, o, c = self.weight.shape[:3]
        b, _, h, w = x.shape
        xt = x.permute(0, 2, 3, 1).reshape(b * h * w, t, c).transpose(0, 1)  # (T, BHW, C)
        return self.matmul(xt).transpose(0, 1).reshape(b, h, w, t * o).permute(0, 3, 1, 2)


class FusedBatchNorm2d(StackedBatchNorm2d):
    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        # the running statistics are views of the stacked buffers: updated in place, per trial
        return F.batch_norm(
            x,
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            self.training,
            self.momentum,
            self.eps,
        )


class FusedLinear(StackedLinear):
    def forward(self, x: Tensor) -> Tensor:
        t, out, inp = self.weight.shape
        xt = x.reshape(x.shape[0], t, inp).transpose(0, 1)  # (T, B, in)
        return self.batched(xt).transpose(0, 1).reshape(x.shape[0], t * out)


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


POINTWISE = ("conv", "bmm")
# channels: HFTA's layout, (B, T*C, H, W), grouped convolutions; batch: (T*B, C, H, W),
# engines.fused_batch (per-image layers unchanged, per-trial dense convolutions)
LAYOUTS = ("channels", "batch")
PER_IMAGE = (*CHANNELWISE, PadShortcut, ResizeInput)  # per-trial as they are in the batch layout


def _fuse_leaf(
    mods: Sequence[nn.Module], channels_last: bool, pointwise: str, layout: str
) -> nn.Module | None:
    """The fused version of one leaf layer across trials; None: kept as is (it is channel-wise,
    or per-image in the batch layout)."""
    m = mods[0]
    if layout == "batch":
        if isinstance(m, PER_IMAGE):
            return None
        new = fused_batch.fuse_leaf(mods, channels_last)
    elif isinstance(m, CHANNELWISE):
        return None
    elif type(m) is nn.Conv2d:
        new = FusedConv2d(mods, channels_last, pointwise)
    elif type(m) is nn.BatchNorm2d:
        new = FusedBatchNorm2d(mods)
    elif type(m) is nn.Linear:
        new = FusedLinear(mods)
    elif type(m) is PadShortcut:
        new = FusedPadShortcut(m, len(mods))
    elif type(m) is ResizeInput:
        new = FusedResizeInput(m, len(mods))
    else:
        new = None
    if new is None:
        raise ValueError(f"cannot fuse a {type(m).__name__} layer (no fused version)")
    return new


def fuse_models(
    models: Sequence[nn.Module],
    channels_last: bool = True,
    pointwise: str = "conv",
    layout: str = "channels",
) -> nn.Module:
    """One module that computes all ``models`` (same architecture) at once; parameters and
    buffers stacked (T, ...) under the models' own names. ``layout`` channels: input
    (B, T*C, H, W), output (B, T*classes); batch: input (T*B, C, H, W), output (T*B, classes)."""
    fused = copy.deepcopy(models[0])
    for name, mod in models[0].named_modules():
        if list(mod.children()):
            if next(mod.parameters(recurse=False), None) is not None:
                raise ValueError(f"cannot fuse {name}: a container with its own parameters")
            continue
        mods = [m.get_submodule(name) for m in models]
        new = _fuse_leaf(mods, channels_last, pointwise, layout)
        if new is not None:
            parent, _, child = name.rpartition(".")
            setattr(fused.get_submodule(parent) if parent else fused, child, new)
    return fused.train(models[0].training)


def trial_losses(module: nn.Module, x: Tensor, y: Tensor, layout: str) -> Tensor:
    """Mean cross-entropy per trial, shape (T,), of the fused ``module`` on ``x`` in its
    ``layout`` and labels ``y`` (T, B)."""
    t, b = y.shape
    if layout == "batch":
        loss = F.cross_entropy(module(x), y.reshape(-1), reduction="none")  # rows: (trial, image)
        return loss.view(t, b).mean(1)
    logits = module(x).reshape(b * t, -1)  # rows: (image, trial)
    loss = F.cross_entropy(logits, y.t().reshape(-1), reduction="none")
    return loss.view(b, t).mean(0)


# Compiled graphs are cached per code object and guarded on the module's structure, not its
# identity: every fused group of one architecture, trial count and batch shape shares one
# compilation. A study meets several (models x batch sizes x trials per group; partial batches
# run eagerly): room for them.
RECOMPILE_LIMIT = 64


@cache
def compiled_trial_losses():
    """``trial_losses`` through ``torch.compile`` (Inductor: BatchNorm, ReLU, residual adds and
    casts fused into a few kernels; convolutions stay cuDNN's), one static graph per shape."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    return torch.compile(trial_losses, dynamic=False)


class FusedTrials:
    """The fused model of T same-architecture models, and the per-trial losses of a batch of
    shape (T, B, C, H, W) under the engine's precision (bf16 autocast, fp32 or fp64).
    ``compile``: the forward and loss through ``torch.compile`` (:func:`compiled_trial_losses`)."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        precision: str = "bf16",
        channels_last: bool = True,
        pointwise: str = "conv",
        compile: bool = False,
        layout: str = "channels",
    ):
        if precision not in FUSED_PRECISIONS:
            raise ValueError(f"precision must be one of {FUSED_PRECISIONS}, got {precision!r}")
        if pointwise not in POINTWISE:
            raise ValueError(f"pointwise must be one of {POINTWISE}, got {pointwise!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.trials, self.precision, self.channels_last = len(models), precision, channels_last
        self.layout = layout
        self.forward = compiled_trial_losses() if compile else trial_losses
        self.module = fuse_models(models, channels_last, pointwise, layout)
        named = list(self.module.named_parameters())
        self.names = [n for n, _ in named]
        self.params: list[Tensor] = [p for _, p in named]
        self.buffers: list[Tensor] = list(self.module.buffers())

    def losses(self, x: Tensor, y: Tensor, compiled: bool = True) -> Tensor:
        """Mean cross-entropy per trial, shape (T,); ``x`` (T, B, C, H, W), ``y`` (T, B).
        ``compiled=False``: eagerly even when compiled (the once-per-epoch partial batch, whose
        shape would cost a compilation of its own)."""
        t, b = y.shape
        if self.layout == "batch":
            x = x.reshape(t * b, *x.shape[2:])
        else:
            x = x.transpose(0, 1).reshape(b, t * x.shape[2], *x.shape[3:])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "fp64":
            x = x.double()
        with torch.autocast(
            x.device.type, torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False
        ):
            forward = self.forward if compiled else trial_losses
            return forward(self.module, x, y, self.layout)

    def trial_tensors(self, t: int) -> dict[str, Tensor]:
        """Trial ``t``'s parameters and buffers as views, keyed like the model's state_dict."""
        return {k: v[t] for k, v in self.module.state_dict(keep_vars=True).items()}

    @torch.no_grad()
    def load_into(self, t: int, module: nn.Module) -> nn.Module:
        """Copy trial ``t``'s weights and BatchNorm statistics into an ordinary model."""
        module.load_state_dict(self.trial_tensors(t))
        return module


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
    hyperparameters come from ``perfstudy.optimizers.make_optimizer`` so a trial means what it
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


class FusedGroup:
    """T trials stepping together: fused model, per-trial optimizer, resident data, and (on
    CUDA) the whole step captured as one graph, replayed on this group's own stream."""

    def __init__(
        self,
        cfgs: Sequence,
        models: Sequence[nn.Module],
        sources: Sequence[Source],
        device: torch.device,
        *,
        precision: str = "bf16",
        channels_last: bool = True,
        graph: bool | None = None,
        warmup_steps: int = 3,
        pointwise: str = "conv",
        compile: bool = False,
        layout: str = "channels",
    ):
        self.cfgs, self.device = list(cfgs), torch.device(device)
        graph = self.device.type == "cuda" if graph is None else graph
        if graph and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        batch = {c.batch_size for c in cfgs}
        if len(batch) != 1:
            raise ValueError(f"fused trials need one batch size, got {sorted(batch)}")
        if channels_last:
            for m in models:
                m.to(memory_format=torch.channels_last)
        self.model = FusedTrials(models, precision, channels_last, pointwise, compile, layout)
        # an ordinary fp32 model to evaluate trials with, as the trainer evaluates its model
        self.template = copy.deepcopy(models[0]).float()
        self.optimizer = FusedOptimizer(self.model.params, cfgs)
        self.data = ResidentBatches(sources, [c.seed for c in cfgs], batch.pop(), self.device)
        if precision == "fp64":
            self.data.dtype = torch.float64  # normalised in float64, as the fast engine's fp64
        self.loss_sum = torch.zeros(len(cfgs), device=self.device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.graph: torch.cuda.CUDAGraph | None = None
        if self.device.type == "cuda":
            self._prepare(warmup_steps, graph)

    def _on_stream(self):
        return contextlib.nullcontext() if self.stream is None else torch.cuda.stream(self.stream)

    def _step(self, size: int | None = None) -> None:
        x, y = self.data.next_batch(size)
        losses = self.model.losses(x, y, compiled=size is None)
        grads = torch.autograd.grad(losses.sum(), self.model.params)
        self.optimizer.step(grads)
        self.loss_sum += losses.detach() * y.shape[1]

    def _prepare(self, warmup_steps: int, graph: bool) -> None:
        """Warm up (cuDNN autotuning, lazy allocations) and capture; then undo the warm-up."""
        snapshot = StateSnapshot(self.model.params + self.model.buffers)

        def full_step():
            self.data.rewind()
            self._step()

        def partial_step():
            self.data.rewind()
            self._step(self.data.remainder)

        with cudnn_benchmark(self.device.type == "cuda"):
            warm_up(full_step, warmup_steps, self.device)
            if self.data.remainder:
                warm_up(partial_step, 1, self.device)
            if graph:
                self.data.rewind()
                # captured on the group's own stream: its own cuBLAS workspace (graphed.capture)
                self.graph = capture(self._step, self.device, stream=self.stream)
        snapshot.restore()
        self.optimizer.reset()
        self.data.rewind()
        self.loss_sum.zero_()

    # --- the epoch, in three parts so that several groups can interleave on their streams

    def start_epoch(self) -> None:
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with self._on_stream():
            self.data.shuffle()
            self.loss_sum.zero_()

    def step(self) -> None:
        with self._on_stream():
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()

    def finish_epoch(self) -> None:
        with self._on_stream():
            if self.data.remainder:
                self._step(self.data.remainder)  # eager: one partial batch per epoch
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)

    # --- the training state between epochs, for a checkpoint (perfstudy.checkpoint)

    def state_tensors(self) -> list[Tensor]:
        """Everything an epoch changes: stacked weights, BatchNorm statistics, optimizer state.
        (The permutation, cursor and loss sum are made afresh at the start of each epoch.)"""
        return [*self.model.params, *self.model.buffers, *self.optimizer.state_tensors()]

    def state_dict(self) -> dict:
        """The state between two epochs, on the host: tensors and each trial's data generator."""
        return {
            "tensors": [t.detach().cpu() for t in self.state_tensors()],
            "generators": [g.get_state() for g in self.data.generators],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` *in place* (a captured graph holds these tensors)."""
        mine = self.state_tensors()
        shapes = [tuple(t.shape) for t in mine]
        if shapes != [tuple(t.shape) for t in state["tensors"]]:
            raise ValueError("checkpoint of a different fused group (tensor shapes differ)")
        for t, saved in zip(mine, state["tensors"], strict=True):
            t.copy_(saved)
        for g, saved in zip(self.data.generators, state["generators"], strict=True):
            g.set_state(saved)

    def epoch_losses(self) -> list[float]:
        """Mean training loss of each trial over the epoch. Note: a CPU-GPU sync point."""
        return (self.loss_sum / self.data.n).tolist()
