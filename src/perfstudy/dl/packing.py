"""Trial packing: several runs of a study trained at the same time on one GPU.

A ResNet at batch 16 uses a few percent of an H200, even replayed as a CUDA graph, so runs whose
training steps line up (:func:`pack_key`) train together: fused into groups
(``engines.fused``), each group's step captured as a CUDA graph and replayed on its own stream.
Each trial keeps what makes it its own run: its initial weights (``torch.manual_seed(cfg.seed)``),
its data order, dataset, optimizer and hyperparameters, its BatchNorm statistics; the epoch loop
(``dl.loop``) evaluates and selects each as it would alone. A packed run's ``train_ms`` is the
pack's training wall time - what the run took, sharing the GPU - and ``extra`` adds
``pack_size``, ``pack_wall_ms`` and ``train_ms_amortised = train_ms / pack_size``.
Which runs share a pack is ``study.schedule``'s decision; this module trains a pack.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

from perfstudy import data
from perfstudy.config import DLConfig
from perfstudy.dl import flops
from perfstudy.dl.checkpoint import CHECKPOINT_EVERY_S
from perfstudy.dl.device import Timer, reset_peak
from perfstudy.dl.engines.fused import FusedGroup
from perfstudy.dl.engines.resident import Source
from perfstudy.dl.loop import LoopState, Trial, train
from perfstudy.dl.models import build_model, param_count
from perfstudy.progress import NullProgress
from perfstudy.results import RunResult

# Trials per fused group, by training work per fused step (docs/performance.md, "Packs"):
# fusing pays until a step holds ~175 GFLOP (4 ResNet-18s at batch 16), beyond it more streams
# beat larger grouped convolutions; compiled, groups of 4 ResNet-50s (up to ~210 GFLOP per
# trial-step) beat one graph per run.
GROUP_TRAIN_GFLOP = 175
COMPILED_GROUP = 4
COMPILED_GROUP_MAX_TRIAL_GFLOP = 210
FUSABLE = ("resnet18", "resnet32", "resnet50")  # built of layers engines.fused_layers fuses
MAX_PACK = 16  # the largest pack measured; aggregate throughput had flattened before it
MEMORY_FRACTION = 0.8  # of the free device memory a pack may plan to use


def pack_key(cfg: DLConfig, cuda: bool) -> tuple | None:
    """Configs with equal keys may train in one pack; ``None``: this run trains alone.

    The key holds what makes the training steps line up (model, variant, batch size, epochs,
    subsets); dataset, seeds, optimizer and hyperparameters may differ inside a pack. Packing
    needs the fast engine on a CUDA device (``device`` cuda, or auto where ``cuda`` is true).
    """
    if cfg.engine not in ("fast", "auto") or cfg.optimizer not in ("adam", "sgd"):
        return None
    if cfg.model not in FUSABLE:  # a model registered from Python: its layers may not fuse
        return None
    if cfg.device == "cpu" or (cfg.device == "auto" and not cuda):
        return None
    return ("dl", cfg.model, cfg.variant, cfg.weights, cfg.batch_size, cfg.epochs,
            cfg.train_subset, cfg.eval_subset)


@cache
def _activation_elements(model: str, variant: str) -> int:
    """Elements of every leaf module's output for one image: what a training step keeps for
    backward, to first order. Counted on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        net = build_model(model, variant, num_classes=10)
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if torch.is_tensor(output):
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        net(torch.empty(2, 1, 28, 28, device="meta"))  # 2: train-mode BatchNorm refuses 1
    finally:
        for h in hooks:
            h.remove()
    return total // 2


def trial_bytes(cfg: DLConfig) -> int:
    """Planned device memory of one packed trial (an estimate, deliberately generous).

    Per parameter: fp32 weight, gradient, two Adam moments (or one SGD buffer, same budget),
    bf16 copy and bf16 gradient = 24 bytes. Per activation element of a batch: the bf16 value
    saved for backward, its gradient, and the graph pool's slack: 8 bytes.
    """
    with torch.device("meta"):
        params = param_count(build_model(cfg.model, cfg.variant, num_classes=10))
    activations = _activation_elements(cfg.model, cfg.variant) * cfg.batch_size
    return 24 * params + 8 * activations


