"""Where a packed training step's GPU time goes: kernels per step and their time, by kind.

    PYTHONPATH=src python benchmarks/step_profile.py [--cases resnet50:16:8:8,...]
        [--compile | --compiled-only] [--steps 20] [--out FILE.md]

Each case is ``model:batch:trials:streams`` built as ``benchmarks/engine.py`` builds a pack
(``pack_trials``, ``fused_groups``), as ``dl.packing.train_pack`` trains it. One untimed epoch
of ``--steps`` steps, then the same epoch under ``torch.profiler`` (CUDA activity: the kernels
inside graph replays are recorded one by one). Per training step of one trial: kernel count and
summed kernel time by kind, and the fraction of the wall time in which some kernel ran (kernels on
different streams overlap, so summed kernel time can exceed the wall time).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from engine import fused_groups, images, machine, pack_epoch, pack_trials, table  # noqa: E402
from perfstudy.dl.engines.resident import Source  # noqa: E402

# kernel-name fragments, first match wins
KINDS = (
    ("optimizer (foreach)", ("multi_tensor_apply", "foreach")),
    ("batch norm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "welford")),
    ("convolution", ("conv", "xmma", "implicit", "fprop", "dgrad", "wgrad", "cudnn")),
    ("matmul", ("gemm", "cutlass", "cublas", "sm90_", "splitk")),
    ("fused by Inductor (Triton)", ("triton",)),
    ("copy / cast", ("direct_copy", "bfloat16_copy", "copy_kernel", "to_dtype")),
    # TensorIterator's generic (non-vectorised) path: strided or mixed-dtype operands
    ("elementwise, generic path", ("gpu_kernel_impl_nocast", "native::elementwise_kernel<")),
    ("reduction", ("reduce",)),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
)


def kind(name: str) -> str:
    low = name.lower()
    for k, frags in KINDS:
        if any(f in low for f in frags):
            return k
    return "other"


def busy_ms(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (µs in, ms out)."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total / 1e3


def profile_case(model: str, batch: int, trials: int, streams: int, steps: int, compile: bool):
    device = torch.device("cuda")
    ds, x, y = images(batch, steps)
    cfgs, models = pack_trials(model, batch, trials, device)
    groups = fused_groups(
        cfgs,
        models,
        Source(x, y, ds.mean, ds.std),
        device,
        streams,
        compile=compile,
    )
    pack_epoch(groups)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        pack_epoch(groups)
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t0) * 1e3
    names: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    ms: dict[str, float] = defaultdict(float)
    spans = []
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CUDA or ev.time_range.elapsed_us() <= 0:
            continue
        if "memcpy" in ev.name.lower() or "memset" in ev.name.lower():
            continue
        k = kind(ev.name)
        names[ev.name] += ev.time_range.elapsed_us()
        count[k] += 1
        ms[k] += ev.time_range.elapsed_us() / 1e3
        spans.append((ev.time_range.start, ev.time_range.end))
    per = trials * steps  # trial-steps in the profiled epoch
    rows = [
        [k, f"{count[k] / per:,.0f}", f"{ms[k] * 1e3 / per:,.1f}"]
        for k in sorted(ms, key=ms.get, reverse=True)
    ]
    rows.append(
        ["**all**", f"{sum(count.values()) / per:,.0f}", f"{sum(ms.values()) * 1e3 / per:,.1f}"]
    )
    print("top kernels (µs per trial-step):", flush=True)
    for name in sorted(names, key=names.get, reverse=True)[:25]:
        print(f"  {names[name] / per:9.1f}  {kind(name):<28} {name[:150]}", flush=True)
    summary = {
        "wall ms per step of all trials": wall_ms / steps,
        "some kernel running, % of wall": 100 * busy_ms(spans) / wall_ms,
        "img/s (all trials)": trials * batch * steps / (wall_ms / 1e3),
    }
    return rows, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cases",
        default="resnet50:16:8:8,resnet18:16:8:2",
        help="model:batch:trials:streams, comma-separated",
    )
    p.add_argument("--compile", action="store_true", help="also each case through torch.compile")
    p.add_argument("--compiled-only", action="store_true", help="only through torch.compile")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device: this benchmark profiles GPU kernels")
    import engine

    machine(torch.device("cuda"))
    for case in args.cases.split(","):
        model, batch, trials, streams = case.split(":")
        modes = (True,) if args.compiled_only else (False, True) if args.compile else (False,)
        for comp in modes:
            rows, summary = profile_case(model, int(batch), int(trials), int(streams),
                                         args.steps, comp)
            engine.emit(f"### {model}, batch {batch}, {trials} trials on {streams} streams"
                        + (", torch.compile" if comp else ""))
            engine.emit()
            engine.emit(", ".join(f"{k}: {v:,.1f}" for k, v in summary.items()))
            engine.emit()
            table(["kernel kind", "kernels per trial-step", "µs per trial-step"], rows)
            engine.emit()
    if args.out:
        Path(args.out).write_text("\n".join(engine.LINES) + "\n")


if __name__ == "__main__":
    main()
