"""Trial packing: several runs of a study trained at the same time on one GPU.

A ResNet at batch 16 uses a few percent of an H200, even replayed as a CUDA graph. Packing
trains the runs that can share a GPU together:

* runs whose training steps line up (same model, variant, batch size, epochs and subsets, so
  the same number of equal-sized steps) share a *pack* (:func:`pack_key`);
* inside a pack, trials are fused into groups (``engines.fused``: one model carrying several
  trials, stacked weights, grouped convolutions), each group's whole training step captured as
  a CUDA graph and replayed on its own CUDA stream. How many trials a group fuses is set by the
  work per step (:func:`fused_group_size`): on the H200, grouped convolutions beat separate
  ones only while kernels are small, so ResNet-18 at batch 16 trains 4 trials per group and
  ResNet-50 one (a pack of ResNet-50s is then one graph per run, on its own stream) - unless
  compiled, where groups of 4 ResNet-50s measured faster;
* each trial keeps everything that makes it its own run: its initial weights
  (``torch.manual_seed(cfg.seed)``), its data order (its own device generator), dataset, learning
  rate, optimizer (Adam and SGD trials share a fused model) and BatchNorm statistics.

Every run gets the ``RunResult`` that ``train.train_dl`` would give it: per-epoch validation
curve, best-validation selection, test accuracy at the best and the last epoch (evaluated with
``evaluate.accuracy`` on an ordinary model holding the trial's weights, in fp32, as the trainer
does). Its ``train_ms`` is the pack's training wall time - the time this run actually took
to train, sharing the GPU - and ``extra`` adds ``pack_size``, ``pack_wall_ms`` (the whole pack:
setup, training and every trial's evaluation) and ``train_ms_amortised = train_ms / pack_size``,
the GPU time per run when the pack's cost is split evenly.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

from perfstudy import flops, provenance
from perfstudy.checkpoint import (
    CHECKPOINT_EVERY_S,
    NO_CHECKPOINT,
    Checkpoint,
    curve_from_host,
    curve_to_host,
)
from perfstudy.config import DLConfig
from perfstudy.devices import peak_mb, reset_peak
from perfstudy.engines.fused import FusedGroup
from perfstudy.engines.resident import Source
from perfstudy.evaluate import BestEpoch, accuracy, to_device
from perfstudy.models import build_model, param_count
from perfstudy.progress import NullProgress
from perfstudy.results import EpochStats, RunResult
from perfstudy.timing import Timer
from perfstudy.train import prepare_data, train_dl

# Measured on one H200 (docs/performance.md): fusing trials pays until a fused step
# holds ~175 GFLOP of training work (4 ResNet-18s at batch 16); beyond, grouped convolutions are
# slower than more CUDA streams, so a pack is fused groups of that size, one stream each
# (ResNet-50 at batch 16: groups of 1, i.e. one graph per run on its own stream).
GROUP_TRAIN_GFLOP = 175
# Compiled (--compile: batch norm and elementwise work fused by Inductor), fusing pays further:
# 2 groups of 4 ResNet-50s beat 8 graphs of one run by 21% at batch 16 and 18% at batch 32
# (100 and 201 GFLOP per trial-step). Measured only there: for more work per step, and where
# the eager rule already fuses (ResNet-18, measured compiled with its eager sizes), it holds.
COMPILED_GROUP = 4
COMPILED_GROUP_MAX_TRIAL_GFLOP = 210
POINTWISE = "bmm"  # 1x1 convolutions of a fused group as batched matmuls (engines.fused)
# The largest pack measured; aggregate throughput had flattened (ResNet-18 at batch 16:
# 17,223 img/s with 8 trials, 19,923-23,807 with 16)
MAX_PACK = 16
MEMORY_FRACTION = 0.8  # of the free device memory a pack may plan to use


def pack_key(cfg: DLConfig) -> tuple | None:
    """Configs with equal keys may train in one pack; ``None``: this run trains alone.

    The key holds what makes the training steps line up (model, variant, batch size, epochs,
    subsets). Dataset, seeds, optimizer and its hyperparameters may differ inside a pack: each
    trial reads its own images and keeps its own optimizer. Packing needs the fast engine on a
    CUDA device (``engine`` fast or auto, ``device`` cuda or auto with a GPU present).
    """
    if cfg.engine not in ("fast", "auto"):
        return None
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return None
    if cfg.optimizer not in ("adam", "sgd"):
        return None
    return (
        "dl",
        cfg.model,
        cfg.variant,
        cfg.batch_size,
        cfg.epochs,
        cfg.train_subset,
        cfg.eval_subset,
    )


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
    ``free_bytes``, at most ``MAX_PACK`` (beyond it the GPU is saturated and more trials only
    make each run slower), and at least 1."""
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


