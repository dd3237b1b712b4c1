"""What a checkpoint costs: time per save and file size, against an epoch's training.

    PYTHONPATH=src python benchmarks/checkpoint_cost.py [--packs resnet50:16:8,resnet18:16:8] \
        [--images 8000] [--epochs 3] [--dir /tmp] [--device cuda|cpu]

Each pack (``model:batch:trials``, the grid's mix of Adam and SGD at lr 1e-3/1e-4, as
``benchmarks/engine.py`` makes them) trains ``--epochs`` epochs of ``--images`` training images
with a checkpoint after every epoch (``checkpoint_every_s=0``), then once more, resuming from
the last checkpoint (checked). On a GPU the trials train as a pack (``packing.train_pack``);
with ``--device cpu`` a spec's first trial trains alone (``train.train_dl``, the CPU engine),
as a study trains runs there. Prints a markdown row per spec: saves, ms per save, checkpoint
size, and the training time of one epoch.
"""

from __future__ import annotations

import argparse
import os

import torch

from engine import DATASET, machine, pack_trials  # benchmarks/engine.py, beside this file
from perfstudy.dl.packing import train_pack
from perfstudy.dl.train import train_dl


def _train(cfgs, device, path: str, every_s: float):
    """The first run's result: of the pack on a GPU, of the first config alone on the CPU."""
    if device.type == "cuda":
        return train_pack(cfgs, checkpoint=path, checkpoint_every_s=every_s)[0]
    cfg = cfgs[0].replace(device="cpu", engine="cpu", num_workers=0)
    return train_dl(cfg, checkpoint=path, checkpoint_every_s=every_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packs", default="resnet50:16:8,resnet18:16:8")
    p.add_argument("--images", type=int, default=8000, help="training images per trial")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dir", default="/tmp", help="where the checkpoint file is written")
    p.add_argument("--device", default="cuda", help="cpu: single runs, the CPU engine")
    args = p.parse_args()
    device = torch.device(args.device)
    machine(device)
    print("| spec | epochs | saves | ms per save | checkpoint MB | ms per training epoch |")
    print("|---|---|---|---|---|---|")
    for spec in args.packs.split(","):
        model, batch, trials = spec.split(":")
        cfgs, _models = pack_trials(model, int(batch), int(trials), device)
        cfgs = [c.replace(epochs=args.epochs, train_subset=args.images, eval_subset=2000,
                          dataset=DATASET) for c in cfgs]
        path = os.path.join(args.dir, f"checkpoint-cost-{model}-{batch}.pt")
        r = _train(cfgs, device, path, every_s=0)
        size_mb = os.path.getsize(path) / 2**20
        again = _train(cfgs, device, path, every_s=1e9)
        assert again.extra["resumed_after_epoch"] == args.epochs - 1, again.extra
        os.remove(path)
        saves = r.extra["checkpoint_saves"]
        print(f"| {spec} | {args.epochs} | {saves} | {r.extra['checkpoint_ms'] / saves:,.0f} "
              f"| {size_mb:,.0f} | {r.train_ms / args.epochs:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
