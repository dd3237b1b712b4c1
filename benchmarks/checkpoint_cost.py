"""What a pack's checkpoint costs: time per save and file size, against an epoch's training.

    PYTHONPATH=src python benchmarks/checkpoint_cost.py [--packs resnet50:16:8,resnet18:16:8] \
        [--images 8000] [--epochs 3] [--dir /tmp]

Each pack (``model:batch:trials``, the grid's mix of Adam and SGD at lr 1e-3/1e-4, as
``benchmarks/engine.py`` makes them) trains ``--epochs`` epochs of ``--images`` training images
through ``packing.train_pack`` with a checkpoint after every epoch (``checkpoint_every_s=0``),
then once more, resuming from the last checkpoint (checked). Prints a markdown row per pack:
saves, ms per save, checkpoint size, and the training time of one epoch of the same pack.
"""

from __future__ import annotations

import argparse
import os

import torch
from engine import DATASET, machine, pack_trials  # benchmarks/engine.py, beside this file

from perfstudy.packing import train_pack


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packs", default="resnet50:16:8,resnet18:16:8")
    p.add_argument("--images", type=int, default=8000, help="training images per trial")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dir", default="/tmp", help="where the checkpoint file is written")
    p.add_argument("--device", default="cuda", help="cpu: a smoke test (eager, no graph)")
    args = p.parse_args()
    device = torch.device(args.device)
    machine(device)
    print("| pack | epochs | saves | ms per save | checkpoint MB | ms per training epoch |")
    print("|---|---|---|---|---|---|")
    for spec in args.packs.split(","):
        model, batch, trials = spec.split(":")
        cfgs, _models = pack_trials(model, int(batch), int(trials), device)
        cfgs = [c.replace(epochs=args.epochs, train_subset=args.images, eval_subset=2000,
                          dataset=DATASET) for c in cfgs]
        path = os.path.join(args.dir, f"checkpoint-cost-{model}-{batch}.pt")
        r = train_pack(cfgs, device=device, checkpoint=path, checkpoint_every_s=0)[0]
        size_mb = os.path.getsize(path) / 2**20
        again = train_pack(cfgs, device=device, checkpoint=path, checkpoint_every_s=1e9)[0]
        assert again.extra["resumed_after_epoch"] == args.epochs - 1, again.extra
        os.remove(path)
        saves = r.extra["checkpoint_saves"]
        print(f"| {spec} | {args.epochs} | {saves} | {r.extra['checkpoint_ms'] / saves:,.0f} "
              f"| {size_mb:,.0f} | {r.train_ms / args.epochs:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