def plan(cfgs: Sequence[DLConfig], free_bytes: int | None = None) -> list[list[int]]:
    """Indices of ``cfgs`` grouped into packs (a pack of one trains alone with ``train_dl``),
    packs of one key split into near-equal chunks of at most ``auto_pack_size``."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    alone: list[list[int]] = []
    for i, cfg in enumerate(cfgs):
        key = pack_key(cfg)
        if key is None:
            alone.append([i])
        else:
            groups[key].append(i)
    if free_bytes is None and groups:
        free_bytes = torch.cuda.mem_get_info()[0]
    packs = []
    for members in groups.values():
        size = auto_pack_size(cfgs[members[0]], free_bytes)
        chunks = math.ceil(len(members) / size)
        packs += [members[k::chunks] for k in range(chunks)]
    return packs + alone


def train_packed(
    cfgs: Sequence[DLConfig], data_dir=None, progress=None, **options
) -> list[RunResult]:
    """Train ``cfgs`` (a study's runs), packing those that can share the GPU; one result per
    config, in order. ``options`` go to :func:`train_pack` (``streams``, ``precision``...)."""
    results: list[RunResult | None] = [None] * len(cfgs)
    for members in plan(cfgs):
        if len(members) == 1 and pack_key(cfgs[members[0]]) is None:
            results[members[0]] = train_dl(cfgs[members[0]], data_dir, progress)
            continue
        # steps line up only for equal training sets: split by the loaded split's length
        by_length: dict[int, list[int]] = defaultdict(list)
        for i in members:
            by_length[len(prepare_data(cfgs[i], data_dir)[1])].append(i)
        for same in by_length.values():
            pack = train_pack([cfgs[i] for i in same], data_dir, progress, **options)
            for i, r in zip(same, pack, strict=True):
                results[i] = r
    return results  # type: ignore[return-value]


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
    pointwise: str = POINTWISE,
    compile: bool = False,
    layout: str = "channels",
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> list[RunResult]:
    """Train ``cfgs`` as one pack, no questions asked (``train_packed`` decides what may pack).

    ``streams`` splits the pack into that many fused groups, each replayed on its own CUDA
    stream (1: every trial in one fused model; ``len(cfgs)``: one graph per run); by default
    groups of :func:`fused_group_size`. ``device`` defaults to CUDA; CPU (eager, no graph) is
    for tests. ``precision`` fp32/fp64 is for tests too. ``compile``: each group's forward and
    loss through ``torch.compile`` (``engines.fused.compiled_trial_losses``); ``layout``: how
    trials are stacked (``engines.fused.LAYOUTS``). ``checkpoint``: a file to save the
    training state to every ``checkpoint_every_s`` seconds (at the end of an epoch) and to
    resume from, if it holds this pack's state (``perfstudy.checkpoint``).
    """
    progress = progress or NullProgress()
    cfgs = list(cfgs)
    device = torch.device(device or "cuda")
    wall0 = time.perf_counter()

    # --- what train_dl does per run, once per distinct split
    loaded: dict[tuple, tuple] = {}
    for cfg in cfgs:
        key = (cfg.dataset, cfg.split_seed, cfg.train_subset, cfg.eval_subset)
        if key not in loaded:
            ds, train, val, test = prepare_data(cfg, data_dir)
            loaded[key] = (
                ds,
                train,
                Source(train.x, train.y, ds.mean, ds.std),
                to_device(val, device),
                to_device(test, device),
                (len(train), len(val), len(test)),
            )
    split = [loaded[(c.dataset, c.split_seed, c.train_subset, c.eval_subset)] for c in cfgs]
    models = []
    for cfg, (ds, *_rest) in zip(cfgs, split, strict=True):
        torch.manual_seed(cfg.seed)  # the run's initial weights, exactly as train_dl builds them
        model = build_model(cfg.model, cfg.variant, num_classes=ds.num_classes).to(device)
        if precision == "fp64":
            model = model.double()
        models.append(model)

    reset_peak(device)
    if streams is None:
        streams = math.ceil(len(cfgs) / fused_group_size(cfgs[0], compiled=compile))
    streams = max(1, min(streams, len(cfgs)))
    members = [list(range(len(cfgs)))[k::streams] for k in range(streams)]
    with Timer(device) as setup_timer:
        groups = [
            FusedGroup(
                [cfgs[t] for t in m],
                [models[t] for t in m],
                [split[t][2] for t in m],
                device,
                precision=precision,
                channels_last=channels_last,
                graph=graph,
                pointwise=pointwise,
                compile=compile,
                layout=layout,
            )
            for m in members
        ]
    del models  # the groups hold stacked copies

    n = len(cfgs)
    curves: list[list[EpochStats]] = [[] for _ in range(n)]
    best = [BestEpoch() for _ in range(n)]
    eval_ms = [0.0] * n
    train_ms, wall_before_ms, done_epochs = 0.0, 0.0, 0
    epochs = cfgs[0].epochs
    ckpt = Checkpoint(checkpoint, checkpoint_every_s) if checkpoint else None
    signature = {"keys": [c.key() for c in cfgs], "members": members,
                 "precision": precision, "layout": layout}
    saved = ckpt.load(signature) if ckpt else None
    if saved is not None:  # resume after the saved epoch
        for g, state in zip(groups, saved["groups"], strict=True):
            g.load_state_dict(state)
        curves = [curve_from_host(c) for c in saved["curves"]]
        best = [BestEpoch.from_host(b, device) for b in saved["best"]]
        eval_ms, train_ms = list(saved["eval_ms"]), saved["train_ms"]
        wall_before_ms, done_epochs = saved["wall_ms"], saved["epoch"]
    bar = progress.add(f"pack of {n} {cfgs[0].model} epochs", total=epochs)
    progress.advance(bar, done_epochs)
    for epoch in range(done_epochs + 1, epochs + 1):
        with Timer(device) as t:
            for g in groups:
                g.start_epoch()
            for _ in range(groups[0].data.full_steps):
                for g in groups:  # one replay per group, each on its stream: they overlap
                    g.step()
            for g in groups:
                g.finish_epoch()
            losses = [g.epoch_losses() for g in groups]  # note: the epoch's one sync point
        train_ms += t.ms
        for g, m, ls in zip(groups, members, losses, strict=True):
            for k, trial in enumerate(m):
                _ds, _train, _src, (vx, vy), _test, _sizes = split[trial]
                with Timer(device) as e:
                    model = g.model.load_into(k, g.template)
                    acc = accuracy(model, vx, vy, _ds.mean, _ds.std)
                    best[trial].update(model, acc, epoch)
                eval_ms[trial] += e.ms
                curves[trial].append(EpochStats(epoch, float(ls[k]), acc, t.ms / 1e3))
        progress.advance(bar)
        if ckpt is not None and ckpt.wants(epoch, epochs):
            ckpt.save({
                "signature": signature,
                "epoch": epoch,
                "groups": [g.state_dict() for g in groups],
                "curves": [curve_to_host(c) for c in curves],
                "best": [b.to_host() for b in best],
                "eval_ms": eval_ms,
                "train_ms": train_ms,
                "wall_ms": wall_before_ms + (time.perf_counter() - wall0) * 1e3,
            })
    progress.remove(bar)
    peak = peak_mb(device)

    test_acc: list[tuple[float, float]] = [(0.0, 0.0)] * n
    for g, m in zip(groups, members, strict=True):
        for k, trial in enumerate(m):
            ds, _train, _src, _val, (tx, ty), _sizes = split[trial]
            with Timer(device) as e:
                model = g.model.load_into(k, g.template)
                test_acc[trial] = best[trial].test(model, tx, ty, ds.mean, ds.std)
            eval_ms[trial] += e.ms
    pack_wall_ms = wall_before_ms + (time.perf_counter() - wall0) * 1e3

    notes = {
        "engine": "fast (packed)",
        "pin_memory": "n/a (data resident on GPU)" if device.type == "cuda" else "n/a",
        "num_workers": "n/a (data resident on GPU)" if device.type == "cuda" else "n/a",
        "pin_memory_effective": False,
        "precision": {
            "bf16": "bf16 (conv/linear weights and activations cast as autocast would)",
            "fp32": "fp32",
            "fp64": "fp64",
        }[precision],
        "weights": "fp32" if precision != "fp64" else "fp64",
        "channels_last": channels_last,
        "graph": groups[0].graph is not None,
        "packing": {
            "channels": "fused model (grouped convolutions, one BatchNorm over all trials)",
            "batch": "fused model (trials stacked along the batch, per-trial convolutions)",
        }[layout],
        "compiled": "torch.compile (Inductor) forward and loss" if compile else False,
        "pointwise_convs": {"bmm": "batched matmul", "conv": "grouped convolution"}[pointwise],
        "pack_size": n,
        "pack_streams": len(groups),
        "fused_group_sizes": [len(m) for m in members],
        "pack_wall_ms": pack_wall_ms,
        "pack_wall_includes": "setup, training and every trial's evaluation"
        + (", in the process that saved the checkpoint and in this one (not the work lost "
           "after the checkpoint)" if saved is not None else ""),
        "resumed_after_epoch": done_epochs if saved is not None else None,
        **(ckpt.notes() if ckpt else NO_CHECKPOINT),
        "train_ms_means": "the pack's training wall time (shared by all its runs)",
        "train_ms_amortised": train_ms / n,
        "optimizer_impl": "perfstudy FusedOptimizer (torch.optim arithmetic, per-trial)",
        "partial_batch": (
            f"{groups[0].data.remainder} images, one eager step per epoch"
            if groups[0].data.remainder
            else "none"
        ),
        "shuffle": "torch.randperm on the device, one generator per trial seeded with cfg.seed",
        "peak_mem_shared_by_pack": True,
    }
    prov = provenance.collect(device)
    results = []
    for trial, cfg in enumerate(cfgs):
        n_train, n_val, n_test = split[trial][5]
        acc, best_epoch = best[trial].val_acc, best[trial].epoch
        results.append(
            RunResult(
                kind="dl",
                config=cfg.to_dict(),
                test_acc=test_acc[trial][0],
                val_acc=acc,
                train_ms=train_ms,
                eval_ms=eval_ms[trial],
                test_acc_last=test_acc[trial][1],
                best_epoch=best_epoch,
                images_per_s=n_train * cfg.epochs / (train_ms / 1e3),
                peak_mem_mb=peak,
                setup_ms=setup_timer.ms,
                curve=curves[trial],
                extra={
                    **copy.deepcopy(notes),
                    "pack_members": [c.key() for c in cfgs],
                    "images_per_s_amortised": n * n_train * cfg.epochs / (train_ms / 1e3),
                    "n_train": n_train,
                    "n_val": n_val,
                    "n_test": n_test,
                    "peak_mem_kind": (
                        "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"
                    ),
                },
                provenance=prov,
            )
        )
    return results
