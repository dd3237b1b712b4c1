"""The report's figures as PNG bytes. Built on ``matplotlib.figure.Figure`` with the Agg canvas,
never pyplot, so no global backend is switched and nothing needs a display. Each function
returns None when its data is absent, and the report simply leaves that figure out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from perfstudy.report import labels
from perfstudy.report.document import Figure
from perfstudy.report.experiments import Group
from perfstudy.report.seed_reference import SeedReference

DPI = 100
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
          "#7f7f7f", "#bcbd22", "#e377c2"]


def _png(fig: MplFigure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _ordered(items) -> list:
    out: list = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def _acc_ylim(ax, values: Sequence[float]) -> None:
    """Accuracies cluster (99.2-99.7 %): zoom to their range rather than 0-100."""
    if values:
        lo, hi = min(values), max(values)
        pad = max((hi - lo) * 0.15, 0.1)
        ax.set_ylim(max(lo - pad, 0), min(hi + pad, 100))


def accuracy_bars(fig_id: str, title: str, groups: list[Group], ref: SeedReference | None,
                  ) -> Figure | None:
    """Q1(a): test accuracy per (batch, optimizer, lr), one bar per model, seed as markers."""
    done = [g for g in groups if g.done]
    if not done:
        return None
    models = _ordered(g.config.get("model") for g in groups)
    combos = _ordered((g.config.get("batch_size"), g.config.get("optimizer"), g.config.get("lr"))
                      for g in groups)
    fig = MplFigure(figsize=(max(6.0, 1.1 * len(combos) + 2), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(models)
    values, seed_drawn = [], False
    for i, m in enumerate(models):
        xs, ys, errs, seeds = [], [], [], []
        for j, (b, o, lr) in enumerate(combos):
            g = next((g for g in groups if g.config.get("model") == m and
                      (g.config.get("batch_size"), g.config.get("optimizer"),
                       g.config.get("lr")) == (b, o, lr)), None)
            s = g.summary("test_acc") if g else None
            x = j + (i - (len(models) - 1) / 2) * width
            if s:
                xs.append(x)
                ys.append(s.mean)
                errs.append(s.std or 0.0)
                values.append(s.mean)
            seed = ref.q1a_acc(g.config) if (ref and g) else None
            if seed is not None:
                seeds.append((x, seed))
                values.append(seed)
        ax.bar(xs, ys, width * 0.95, yerr=errs, capsize=2, color=COLORS[i % len(COLORS)],
               label=labels.model(m))
        if seeds:
            ax.plot([x for x, _ in seeds], [v for _, v in seeds], "k_", markersize=14,
                    markeredgewidth=2, label=None if seed_drawn else "seed reported")
            seed_drawn = True
    ax.set_xticks(range(len(combos)))
    ax.set_xticklabels([f"b{b}\n{labels.value('optimizer', o)}\n{labels.value('lr', lr)}"
                        for b, o, lr in combos], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    _acc_ylim(ax, values)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return Figure(fig_id, title, _png(fig), "Bars: ours (test accuracy at the best-validation "
                  "epoch; error bars: std of repeats). Black dashes: the seed's figures.")


def learning_curves(fig_id: str, title: str, groups: list[Group]) -> Figure | None:
    """Validation accuracy per epoch, one panel per model, one line per configuration."""
    curves = [g for g in groups if any(r.result.curve for r in g.done)]
    if not curves:
        return None
    models = _ordered(g.config.get("model") for g in curves)
    keys = [k for k in ("optimizer", "lr", "batch_size", "device", "pin_memory")
            if len({repr(g.config.get(k)) for g in curves}) > 1]
    fig = MplFigure(figsize=(4.2 * len(models) + 1, 3.4))
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    def name(g: Group) -> str:
        return " ".join(labels.setting(k, g.config.get(k)) for k in keys) or labels.model(
            g.config.get("model"))

    # a configuration keeps its colour in every panel, and the legend lists each once
    names = _ordered(name(g) for g in curves)
    handles: dict[str, object] = {}
    values = []
    for ax, m in zip(axes, models, strict=True):
        for g in (g for g in curves if g.config.get("model") == m):
            epochs: dict[int, list[float]] = {}
            for r in g.done:
                for e in r.result.curve:
                    epochs.setdefault(e.epoch, []).append(e.val_acc)
            xs = sorted(epochs)
            ys = [sum(epochs[x]) / len(epochs[x]) for x in xs]
            values += ys
            i = names.index(name(g))
            (line,) = ax.plot(xs, ys, "-" if i < len(COLORS) else "--", marker="o",
                              markersize=3, color=COLORS[i % len(COLORS)])
            handles.setdefault(name(g), line)
        ax.set_title(labels.model(m), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ordered_names = [n for n in names if n in handles]
    axes[-1].legend([handles[n] for n in ordered_names], ordered_names, fontsize=7,
                    loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes[0].set_ylabel("validation accuracy (%)")
    if values:
        lo = sorted(values)[len(values) // 10]  # keep the first-epoch outliers from flattening
        for ax in axes:
            ax.set_ylim(max(lo - 1, 0), min(max(values) + 0.3, 100))
    fig.suptitle(title, fontsize=10)
    return Figure(fig_id, title, _png(fig), "Validation accuracy after each epoch (mean over "
                  "repeats). The axis starts near the 10th percentile of all points.")


def svm_plot(fig_id: str, title: str, groups: list[Group]) -> Figure | None:
    """Accuracy and fit time against C, one line per kernel (and poly degree), per dataset."""
    done = [g for g in groups if g.done]
    if not done:
        return None
    datasets = _ordered(g.config.get("dataset") for g in done)
    fig = MplFigure(figsize=(4.6 * len(datasets) + 0.5, 6.0))
    axes = fig.subplots(2, len(datasets), squeeze=False)
    for col, d in enumerate(datasets):
        mine = [g for g in done if g.config.get("dataset") == d]
        kinds = _ordered((g.config.get("kernel"), g.config.get("degree")) for g in mine)
        for i, (k, deg) in enumerate(kinds):
            line = sorted((g for g in mine if (g.config.get("kernel"), g.config.get("degree"))
                           == (k, deg)), key=lambda g: g.config.get("C"))
            xs = [g.config.get("C") for g in line]
            name = labels.value("kernel", k) + (f" d{deg}" if k == "poly" else "")
            color = COLORS[i % len(COLORS)]
            axes[0][col].plot(xs, [g.summary("test_acc").mean for g in line], "-o",
                              color=color, label=name, markersize=4)
            ts = [(g.config.get("C"), s.mean) for g in line if (s := g.summary("train_ms"))]
            axes[1][col].plot([c for c, _ in ts], [t for _, t in ts], "-o", color=color,
                              label=name, markersize=4)
        for row in (0, 1):
            axes[row][col].set_xscale("log")
            axes[row][col].grid(alpha=0.3)
            axes[row][col].set_xlabel("C")
        axes[1][col].set_yscale("log")
        axes[0][col].set_title(labels.dataset(d), fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[1][0].set_ylabel("fit time (ms, log)")
    fig.suptitle(title, fontsize=10)
    return Figure(fig_id, title, _png(fig), "Top: test accuracy against C. Bottom: fit time.")


def device_times(fig_id: str, title: str, groups: list[Group]) -> Figure | None:
    """Training time on CPU and GPU per model and optimizer, log scale."""
    done = [g for g in groups if g.done]
    if not done:
        return None
    combos = _ordered((g.config.get("model"), g.config.get("optimizer")) for g in groups)
    devices = [d for d in ("cpu", "cuda") if any(g.device == d for g in done)]
    devices += [d for d in _ordered(g.device for g in done) if d not in devices]
    fig = MplFigure(figsize=(max(6.0, 1.2 * len(combos) + 2), 3.8))
    ax = fig.subplots()
    width = 0.8 / max(len(devices), 1)
    secs: dict[tuple, float] = {}
    for i, dev in enumerate(devices):
        xs, ys = [], []
        for j, (m, o) in enumerate(combos):
            g = next((g for g in done if g.device == dev and g.config.get("model") == m
                      and g.config.get("optimizer") == o), None)
            s = g.summary("train_ms") if g else None
            if s:
                xs.append(j + (i - (len(devices) - 1) / 2) * width)
                ys.append(s.mean / 1e3)
                secs[dev, j] = s.mean / 1e3
        ax.bar(xs, ys, width * 0.95, color=COLORS[i % len(COLORS)],
               label=labels.value("device", dev))
    for j in range(len(combos)):  # the speedup, written over the GPU bar
        if ("cpu", j) in secs and ("cuda", j) in secs and "cuda" in devices:
            i = devices.index("cuda")
            ax.annotate(f"{secs['cpu', j] / secs['cuda', j]:.1f}×",
                        (j + (i - (len(devices) - 1) / 2) * width, secs["cuda", j]),
                        textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(combos)))
    ax.set_xticklabels([f"{labels.model(m)}\n{labels.value('optimizer', o)}" for m, o in combos],
                       fontsize=8)
    ax.set_ylabel("training time (s, log)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return Figure(fig_id, title, _png(fig), "Training wall time per run (data loading included, "
                  "evaluation excluded), log scale; the CPU→GPU speedup is written over the GPU "
                  "bar.")


def accuracy_vs_flops(fig_id: str, points: list[tuple[str, str, float, float]]) -> Figure | None:
    """(dataset, model, GFLOPs, best test accuracy) points, log-scaled compute."""
    if not points:
        return None
    fig = MplFigure(figsize=(6.0, 3.8))
    ax = fig.subplots()
    for i, d in enumerate(_ordered(p[0] for p in points)):
        mine = sorted((p for p in points if p[0] == d), key=lambda p: p[2])
        ax.plot([p[2] for p in mine], [p[3] for p in mine], "-o", color=COLORS[i % len(COLORS)],
                label=labels.dataset(d))
        for _, m, x, y in mine:
            ax.annotate(labels.model(m), (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set_xscale("log")
    xs = [p[2] for p in points]
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
    ys = [p[3] for p in points]
    ax.set_ylim(math.floor(min(ys) - 1), min(100.0, math.ceil(max(ys) + 0.5)))
    ax.set_xlabel("forward GFLOPs per image at the trained input (log)")
    ax.set_ylabel("best test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy vs compute", fontsize=10)
    return Figure(fig_id, "Accuracy vs FLOPs", _png(fig), "Best test accuracy of each model "
                  "against its forward FLOPs per image at the input it was trained on.")
