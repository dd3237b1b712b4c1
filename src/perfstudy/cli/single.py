"""Single-run commands: ``train``, ``svm``, ``flops`` and ``data check``."""

from __future__ import annotations

import argparse
from dataclasses import fields

from perfstudy.cli.output import print_json, print_mapping, print_table
from perfstudy.config import (
    DATASETS,
    DEVICES,
    ENGINES,
    KERNELS,
    MODELS,
    OPTIMIZERS,
    SVM_BACKENDS,
    VARIANTS,
    WEIGHTS,
    DLConfig,
    SVMConfig,
    parse_input,
)
from perfstudy.errors import UsageError
from perfstudy.progress import progress_bars, wanted
from perfstudy.results import RunResult

DL = {f.name: f.default for f in fields(DLConfig)}
SV = {f.name: f.default for f in fields(SVMConfig)}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder with the IDX files (else $PERFSTUDY_DATA_DIR, "
                   "~/.cache/perfstudy, /usr/share/datasets, then download)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _subsets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 70/10/20 split")
    p.add_argument("--train-subset", type=int, metavar="N",
                   help="train on a stratified subset of N training images")
    p.add_argument("--eval-subset", type=int, metavar="N",
                   help="evaluate on stratified subsets of N val and N test images")


def add_commands(sub) -> None:
    _train_command(sub)
    _svm_command(sub)
    _flops_command(sub)
    _data_command(sub)


def _train_command(sub) -> None:
    p = sub.add_parser("train", help="train one deep-learning model and report its metrics",
                       description="Train one ResNet; print test accuracy (at the best-"
                       "validation epoch and the last), training time and the epoch curve.")
    p.add_argument("--dataset", choices=DATASETS, default=DL["dataset"])
    p.add_argument("--model", choices=MODELS.names(), default=DL["model"])
    p.add_argument("--variant", choices=VARIANTS, default=DL["variant"],
                   help="native: 1x28x28 input, 3x3 stem; imagenet: 7x7 stem, resized to 224")
    p.add_argument("--weights", choices=WEIGHTS, default=DL["weights"],
                   help="initial weights: none (random) or imagenet (torchvision's, "
                   "resnet18/resnet50; downloaded once into torch's cache)")
    p.add_argument("--batch-size", type=int, default=DL["batch_size"])
    p.add_argument("--optimizer", choices=OPTIMIZERS.names(), default=DL["optimizer"])
    p.add_argument("--lr", type=float, default=DL["lr"], help="learning rate")
    p.add_argument("--momentum", type=float, default=DL["momentum"], help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=DL["weight_decay"])
    p.add_argument("--epochs", type=int, default=DL["epochs"])
    p.add_argument("--pin-memory", action=argparse.BooleanOptionalAction,
                   default=DL["pin_memory"], help="DataLoader pin_memory (plain engine)")
    p.add_argument("--num-workers", type=int, default=DL["num_workers"],
                   help="DataLoader worker processes (plain engine)")
    p.add_argument("--device", choices=DEVICES, default=DL["device"])
    p.add_argument("--engine", choices=("auto", *ENGINES.names()), default=DL["engine"],
                   help="auto: fast on CUDA; cpu on a CPU with native bf16; else plain")
    p.add_argument("--seed", type=int, default=DL["seed"], help="init and shuffle seed")
    _subsets(p)
    _common(p)
    p.set_defaults(func=cmd_train)


def _svm_command(sub) -> None:
    p = sub.add_parser("svm", help="fit one SVM (one-vs-one SVC) and report its metrics",
                       description="Fit one SVM on pixels scaled to [0,1]; print fit and "
                       "predict time, val/test accuracy and support-vector count.")
    p.add_argument("--dataset", choices=DATASETS, default=SV["dataset"])
    p.add_argument("--kernel", choices=KERNELS, default=SV["kernel"])
    p.add_argument("--C", type=float, default=SV["C"], help="regularisation parameter")
    p.add_argument("--degree", type=int, default=SV["degree"], help="poly kernel degree")
    p.add_argument("--gamma", default=SV["gamma"], help="'scale', 'auto' or a number")
    p.add_argument("--coef0", type=float, default=SV["coef0"], help="poly kernel's constant")
    p.add_argument("--tol", type=float, default=SV["tol"], help="libsvm's stopping tolerance")
    p.add_argument("--svm-backend", dest="backend", default=SV["backend"],
                   help=f"{' | '.join(SVM_BACKENDS.names())} | auto (the fastest available)")
    p.add_argument("--seed", type=int, default=SV["seed"])
    _subsets(p)
    _common(p)
    p.set_defaults(func=cmd_svm)


