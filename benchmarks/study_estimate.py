"""Estimate a study's wall time on this machine from measured throughput.

For every distinct (model, variant, batch size, optimizer, engine, device) among a study's DL
runs, trains ``--steps`` steps on real data with the run's own engine and measures images/s
(after one untimed warm-up epoch of the same size), and measures evaluation images/s; each
run's time is then extrapolated to its full budget (epochs × training images, plus the
per-epoch validation and the final test passes). SVM fits are measured on a stratified
subset and extrapolated with libsvm's roughly quadratic fit cost — labelled as such.
Every figure printed says whether it was measured or extrapolated.

    PYTHONPATH=src python benchmarks/study_estimate.py studies/seed.yaml --device cpu
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict

import torch

from perfstudy import data as datasets
from perfstudy.config import ENGINES
from perfstudy.dl.device import Timer, resolve_device
from perfstudy.dl.engines import resolve_engine
from perfstudy.dl.evaluate import accuracy, to_device
from perfstudy.dl.models import build_model
from perfstudy.dl.optimizers import make_optimizer
from perfstudy.progress import NullProgress
from perfstudy.provenance import device_name
from perfstudy.study import spec as studies


def dl_rates(cfg, device, steps: int) -> tuple[float, float]:
    """(training images/s, evaluation images/s) for this config's model and engine."""
    ds = datasets.load(cfg.dataset)
    n = steps * cfg.batch_size
    train = datasets.subset(ds.train, n)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.variant).to(device)
    opt = make_optimizer(model.parameters(), cfg)
    engine = resolve_engine(cfg.engine, device)
    setup = ENGINES.get(engine)(cfg, model, opt, train.x, train.y, ds.mean, ds.std, device,
                                NullProgress())
    setup.train_epoch(0)  # warm-up: workers, allocator, cudnn autotuning
    with Timer(device) as t:
        setup.train_epoch(1)
    val = datasets.subset(ds.val, min(1000, 10 * steps * 2))
    vx, vy = to_device(val, device)
    accuracy(model, vx, vy, ds.mean, ds.std)
    with Timer(device) as e:
        accuracy(model, vx, vy, ds.mean, ds.std)
    return n / (t.ms / 1e3), len(val) / (e.ms / 1e3)


def svm_seconds(cfg, subset: int) -> float:
    from perfstudy.svm.fit import fit_svm

    r = fit_svm(cfg.replace(train_subset=subset, eval_subset=1000))
    n = 49_000 if cfg.train_subset is None else cfg.train_subset
    fit = r.train_ms / 1e3 * (n / subset) ** 2  # libsvm fit: ~quadratic in n
    predict = r.eval_ms / 1e3 / 2000 * (n / subset) * 21_000  # linear in SVs and test points
    return fit + predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--steps", type=int, default=20, help="training steps measured per group")
    ap.add_argument("--svm-subset", type=int, default=3000)
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    device = resolve_device(args.device)
    runs = studies.load(args.study, only=args.only).runs()
    rates: dict[tuple, tuple[float, float]] = {}
    per_exp: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        cfg = run.config
        counts[run.experiment] += 1
        if cfg.kind == "flops":
            continue
        if cfg.kind == "svm":
            per_exp[run.experiment] += svm_seconds(cfg, args.svm_subset)
            continue
        cfg = cfg.replace(device=args.device)
        group = (cfg.model, cfg.variant, cfg.batch_size, cfg.optimizer, cfg.engine)
        if group not in rates:
            t0 = time.perf_counter()
            rates[group] = dl_rates(cfg, device, args.steps)
            print(f"measured {group}: train {rates[group][0]:.1f} img/s, eval "
                  f"{rates[group][1]:.1f} img/s ({time.perf_counter() - t0:.0f} s)", flush=True)
        train_rate, eval_rate = rates[group]
        n_train = cfg.train_subset or 49_000
        n_eval = (cfg.eval_subset or 7_000) * cfg.epochs + 2 * (cfg.eval_subset or 14_000)
        per_exp[run.experiment] += n_train * cfg.epochs / train_rate + n_eval / eval_rate
    print(f"\nmachine: {device_name(device)}; torch {torch.__version__}; "
          f"python {platform.python_version()}")
    print("\n| experiment | runs | estimated time (extrapolated from measured throughput) |")
    print("| --- | --- | --- |")
    for exp, n in counts.items():
        print(f"| {exp} | {n} | {per_exp[exp] / 3600:.2f} h |")
    print(f"| total | {sum(counts.values())} | {sum(per_exp.values()) / 3600:.2f} h |")


if __name__ == "__main__":
    main()
