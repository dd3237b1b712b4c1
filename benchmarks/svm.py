"""SVM backends on the study's full split: fit and predict times, accuracy, support vectors;
optionally the whole Q1(b) grid's wall time, an equivalence check against libsvm on a subset,
and the torch solver's precision/graph/memory variants.

    PYTHONPATH=src python benchmarks/svm.py [--backends torch,sklearn,sklearnex] [--device cuda]
        [--subset N] [--grid] [--check N] [--variants] [--out FILE.md]

Times are wall-clock with the device synchronised (perfstudy.dl.device.Timer). CUDA start-up and a
first small fit (kernel loading, allocator growth) run before anything is timed and are reported
on their own line, not inside any figure. Markdown goes to stdout row by row, and to --out
after every table, so a run stopped midway still leaves what it measured.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

from perfstudy import data, provenance
from perfstudy.config import SVMConfig
from perfstudy.dl.device import Timer
from perfstudy.svm.backends import available, make_estimator

MAIN = [("rbf", 10.0, 0), ("poly", 10.0, 2), ("poly", 10.0, 4)]
GRID = [("rbf", C, 0) for C in (0.1, 1.0, 10.0)] + [
    ("poly", C, d) for C in (0.1, 1.0, 10.0) for d in (2, 3, 4)
]
VARIANTS = {
    "default": {},
    "state fp32": {"dtype": "float32"},
    "tf32 kernel GEMMs": {"tf32": True},
    "no CUDA graph": {"cuda_graph": False},
    "row cache (no full matrix)": {"kernel_cache": "rows"},
}


def features(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


class Report:
    """Markdown printed as it comes and rewritten to ``path`` after each table."""

    def __init__(self, path: str | None):
        self.path, self.lines = path, []

    def add(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def table(self, header: list[str]) -> None:
        self.add()
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "---|" * len(header))

    def row(self, cells: list) -> None:
        self.add("| " + " | ".join(_fmt(c) for c in cells) + " |")

    def save(self) -> None:
        if self.path:
            Path(self.path).write_text("\n".join(self.lines) + "\n")


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 0.01 else f"{c:.2f}"
    return str(c)


def build(backend: str, kernel: str, C: float, degree: int, device: str, **torch_opts):
    cfg = SVMConfig(kernel=kernel, C=C, degree=degree, backend=backend)
    est = make_estimator(cfg)
    if backend == "torch":
        est.set_params(device=device, **torch_opts)
    return est


def timing_device(backend: str, device: str) -> str:
    return device if backend == "torch" else "cpu"


def fit_predict(est, train, tests, dev):
    """(fit s, predictions, predict s per split, cores busy during the fit: process CPU time
    over wall time, ~1 for libsvm, ~the core count for a library that uses them all)."""
    cpu0 = time.process_time()
    with Timer(dev) as t_fit:
        est.fit(features(train.x), train.y)
    busy = (time.process_time() - cpu0) / (t_fit.ms / 1e3)
    preds, secs = [], []
    for split in tests:
        with Timer(dev) as t:
            preds.append(est.predict(features(split.x)))
        secs.append(t.ms / 1e3)
    return t_fit.ms / 1e3, preds, secs, busy


def iters(est, backend: str) -> str:
    """Per-pair iterations, max and sum (libsvm and torch count the same SMO steps; oneDAL's
    n_iter_ counts something else, so it is left out)."""
    n = getattr(est, "n_iter_", None)
    if n is None or backend == "sklearnex":
        return ""
    return f"{int(np.max(n))} / {int(np.sum(n))}"


def machine(report: Report, device: str) -> None:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    report.add(f"- CPU: {provenance.cpu_model()}, {torch.get_num_threads()} torch threads")
    if torch.device(device).type == "cuda":
        report.add(f"- GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    report.add(
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, scikit-learn-intelex "
        f"{version('scikit-learn-intelex')}, numpy {np.__version__}"
    )


def warm_up(report: Report, device: str, train) -> None:
    if torch.device(device).type != "cuda":
        return
    t0 = time.perf_counter()
    torch.zeros(1, device=device)
    torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    small = data.subset(train, 500, seed=0)
    build("torch", "rbf", 1.0, 0, device).fit(features(small.x), small.y)
    torch.cuda.synchronize(device)
    t2 = time.perf_counter()
    report.add(
        f"- warm-up, not in any figure: CUDA context {t1 - t0:.2f} s, "
        f"first fit (500 images) {t2 - t1:.2f} s"
    )


def main_table(report, args, datasets) -> None:
    report.add()
    n_train = len(next(iter(datasets.values()))["train"])
    report.add(f"### Fit and predict: {n_train:,} training images, 14,000 test images")
    report.table(
        [
            "backend",
            "dataset",
            "kernel",
            "C",
            "degree",
            "fit s",
            "fit cores busy",
            "predict 14k s",
            "test acc % (right)",
            "n SV",
            "iterations max / sum",
        ]
    )
    for backend in args.backends:
        for name, ds in datasets.items():
            for kernel, C, degree in MAIN:
                est = build(backend, kernel, C, degree, args.device)
                dev = timing_device(backend, args.device)
                fit_s, (pred,), (pred_s,), busy = fit_predict(est, ds["train"], [ds["test"]], dev)
                right = int(np.sum(pred == ds["test"].y))
                acc = f"{100 * right / len(pred):.2f} ({right})"
                report.row(
                    [
                        backend,
                        name,
                        kernel,
                        C,
                        degree or "",
                        fit_s,
                        f"{busy:.2f}",
                        pred_s,
                        acc,
                        int(np.sum(est.n_support_)),
                        iters(est, backend),
                    ]
                )
    report.save()


def grid(report, args, datasets) -> None:
    for backend in args.backends:
        report.add()
        report.add(
            f"### Q1(b) grid, backend {backend}: {len(datasets) * len(GRID)} fits, "
            "each predicting val (7,000) and test (14,000)"
        )
        report.table(["dataset", "kernel", "C", "degree", "fit s", "predict s", "val %", "test %"])
        dev = timing_device(backend, args.device)
        with Timer(dev) as total:
            for name, ds in datasets.items():
                for kernel, C, degree in GRID:
                    est = build(backend, kernel, C, degree, args.device)
                    splits = [ds["val"], ds["test"]]
                    fit_s, preds, secs, _busy = fit_predict(est, ds["train"], splits, dev)
                    va, te = (
                        100 * float(np.mean(p == s.y))
                        for p, s in zip(preds, (ds["val"], ds["test"]), strict=True)
                    )
                    report.row(
                        [name, kernel, C, degree or "", fit_s, sum(secs), f"{va:.2f}", f"{te:.2f}"]
                    )
        report.add()
        report.add(f"**Whole grid, backend {backend}: {total.ms / 1e3:.1f} s wall**")
        report.save()


def check(report, args, datasets) -> None:
    """torch (on --device) against libsvm on a stratified subset, for every grid config."""
    from sklearn.svm import SVC

    report.add()
    report.add(
        f"### Equivalence with libsvm: {args.check} training images, 1,000 test images, "
        f"torch on {args.device}"
    )
    report.table(
        [
            "dataset",
            "kernel",
            "C",
            "degree",
            "right: libsvm / torch",
            "n SV: libsvm / torch",
            "SV diff %",
            "r(decision)",
            "max abs d(decision)",
            "max d(rho)",
        ]
    )
    for name, ds in datasets.items():
        tr = data.subset(ds["train"], args.check, seed=0)
        te = data.subset(ds["test"], 1000, seed=0)
        xtr, xte = features(tr.x), features(te.x)
        for kernel, C, degree in GRID:
            params = dict(kernel=kernel, C=C, degree=max(degree, 1), decision_function_shape="ovo")
            ref = SVC(**params).fit(xtr, tr.y)
            ours = build("torch", kernel, C, degree, args.device).fit(xtr, tr.y)
            d_ref, d_ours = ref.decision_function(xte), ours.decision_function(xte)
            n_ref, n_ours = int(ref.n_support_.sum()), int(ours.n_support_.sum())
            report.row(
                [
                    name,
                    kernel,
                    C,
                    degree or "",
                    f"{int(np.sum(ref.predict(xte) == te.y))} / "
                    f"{int(np.sum(ours.predict(xte) == te.y))}",
                    f"{n_ref} / {n_ours}",
                    f"{100 * (n_ours - n_ref) / n_ref:+.2f}",
                    f"{np.corrcoef(d_ref.ravel(), d_ours.ravel())[0, 1]:.7f}",
                    float(np.abs(d_ref - d_ours).max()),
                    float(np.abs(ref.intercept_ - ours.intercept_).max()),
                ]
            )
    report.save()


def variants(report, args, datasets) -> None:
    """The torch solver's choices, each against the default: same problem, measured effect."""
    name = next(iter(datasets))
    ds = datasets[name]
    for kernel, C, degree in [("rbf", 10.0, 0), ("poly", 10.0, 4)]:
        report.add()
        report.add(f"### torch variants on {args.device}: {name} {kernel} C={C} degree {degree}")
        report.table(
            [
                "variant",
                "fit s",
                "test acc %",
                "n SV",
                "iterations max / sum",
                "max abs d(decision) vs default",
                "kernel source",
            ]
        )
        ref = None
        for label, opts in VARIANTS.items():
            on_cuda = torch.device(args.device).type == "cuda"
            if ("cuda_graph" in opts or "tf32" in opts) and not on_cuda:
                continue  # both only change anything on an NVIDIA GPU
            est = build("torch", kernel, C, degree, args.device, **opts)
            fit_s, (pred,), _, _busy = fit_predict(est, ds["train"], [ds["test"]], args.device)
            dec = est.decision_function(features(ds["test"].x[:2000]))
            ref = dec if ref is None else ref
            report.row(
                [
                    label,
                    fit_s,
                    f"{100 * float(np.mean(pred == ds['test'].y)):.2f}",
                    int(np.sum(est.n_support_)),
                    iters(est, "torch"),
                    float(np.abs(dec - ref).max()),
                    est.kernel_cache_used_,
                ]
            )
        report.save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backends",
        default=",".join(available()),
        help="comma-separated (default: all available here)",
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch backend's device",
    )
    p.add_argument("--datasets", default="mnist,fashion-mnist")
    p.add_argument("--subset", type=int, default=None, help="train on N stratified images")
    p.add_argument("--grid", action="store_true", help="time the whole Q1(b) grid")
    p.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="equivalence with libsvm on N training images, every grid config",
    )
    p.add_argument("--variants", action="store_true", help="torch precision/graph/cache variants")
    p.add_argument("--no-main", action="store_true", help="skip the fit/predict table")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="also write the markdown here")
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]

    report = Report(args.out)
    report.add(f"## SVM benchmark ({time.strftime('%Y-%m-%d %H:%M')}): `{' '.join(sys.argv)}`")
    report.add()
    machine(report, args.device)
    datasets = {}
    for name in args.datasets.split(","):
        ds = data.load(name, data_dir=args.data_dir)
        train = ds.train if args.subset is None else data.subset(ds.train, args.subset, seed=0)
        datasets[name] = {"train": train, "val": ds.val, "test": ds.test}
    warm_up(report, args.device, next(iter(datasets.values()))["train"])
    report.save()
    if not args.no_main:
        main_table(report, args, datasets)
    if args.grid:
        grid(report, args, datasets)
    if args.check:
        check(report, args, datasets)
    if args.variants:
        variants(report, args, datasets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