def _flops_command(sub) -> None:
    p = sub.add_parser("flops", help="forward MACs/FLOPs, training FLOPs and parameters",
                       description="Count MACs and FLOPs (FLOPs = 2 x MACs) with PyTorch's "
                       "flop counter. With no --model: every model at its trained input and "
                       "at the seed's 3x224x224 setting.")
    p.add_argument("--model", choices=MODELS.names())
    p.add_argument("--variant", choices=VARIANTS, default="native")
    p.add_argument("--input", metavar="CxHxW", help="input size fed to the network core")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=cmd_flops)


def _data_command(sub) -> None:
    p = sub.add_parser("data", help="dataset commands")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=type(p))
    p = dsub.add_parser("check", help="find and verify the datasets; show split sizes",
                        description="Per dataset: where the files were found, their MD5 "
                        "checksums, the split sizes and per-class counts.")
    p.add_argument("--dataset", choices=DATASETS, action="append",
                   help="only this dataset (repeatable; default: all)")
    p.add_argument("--split-seed", type=int, default=0)
    _common(p)
    p.set_defaults(func=cmd_data_check)


def _config_from(args, cls):
    names = set(cls.field_names())
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def _run_single(args, cls, runner) -> int:
    cfg = _config_from(args, cls)
    with progress_bars(wanted(args.quiet or args.json)) as progress:
        result = runner(cfg, data_dir=args.data_dir, progress=progress)
    if args.json:
        print_json(result.to_dict())
    else:
        show_result(result)
    return 0


def cmd_train(args) -> int:
    from perfstudy.dl.train import train_dl

    return _run_single(args, DLConfig, train_dl)


def cmd_svm(args) -> int:
    from perfstudy.svm.fit import fit_svm

    return _run_single(args, SVMConfig, fit_svm)


def show_result(r: RunResult) -> None:
    summary = {
        "test accuracy % (best-val epoch)": r.test_acc,
        "test accuracy % (last epoch)": r.test_acc_last,
        "best val accuracy %": r.val_acc,
        "best epoch": r.best_epoch,
        "train ms" if r.kind == "dl" else "fit ms": r.train_ms,
        "eval ms" if r.kind == "dl" else "predict ms (val+test)": r.eval_ms,
        "images/s": r.images_per_s,
        "peak memory MiB": r.peak_mem_mb,
        "support vectors": r.n_support,
        "device": r.provenance.get("device_name"),
        **{k: v for k, v in r.extra.items()},
    }
    cfg = ", ".join(f"{k}={v}" for k, v in r.config.items() if k != "kind")
    print_mapping(cfg, {k: v for k, v in summary.items() if v is not None})
    if r.curve:
        print_table("per epoch", ["epoch", "train loss", "val acc %", "seconds"],
                    [(e.epoch, e.train_loss, e.val_acc, e.seconds) for e in r.curve])


def cmd_flops(args) -> int:
    from perfstudy.dl import flops

    if args.input and not args.model:
        raise UsageError("--input needs --model (without --model every model is counted at its "
                         "own inputs)")
    if args.model:
        shape = parse_input(args.input) if args.input else None
        infos = [flops.count(args.model, args.variant, shape)]
    else:
        infos = flops.table()
    if args.json:
        print_json([i.to_dict() for i in infos])
        return 0
    print_table(
        "forward MACs and FLOPs per image (FLOPs = 2 x MACs); training = forward + backward",
        ["model", "variant", "input", "GMACs", "GFLOPs", "train GFLOPs", "params (M)"],
        [(i.model, i.variant, "x".join(map(str, i.input)), i.macs / 1e9, i.flops / 1e9,
          i.train_flops / 1e9, i.params / 1e6) for i in infos],
    )
    return 0


def cmd_data_check(args) -> int:
    from perfstudy import data

    reports = [data.check(name, args.data_dir, args.split_seed)
               for name in (args.dataset or DATASETS)]
    if args.json:
        print_json(reports)
        return 0
    for rep in reports:
        show_data_report(rep)
    return 0


def show_data_report(rep: dict) -> None:
    sizes = ", ".join(f"{k} {v:,}" for k, v in rep["sizes"].items())
    print_mapping(f"{rep['name']}: {rep['dir']} (found via {rep['how']})", {
        f"split (seed {rep['split_seed']})": sizes,
        "train pixel mean / std": f"{rep['mean']:.4f} / {rep['std']:.4f}",
    })
    print_table("files (MD5 of the uncompressed content, verified)", ["file", "md5", "ok"],
                [(f, i["md5"], i["ok"]) for f, i in rep["files"].items()])
    counts = rep["class_counts"]
    print_table("images per class", ["split", *map(str, range(len(counts["train"])))],
                [(s, *per) for s, per in counts.items()])