def auto_pack_size(cfg: DLConfig, free_bytes: int) -> int:
    """How many trials like ``cfg`` to pack: as many as fit in ``MEMORY_FRACTION`` of
    ``free_bytes``, at most ``MAX_PACK``, and at least 1."""
    by_memory = int(MEMORY_FRACTION * free_bytes) // trial_bytes(cfg)
    return max(1, min(by_memory, MAX_PACK))


def fused_group_size(cfg: DLConfig, compiled: bool = False) -> int:
    """Trials per fused group: enough for ~``GROUP_TRAIN_GFLOP`` of work per step; compiled,
    ``COMPILED_GROUP`` where that rule gives one trial of at most
    ``COMPILED_GROUP_MAX_TRIAL_GFLOP`` per step."""
    try:
        per_image = flops.count(cfg.model, cfg.variant).train_flops
    except Exception:  # noqa: BLE001 - an uncountable model just trains unfused
        return 1
    step = per_image * cfg.batch_size
    n = max(1, int(GROUP_TRAIN_GFLOP * 1e9 // step))
    if compiled and n == 1 and step <= COMPILED_GROUP_MAX_TRIAL_GFLOP * 1e9:
        return COMPILED_GROUP
    return n


class Pack:
    """The loop's trainee for a pack: fused groups stepping in turn, one replay each per step,
    each on its stream (they overlap on the GPU); trial ``t`` is member ``k`` of group ``g``."""

    checkpointable = True

    def __init__(self, groups: list[FusedGroup], members: list[list[int]], signature: dict):
        self.groups, self.members, self.signature = groups, members, signature
        self.where = {t: (g, k) for g, m in zip(groups, members, strict=True)
                      for k, t in enumerate(m)}

    def train_epoch(self, epoch: int) -> list[float]:
        for g in self.groups:
            g.start_epoch()
        for _ in range(self.groups[0].data.full_steps):
            for g in self.groups:
                g.step()
        for g in self.groups:
            g.finish_epoch()
        out = [0.0] * len(self.where)
        for g, m in zip(self.groups, self.members, strict=True):
            for k, loss in enumerate(g.epoch_losses()):  # note: a CPU-GPU sync point
                out[m[k]] = loss
        return out

    def trial_model(self, t: int):
        g, k = self.where[t]
        return g.model.load_into(k, g.template)

    def state_dict(self) -> dict:
        return {"groups": [g.state_dict() for g in self.groups]}

    def load_state_dict(self, state: dict) -> None:
        for g, saved in zip(self.groups, state["groups"], strict=True):
            g.load_state_dict(saved)


def _trials(cfgs: Sequence[DLConfig], data_dir, device) -> tuple[list[Trial], list[Source]]:
    """Each run's evaluation splits and training source, loaded once per distinct split."""
    loaded: dict[tuple, tuple[Trial, Source]] = {}
    trials, sources = [], []
    for cfg in cfgs:
        key = (cfg.dataset, cfg.split_seed, cfg.train_subset, cfg.eval_subset)
        if key not in loaded:
            ds, train_split, val, test = data.for_run(cfg, data_dir)
            loaded[key] = (Trial.of(cfg, ds, train_split, val, test, device),
                           Source(train_split.x, train_split.y, ds.mean, ds.std))
        trial, source = loaded[key]
        trials.append(dataclasses.replace(trial, cfg=cfg))
        sources.append(source)
    return trials, sources


def train_pack(
    cfgs: Sequence[DLConfig],
    data_dir=None,
    progress=None,
    *,
    device: torch.device | str | None = None,
    streams: int | None = None,
    precision: str = "bf16",
    channels_last: bool = True,
    graph: bool | None = None,
    compile: bool = False,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> list[RunResult]:
    """Train ``cfgs`` as one pack; one result per config, in order.

    ``streams``: how many fused groups (1: every trial in one fused model; ``len(cfgs)``: one
    graph per run), by default groups of :func:`fused_group_size`. ``device`` defaults to CUDA;
    CPU (eager, no graph) and ``precision`` fp32/fp64 are for tests. ``compile``: each group's
    forward and loss through ``torch.compile``. ``checkpoint``: as for ``train.train_dl``.
    """
    started = time.perf_counter()
    progress = progress or NullProgress()
    cfgs, device = list(cfgs), torch.device(device or "cuda")
    trials, sources = _trials(cfgs, data_dir, device)
    models = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)  # the run's initial weights, exactly as train_dl builds them
        model = build_model(cfg.model, cfg.variant, num_classes=10, weights=cfg.weights)
        model = model.to(device)
        models.append(model.double() if precision == "fp64" else model)
    reset_peak(device)
    if streams is None:
        streams = math.ceil(len(cfgs) / fused_group_size(cfgs[0], compiled=compile))
    streams = max(1, min(streams, len(cfgs)))
    members = [list(range(len(cfgs)))[k::streams] for k in range(streams)]
    with Timer(device) as setup:
        groups = [FusedGroup([cfgs[t] for t in m], [models[t] for t in m],
                             [sources[t] for t in m], device, precision=precision,
                             channels_last=channels_last, graph=graph, compile=compile)
                  for m in members]
    del models  # the groups hold stacked copies
    signature = {"keys": [c.key() for c in cfgs], "members": members, "precision": precision}
    results, state = train(Pack(groups, members, signature), trials, device,
                           label=f"pack of {len(cfgs)} {cfgs[0].model}", setup_ms=setup.ms,
                           started=started, progress=progress, checkpoint=checkpoint,
                           checkpoint_every_s=checkpoint_every_s)
    notes = _pack_notes(cfgs, groups, members, state, precision, channels_last, compile, device)
    for r in results:
        r.extra = {**copy.deepcopy(notes), **r.extra, "images_per_s_amortised":
                   len(cfgs) * r.extra["n_train"] * r.config["epochs"] / (state.train_ms / 1e3)}
    return results


def _pack_notes(cfgs, groups, members, state: LoopState, precision: str, channels_last: bool,
                compile: bool, device) -> dict:
    n, on_gpu = len(cfgs), device.type == "cuda"
    remainder = groups[0].data.remainder
    return {
        "engine": "fast (packed)",
        "pin_memory": "n/a (data resident on GPU)" if on_gpu else "n/a",
        "num_workers": "n/a (data resident on GPU)" if on_gpu else "n/a",
        "pin_memory_effective": False,
        "precision": {"bf16": "bf16 (conv/linear weights and activations cast as autocast "
                      "would)", "fp32": "fp32", "fp64": "fp64"}[precision],
        "weights": "fp32" if precision != "fp64" else "fp64",
        "channels_last": channels_last,
        "graph": groups[0].graph is not None,
        "packing": "fused model (grouped convolutions, one BatchNorm over all trials)",
        "compiled": "torch.compile (Inductor) forward and loss" if compile else False,
        "pointwise_convs": "batched matmul",
        "pack_size": n,
        "pack_streams": len(groups),
        "fused_group_sizes": [len(m) for m in members],
        "pack_members": [c.key() for c in cfgs],
        "pack_wall_ms": state.wall_ms,
        "pack_wall_includes": "setup, training and every trial's evaluation"
        + (", in the process that saved the checkpoint and in this one (not the work lost "
           "after the checkpoint)" if state.resumed_after is not None else ""),
        "train_ms_means": "the pack's training wall time (shared by all its runs)",
        "train_ms_amortised": state.train_ms / n,
        "optimizer_impl": "perfstudy FusedOptimizer (torch.optim arithmetic, per-trial)",
        "partial_batch": f"{remainder} images, one eager step per epoch" if remainder else "none",
        "shuffle": "torch.randperm on the device, one generator per trial seeded with cfg.seed",
        "peak_mem_shared_by_pack": True,
    }
