"""Training-engine benchmark: plain DataLoader loop vs the fast engine vs fast + trial packing.

    PYTHONPATH=src python benchmarks/engine.py [--models resnet18,resnet32,resnet50]
        [--batches 16,32,256] [--steps 200] [--pack-sizes 8] [--grid] [--compile]
        [--pack-cases resnet50:16:8:8:nhwc[:compile],...] [--out FILE.md]
    PYTHONPATH=src python benchmarks/engine.py --cpu [--cpu-models resnet32,resnet18]

Everything runs in one process, on Fashion-MNIST's training images, Adam (lr 1e-3), native
variant; packs alternate Adam and SGD (lr 1e-3 and 1e-4), as a grid's pack does. Results of
2026-11-29 on one H200: docs/performance.md. Each measurement is one whole epoch of
``steps`` batches through the engine's own ``train_epoch`` (shuffle, partial batch, loss
read-back included), timed with the device synchronised, after one untimed epoch (DataLoader
workers started, caches warm). Setup (graph capture, warm-up, compilation) is reported apart,
as the trainer does.

Columns: img/s (training images per second), ms/step, achieved TFLOP/s (img/s x
``perfstudy.flops.count(model).train_flops``: convolutions and the linear layer only), peak
device memory (``torch.cuda.max_memory_allocated``). ``--grid`` estimates the wall time of the
Q1(a) grid from measured pack throughput and evaluation times (an estimate: says so).
``--cpu`` compares the plain loop with the CPU variants on this machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
import traceback

import torch

from perfstudy.config import ENGINES, DLConfig
from perfstudy.data import load
from perfstudy.dl import flops
from perfstudy.dl.device import Timer, peak_mb, reset_peak
from perfstudy.dl.engines.fast import build
from perfstudy.dl.engines.fused import FusedGroup
from perfstudy.dl.engines.resident import Source
from perfstudy.dl.evaluate import accuracy, to_device
from perfstudy.dl.models import build_model
from perfstudy.dl.optimizers import make_optimizer
from perfstudy.dl.packing import fused_group_size
from perfstudy.progress import NullProgress
from perfstudy.provenance import cpu_model

DATASET = "fashion-mnist"
LINES: list[str] = []  # the markdown written to --out
PLAIN: dict[tuple[str, int], dict | None] = {}  # plain-engine results, reused by the grid
PACKS: dict[tuple[str, int, int], dict | None] = {}  # pack results (model, batch, trials)
T0 = time.perf_counter()


def emit(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def table(header: list[str], rows: list[list]) -> None:
    emit("| " + " | ".join(header) + " |")
    emit("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        emit("| " + " | ".join(str(c) for c in r) + " |")
    emit()


def machine(device: torch.device) -> None:
    import torchvision

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    emit(f"- GPU: {gpu}")
    emit(
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores visible, torch threads "
        f"{torch.get_num_threads()})"
    )
    emit(
        f"- Python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}"
    )
    emit(f"- date: {time.strftime('%Y-%m-%d %H:%M')}")
    emit()


def train_flops(model: str) -> float:
    try:
        return flops.count(model, "native").train_flops
    except Exception:  # noqa: BLE001 - a missing count only blanks a column
        return float("nan")


def images(batch: int, steps: int):
    ds = load(DATASET)
    n = batch * steps
    return ds, ds.train.x[:n], ds.train.y[:n]


def _cfg(model: str, batch: int, **kw) -> DLConfig:
    base = dict(
        dataset=DATASET,
        model=model,
        batch_size=batch,
        optimizer="adam",
        lr=1e-3,
        epochs=2,
        num_workers=2,
        pin_memory=True,
    )
    return DLConfig(**{**base, **kw})


# How the fast engine's step runs: eager, the hand-made whole-step graph (the engine's choice),
# torch.compile(mode="reduce-overhead") of the model (its own CUDA graphs, optimizer step
# eager), or torch.compile's kernels inside the hand-made graph
MODES = ("eager", "graph", "compile", "compile+graph")


def mode_options(mode: str, net) -> dict:
    """``engines.fast.build`` options for one of ``MODES``."""
    if mode == "compile":
        compiled = torch.compile(net, mode="reduce-overhead")

        def forward(x):
            torch.compiler.cudagraph_mark_step_begin()
            return compiled(x)

        return {"graph": False, "forward": forward}
    if mode == "compile+graph":
        return {"graph": True, "forward": torch.compile(net)}
    return {"graph": mode == "graph"}


def bench_engine(model: str, batch: int, steps: int, device, engine: str, mode="graph") -> dict:
    """One engine, one model, one batch size: setup time, then a warm and a timed epoch."""
    ds, x, y = images(batch, steps)
    cfg = _cfg(model, batch, device=device.type)
    torch.manual_seed(0)
    net = build_model(model, "native", num_classes=10).to(device)
    opt = make_optimizer(net.parameters(), cfg)
    reset_peak(device)
    with Timer(device) as setup:
        if engine == "plain":
            s = ENGINES.get("plain")(cfg, net, opt, x, y, ds.mean, ds.std, device, NullProgress())
        else:
            s = build(cfg, net, opt, x, y, ds.mean, ds.std, device, **mode_options(mode, net))
    s.train_epoch(1)
    with Timer(device) as t:
        loss = s.train_epoch(2)
    return {
        "img_s": len(y) / (t.ms / 1e3),
        "ms_step": t.ms / steps,
        "setup_s": setup.ms / 1e3,
        "peak_mb": peak_mb(device),
        "loss": loss,
    }


def pack_epoch(groups) -> None:
    for g in groups:
        g.start_epoch()
    for _ in range(groups[0].data.full_steps):
        for g in groups:
            g.step()
    for g in groups:
        g.finish_epoch()


def pack_trials(model: str, batch: int, trials: int, device) -> tuple[list[DLConfig], list]:
    """``trials`` runs of a grid's pack: Adam and SGD alternating, lr 1e-3 and 1e-4, own seeds
    (and initial weights from them, as ``train_dl`` makes them)."""
    cfgs = [
        _cfg(
            model,
            batch,
            device="cuda",
            seed=t,
            optimizer=("adam", "sgd")[t % 2],
            lr=(1e-3, 1e-4)[(t // 2) % 2],
        )
        for t in range(trials)
    ]
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(build_model(model, "native", num_classes=10).to(device))
    return cfgs, models


def fused_groups(cfgs, models, src: Source, device, streams=None, **group_kw) -> list:
    """The trials in ``streams`` fused groups (None: as ``packing.train_pack`` groups them)."""
    if streams is None:
        compiled = group_kw.get("compile", False)
        streams = math.ceil(len(cfgs) / fused_group_size(cfgs[0], compiled=compiled))
    members = [list(range(len(cfgs)))[k::streams] for k in range(streams)]
    return [
        FusedGroup([cfgs[t] for t in m], [models[t] for t in m], [src] * len(m), device, **group_kw)
        for m in members
    ]


def bench_pack(
    model: str,
    batch: int,
    steps: int,
    device,
    trials: int,
    streams: int | None,
    precision: str = "bf16",
    channels_last: bool = True,
    compile: bool = False,
) -> dict:
    """A pack of ``trials`` runs (``pack_trials``, ``fused_groups``); aggregate img/s."""
    ds, x, y = images(batch, steps)
    src = Source(x, y, ds.mean, ds.std)
    cfgs, models = pack_trials(model, batch, trials, device)
    reset_peak(device)
    with Timer(device) as setup:
        groups = fused_groups(
            cfgs,
            models,
            src,
            device,
            streams,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
        )
    del models
    streams = len(groups)
    pack_epoch(groups)
    with Timer(device) as t:
        pack_epoch(groups)
        losses = [v for g in groups for v in g.epoch_losses()]
    agg = trials * len(y) / (t.ms / 1e3)
    return {
        "img_s": agg,
        "per_run": agg / trials,
        "ms_step": t.ms / steps,
        "setup_s": setup.ms / 1e3,
        "peak_mb": peak_mb(device),
        "loss": max(losses),
        "streams": streams,
    }


def guarded(what: str, fn, *args, **kw):
    try:
        out = fn(*args, **kw)
        shown = {k: round(v, 2) for k, v in out.items()} if isinstance(out, dict) else out
        print(f"[{time.perf_counter() - T0:.0f}s] {what} {args[:2]} {kw}: {shown}", flush=True)
        return out
    except Exception as e:  # noqa: BLE001 - one failed measurement must not stop the rest
        print(f"FAILED {what}: {type(e).__name__}: {e}", file=sys.stderr)
        traceback.print_exc()
        return None
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def fmt(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


def gpu_tables(args, device) -> None:
    """Engines side by side, one row per engine, model and batch size."""
    emit("## Engines, one run at a time (GPU)")
    emit()
    rows = []
    for model in args.models:
        tf = train_flops(model)
        for batch in args.batches:
            steps = max(20, args.steps * 16 // batch)
            r = {
                "plain (DataLoader 2 workers, pinned, fp32)": guarded(
                    "plain",
                    bench_engine,
                    model,
                    batch,
                    min(steps, args.plain_steps),
                    device,
                    "plain",
                ),
                "resident + bf16 + channels_last, eager": guarded(
                    "eager", bench_engine, model, batch, steps, device, "fast", mode="eager"
                )
                if batch in args.eager_batches
                else None,
                "fast: + whole-step CUDA graph": guarded(
                    "graph", bench_engine, model, batch, steps, device, "fast", mode="graph"
                ),
            }
            if args.compile and batch in args.compile_batches and model in args.compile_models:
                for mode in args.compile_modes:
                    r[f"fast, {mode}"] = guarded(
                        mode, bench_engine, model, batch, steps, device, "fast", mode=mode
                    )
            for n in args.pack_sizes if batch in args.pack_batches else ():
                v = guarded(f"pack {n}", bench_pack, model, batch, steps, device, n, None)
                PACKS[(model, batch, n)] = v
                streams = v["streams"] if v else math.ceil(n / fused_group_size(_cfg(model, batch)))
                r[
                    f"fast + pack of {n} ({streams} streams, {n // streams}+ trials fused each; "
                    "aggregate)"
                ] = v
            base = r["plain (DataLoader 2 workers, pinned, fp32)"]
            PLAIN[(model, batch)] = base
            for name, v in r.items():
                if v is None:
                    continue
                speed = f"{v['img_s'] / base['img_s']:.1f}x" if base else "—"
                rows.append(
                    [
                        model,
                        batch,
                        name,
                        fmt(v["img_s"]),
                        fmt(v["ms_step"], 2),
                        fmt(v["img_s"] * tf / 1e12, 1),
                        fmt(v["peak_mb"]),
                        fmt(v["setup_s"], 1),
                        speed,
                    ]
                )
            print(f"[{time.perf_counter() - T0:.0f}s] {model} b{batch} done", flush=True)
    table(
        [
            "model",
            "batch",
            "engine",
            "img/s",
            "ms/step",
            "TFLOP/s",
            "peak MB",
            "setup s",
            "vs plain",
        ],
        rows,
    )


def packing_table(args, device) -> None:
    """Ways to pack the same trials: one fused model, fused groups on CUDA streams, or one graph
    per trial on its own stream; channels_last (NHWC) or NCHW activations; eager or compiled."""
    emit("## Packing variants (aggregate img/s over all trials)")
    emit()
    rows = []
    for model, batch, n, streams, layout, opts in args.pack_cases:
        tf = train_flops(model)
        steps = max(20, args.steps * 16 // batch)
        comp = "compile" in opts
        v = guarded(
            f"pack {n} streams {streams} {layout} compile={comp}",
            bench_pack,
            model,
            batch,
            steps,
            device,
            n,
            streams,
            channels_last=layout == "nhwc",
            compile=comp,
        )
        rows.append(
            [
                model,
                batch,
                n,
                streams,
                n // streams,
                layout.upper(),
                "torch.compile" if comp else "eager",
                fmt(v and v["img_s"]),
                fmt(v and v["per_run"]),
                fmt(v and v["img_s"] * tf / 1e12, 1),
                fmt(v and v["peak_mb"]),
                fmt(v and v["setup_s"], 1),
            ]
        )
    table(
        [
            "model",
            "batch",
            "trials",
            "streams",
            "trials per fused group",
            "layout",
            "step code",
            "img/s (all)",
            "img/s per run",
            "TFLOP/s",
            "peak MB",
            "setup s",
        ],
        rows,
    )


def eval_seconds(model: str, device) -> float:
    """Seconds for one trainer-style evaluation of 7,000 validation images (fp32)."""
    ds = load(DATASET)
    x, y = to_device(ds.val, device)
    net = build_model(model, "native", num_classes=10).to(device)
    net = net.to(memory_format=torch.channels_last)
    accuracy(net, x, y, ds.mean, ds.std)
    with Timer(device) as t:
        accuracy(net, x, y, ds.mean, ds.std)
    return t.ms / 1e3


def grid_estimate(args, device) -> None:
    """Q1(a): 2 datasets x {resnet18, resnet50} x batch {16, 32} x {sgd, adam} x lr {1e-3,
    1e-4}: 32 runs of 10 epochs x 49,000 images. Packs: one per (model, batch), 8 runs each."""
    emit("## Q1(a) grid wall time (estimate from the measured rates above)")
    emit()
    n_train, n_val, n_test, epochs, runs_per_pack = 49_000, 7_000, 14_000, 10, 8
    rows, total, total_plain = [], 0.0, 0.0
    for model in ("resnet18", "resnet50"):
        ev = guarded("eval", eval_seconds, model, device) or float("nan")
        for batch in (16, 32):
            steps = max(20, args.steps * 16 // batch)
            v = PACKS.get((model, batch, runs_per_pack)) or guarded(
                f"grid pack {model} {batch}",
                bench_pack,
                model,
                batch,
                steps,
                device,
                runs_per_pack,
                None,
            )
            plain = PLAIN.get((model, batch)) or guarded(
                "plain", bench_engine, model, batch, min(steps, args.plain_steps), device, "plain"
            )
            if v is None:
                rows.append([model, batch, "failed", "", "", "", ""])
                continue
            train_s = runs_per_pack * n_train * epochs / v["img_s"]
            eval_s = runs_per_pack * ev * (epochs + 2 * n_test / n_val)
            pack_s = train_s + eval_s + v["setup_s"]
            total += pack_s
            plain_s = plain and runs_per_pack * n_train * epochs / plain["img_s"]
            total_plain += plain_s or float("nan")
            rows.append(
                [
                    model,
                    batch,
                    v["streams"],
                    fmt(v["img_s"]),
                    fmt(train_s),
                    fmt(eval_s),
                    fmt(v["setup_s"], 1),
                    fmt(pack_s),
                    fmt(plain_s),
                ]
            )
    table(
        [
            "model",
            "batch",
            "streams (fused groups)",
            "pack of 8: img/s",
            "train s",
            "eval s (fp32, per epoch + test)",
            "setup s",
            "pack total s",
            "plain engine train s (estimate)",
        ],
        rows,
    )
    emit(
        f"**Estimated grid wall time, packs run one after another: {total / 60:.1f} min** "
        f"(plain DataLoader engine, training alone: {total_plain / 60:.0f} min). "
        "Estimate = measured img/s and eval times extrapolated to 10 epochs of 49,000 "
        "images; data loading (~1 s per dataset) not included."
    )
    emit()


# --- CPU


def cpu_tables(args) -> None:
    """The plain loop against the CPU variants on this machine's cores, interleaved rounds
    (other work on a shared machine moves single measurements; min and median are shown)."""
    device = torch.device("cpu")
    emit(f"## CPU ({cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    emit()
    variants = {
        "plain (DataLoader 2 workers, fp32)": dict(engine="plain"),
        "plain (DataLoader 0 workers, fp32)": dict(engine="plain", num_workers=0),
        "resident, fp32": dict(precision="fp32", channels_last=False),
        "resident, fp32, channels_last": dict(precision="fp32", channels_last=True),
        "resident, bf16 autocast": dict(precision="bf16", channels_last=False),
        "resident, bf16 autocast, channels_last": dict(precision="bf16", channels_last=True),
        "the cpu engine (the above + fused Adam)": dict(engine="cpu"),
    }
    rows = []
    for model in args.cpu_models:
        ds, x, y = images(16, args.cpu_steps)
        runners = {}
        for name, kw in variants.items():
            kw = dict(kw)
            cfg = _cfg(model, 16, device="cpu", num_workers=kw.pop("num_workers", 2))
            torch.manual_seed(0)
            net = build_model(model, "native", num_classes=10)
            opt = make_optimizer(net.parameters(), cfg)
            engine = kw.pop("engine", None)
            if engine:
                prepare = ENGINES.get(engine)
                s = prepare(cfg, net, opt, x, y, ds.mean, ds.std, device, NullProgress())
            else:
                s = build(cfg, net, opt, x, y, ds.mean, ds.std, device, graph=False, **kw)
            runners[name] = s
        times = {name: [] for name in variants}
        for r in range(args.cpu_rounds):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                runner.train_epoch(r + 1)
                times[name].append((time.perf_counter() - t0) / args.cpu_steps)
                print(
                    f"cpu {model} round {r} {name}: {times[name][-1] * 1e3:.0f} ms/step "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        base = statistics.median(
            times["plain (DataLoader 2 workers, fp32)"][1:]
            or times["plain (DataLoader 2 workers, fp32)"]
        )
        for name, ts in times.items():
            timed = ts[1:] or ts  # round 0 warms up (first steps, oneDNN primitive caches)
            med = statistics.median(timed)
            rows.append(
                [
                    model,
                    name,
                    fmt(16 / med, 1),
                    fmt(med * 1e3),
                    fmt(min(timed) * 1e3),
                    f"{base / med:.2f}x",
                ]
            )
    table(
        [
            "model (batch 16)",
            "variant",
            "img/s (median)",
            "ms/step median",
            "ms/step min",
            "vs plain",
        ],
        rows,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet18,resnet32,resnet50")
    p.add_argument("--batches", default="16,32,256")
    p.add_argument(
        "--steps",
        type=int,
        default=200,
        help="steps per timed epoch at batch 16 (scaled to the same images at other batch sizes)",
    )
    p.add_argument("--plain-steps", type=int, default=100)
    p.add_argument(
        "--pack-sizes",
        default="8",
        help="packs measured per model and batch (grouped as packing.train_pack groups them)",
    )
    p.add_argument("--pack-batches", default="16,32", help="batch sizes with pack rows")
    p.add_argument("--eager-batches", default="16", help="batch sizes with the eager column")
    p.add_argument(
        "--pack-cases",
        default="",
        help="packing variants, comma-separated "
        "model:batch:trials:streams:layout(nhwc|nchw)[:compile]",
    )
    p.add_argument("--grid", action="store_true", help="estimate the Q1(a) grid's wall time")
    p.add_argument("--compile", action="store_true", help="also torch.compile modes")
    p.add_argument("--compile-models", default="resnet18")
    p.add_argument(
        "--compile-modes",
        default="compile,compile+graph",
        help="fast-engine step modes with torch.compile (MODES)",
    )
    p.add_argument("--compile-batches", default="16")
    p.add_argument("--cpu", action="store_true", help="CPU variants instead of GPU tables")
    p.add_argument("--cpu-models", default="resnet32,resnet18")
    p.add_argument("--cpu-steps", type=int, default=100)
    p.add_argument("--cpu-rounds", type=int, default=3)
    p.add_argument("--out", help="write the markdown tables here too")
    args = p.parse_args()
    args.models = args.models.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.pack_sizes = [int(n) for n in args.pack_sizes.split(",") if n]
    args.eager_batches = [int(b) for b in args.eager_batches.split(",") if b]
    args.pack_batches = [int(b) for b in args.pack_batches.split(",") if b]
    args.compile_models = args.compile_models.split(",")
    args.compile_modes = args.compile_modes.split(",")
    args.compile_batches = [int(b) for b in args.compile_batches.split(",")]
    args.cpu_models = args.cpu_models.split(",")
    args.pack_cases = [
        (m, int(b), int(n), int(st), lay, set(rest))
        for m, b, n, st, lay, *rest in (c.split(":") for c in args.pack_cases.split(",") if c)
    ]

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    emit("# Engine benchmark")
    emit()
    machine(device)
    with contextlib.ExitStack():
        if args.cpu:
            cpu_tables(args)
        else:
            if device.type != "cuda":
                sys.exit("no CUDA device: use --cpu for the CPU tables")
            if args.pack_cases:
                packing_table(args, device)
            if args.models != [""]:
                gpu_tables(args, device)
            if args.grid:
                grid_estimate(args, device)
    emit(f"_total benchmark time {time.perf_counter() - T0:.0f} s_")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
