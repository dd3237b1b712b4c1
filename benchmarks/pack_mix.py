"""Packs of different models and batch sizes trained at the same time on one GPU.

    PYTHONPATH=src python benchmarks/pack_mix.py --mix resnet50:16:8,resnet50:32:8 \
        [--connections 32] [--images 3200] [--out FILE.md]

``--mix`` lists packs as ``model:batch:trials``; each pack is split into fused groups as
``packing.train_pack`` splits it, every group on its own CUDA stream, and all groups of all
packs replay from one thread, interleaved in proportion to their steps so that every trial sees
``--images`` training images in the same wall time. ``--connections`` sets
``CUDA_DEVICE_MAX_CONNECTIONS`` (the number of hardware work queues CUDA spreads streams over;
CUDA's default is 8) before CUDA starts: with more streams than queues, streams share a queue
and their kernels wait on each other. Prints aggregate img/s and TFLOP/s over every trial.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mix", required=True, help="packs as model:batch:trials, comma-separated")
    p.add_argument("--connections", type=int, help="CUDA_DEVICE_MAX_CONNECTIONS")
    p.add_argument("--images", type=int, default=3200, help="timed training images per trial")
    p.add_argument("--out", help="append the result line (markdown) here")
    args = p.parse_args()
    if args.connections:
        os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = str(args.connections)

    import torch

    from engine import fused_groups, pack_trials  # benchmarks/engine.py, beside this file
    from perfstudy.data import load
    from perfstudy.dl.device import Timer, peak_mb, reset_peak
    from perfstudy.dl.engines.resident import Source
    from perfstudy.dl.flops import count

    device = torch.device(os.environ.get("PACK_MIX_DEVICE", "cuda"))  # cpu: a smoke test
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    ds = load("fashion-mnist")
    n_img = args.images
    groups, flop = [], 0.0
    reset_peak(device)
    t0 = time.perf_counter()
    for spec in args.mix.split(","):
        model, batch, trials = spec.split(":")
        batch, trials = int(batch), int(trials)
        src = Source(ds.train.x[:n_img], ds.train.y[:n_img], ds.mean, ds.std)
        cfgs, models = pack_trials(model, batch, trials, device)
        groups += fused_groups(cfgs, models, src, device)
        flop += trials * n_img * count(model, "native").train_flops
    setup_s = time.perf_counter() - t0
    trials_total = sum(len(g.cfgs) for g in groups)

    def epoch() -> None:
        for g in groups:
            g.start_epoch()
        longest = max(g.data.full_steps for g in groups)
        done = [0] * len(groups)
        for i in range(longest):
            for k, g in enumerate(groups):  # each group keeps pace with the longest
                due = math.ceil((i + 1) * g.data.full_steps / longest)
                while done[k] < due:
                    g.step()
                    done[k] += 1
        for g in groups:
            g.finish_epoch()

    epoch()  # untimed
    with Timer(device) as t:
        epoch()
        for g in groups:
            g.epoch_losses()
    img_s = trials_total * n_img / (t.ms / 1e3)
    line = (
        f"| {args.mix} | {len(groups)} | {os.environ.get('CUDA_DEVICE_MAX_CONNECTIONS', '8*')} "
        f"| {img_s:,.0f} | {flop / (t.ms / 1e3) / 1e12:.1f} | {peak_mb(device):,.0f} "
        f"| {setup_s:.1f} |"
    )
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
