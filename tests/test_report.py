"""The report from a small synthetic store (real SQLite, written through Store.add/claim/finish):
exact table cells, analysis sentences with their computed numbers, partial stores, files."""

from __future__ import annotations

import argparse
import csv
import math
import statistics

import pytest

from perfstudy.config import DLConfig, FlopsConfig, SVMConfig
from perfstudy.report import build_report, write_report
from perfstudy.report.experiments import layout
from perfstudy.results import EpochStats, RunResult
from perfstudy.study.spec import Run
from perfstudy.study.store import Store

N_TRAIN = 49_000
PROV = {"perfstudy": "0.1.0", "git_commit": "abc1234", "torch": "2.14.1", "host": "testhost"}

# (model, batch, optimizer) -> test accuracy per seed; None = failed, "pending" = not run yet
GRID = {
    ("resnet18", 16, "sgd"): [98.90, 99.10],
    ("resnet18", 16, "adam"): [99.40, 99.60],
    ("resnet18", 32, "sgd"): [98.90, 99.10, 99.30],
    ("resnet18", 32, "adam"): [99.40, 99.50],
    ("resnet50", 16, "sgd"): [99.20, 99.40],
    ("resnet50", 16, "adam"): [99.50, 99.70],
    ("resnet50", 32, "sgd"): [99.20, "pending"],
    ("resnet50", 32, "adam"): [None, "pending"],
}
CURVES = {  # validation accuracy per epoch; the rest reach 99 % at epoch 3
    ("resnet18", 32, "adam"): [98.8, 99.2, 99.4],
    ("resnet50", 16, "adam"): [99.1, 99.4, 99.6],
    ("resnet50", 16, "sgd"): [97.0, 98.0, 98.9],
}
EPOCH_S = {("resnet18", 16): 10, ("resnet18", 32): 6, ("resnet50", 16): 25, ("resnet50", 32): 15}


def dl_result(cfg: DLConfig, acc: float, epoch_s: float, curve: list[float], device: str,
              n_test: int = 10_000) -> RunResult:
    stats = [EpochStats(i + 1, 0.5 / (i + 1), v, epoch_s) for i, v in enumerate(curve)]
    train_ms = 1000 * epoch_s * len(curve)
    return RunResult(
        "dl", cfg.to_dict(), test_acc=acc, test_acc_last=round(acc - 0.05, 2),
        val_acc=max(curve), best_epoch=curve.index(max(curve)) + 1, train_ms=train_ms,
        eval_ms=500.0, images_per_s=N_TRAIN * len(curve) / (train_ms / 1000), curve=stats,
        extra={"engine": "resident", "n_train": N_TRAIN, "n_test": n_test},
        provenance={**PROV, "device": device, "device_name": "NVIDIA H200" if device == "cuda"
                    else "CPU: test"})


def finish(store: Store, study: str, runs: list[Run], result) -> None:
    store.add(study, runs)
    assert store.claim(runs[0].key)
    if isinstance(result, str):
        store.fail(runs[0].key, result)
    else:
        store.finish(runs[0].key, result)


def make_store(path, study: str = "t") -> Store:
    store = Store(path)
    for (model, batch, opt), accs in GRID.items():
        for seed, acc in enumerate(accs):
            cfg = DLConfig(dataset="mnist", model=model, batch_size=batch, optimizer=opt,
                           lr=1e-3, epochs=3, seed=seed)
            run = Run("grid", cfg)
            if acc == "pending":
                store.add(study, [run])
                continue
            if acc is None:
                finish(store, study, [run], "RuntimeError: CUDA out of memory\nTraceback ...")
                continue
            curve = CURVES.get((model, batch, opt), [98.2, 98.9, 99.3])
            finish(store, study, [run], dl_result(cfg, acc, EPOCH_S[model, batch] + seed, curve,
                                                  "cuda"))
    # side experiment: pin_memory; its pin_memory=True run is the grid's (stored once)
    base = DLConfig(dataset="mnist", model="resnet18", batch_size=16, optimizer="adam", lr=1e-3,
                    epochs=3, seed=0)
    store.add(study, [Run("pin", base)])
    off = base.replace(pin_memory=False)
    finish(store, study, [Run("pin", off)], dl_result(off, 99.45, 12, [98.2, 98.9, 99.3],
                                                      "cuda"))
    # CPU vs GPU, named freely: recognised by its configs
    q2 = {("resnet18", "cpu"): (88.00, 50_000), ("resnet18", "cuda"): (88.20, 2_500),
          ("resnet32", "cpu"): (86.00, 150_000), ("resnet32", "cuda"): (85.90, 5_000)}
    for (model, device), (acc, epoch_ms) in q2.items():
        cfg = DLConfig(dataset="fashion-mnist", model=model, batch_size=16, optimizer="adam",
                       lr=1e-3, epochs=2, device=device, train_subset=10_000)
        finish(store, study, [Run("devices", cfg)],
               dl_result(cfg, acc, epoch_ms / 1000, [85.0, acc], device, n_test=14_000))
    svm = {("rbf", 1.0, 3): (97.00, 2000), ("rbf", 10.0, 3): (97.50, 1500),
           ("poly", 1.0, 2): (96.80, 3000), ("poly", 10.0, 2): (97.60, 2500)}
    for (kernel, c, degree), (acc, ms) in svm.items():
        cfg = SVMConfig(dataset="mnist", kernel=kernel, C=c, degree=degree)
        finish(store, study, [Run("svm", cfg)], RunResult(
            "svm", cfg.to_dict(), test_acc=acc, val_acc=acc, train_ms=ms, eval_ms=100.0,
            n_support=1000, extra={"backend": "sklearn", "n_train": N_TRAIN, "n_test": 1000},
            provenance={**PROV, "device": "cpu"}))
    flops = {("resnet18", "native"): (455_800_000, [1, 28, 28], 11_170_000),
             ("resnet18", "imagenet"): (1_813_600_000, [3, 224, 224], 11_180_000),
             ("resnet50", "native"): (1_046_800_000, [1, 28, 28], 23_520_000),
             ("resnet50", "imagenet"): (4_087_200_000, [3, 224, 224], 23_530_000)}
    for (model, variant), (macs, shape, params) in flops.items():
        cfg = FlopsConfig(model=model, variant=variant)
        finish(store, study, [Run("flops", cfg)], RunResult(
            "flops", cfg.to_dict(), extra={"model": model, "variant": variant, "input": shape,
                                           "macs": macs, "flops": 2 * macs,
                                           "train_flops": 6 * macs, "params": params},
            provenance=PROV))
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = make_store(tmp_path_factory.mktemp("store") / "t.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def report(store):
    return build_report(store)


def _pooled() -> float:
    groups = [v for v in GRID.values() if all(isinstance(a, float) for a in v) and len(v) > 1]
    ss = sum((len(v) - 1) * statistics.variance(v) for v in groups)
    return math.sqrt(ss / sum(len(v) - 1 for v in groups))


# -- layouts -----------------------------------------------------------------------------------
def test_layout_is_chosen_by_config_with_the_name_as_hint():
    assert layout("anything", "dl", ["model", "batch_size", "optimizer", "lr"]) == "q1a"
    assert layout("anything", "dl", ["dataset", "model", "optimizer", "batch_size"]) == "q1a"
    assert layout("q1a", "dl", ["dataset", "optimizer"]) == "q1a"  # the hint decides
    assert layout("q1a_5_epochs", "dl", ["dataset", "model", "optimizer"]) == "generic"
    assert layout("q1a_pin_memory", "dl", ["dataset", "batch_size", "pin_memory"]) == "generic"
    assert layout("cpu_gpu", "dl", ["model", "optimizer", "device"]) == "q2"
    assert layout("q2", "dl", ["device", "epochs"]) == "generic"
    assert layout("x", "svm", ["dataset", "kernel", "C", "degree"]) == "q1b"
    assert layout("x", "svm", ["gamma"]) == "generic"
    assert layout("x", "flops", ["model"]) == "flops"


def test_every_experiment_gets_its_layout(report):
    status = report.table("status")
    assert status.column("Experiment") == ["grid", "pin", "devices", "svm", "flops"]
    assert status.column("Shown as") == ["Q1(a) layout", "generic table", "Q2 layout",
                                         "Q1(b) layout", "FLOPs layout"]
    assert status.text("done", Experiment="grid") == "14"
    assert status.text("failed", Experiment="grid") == "1"
    assert status.text("pending", Experiment="grid") == "2"
    assert status.text("Runs", Experiment="pin") == "2"  # one of them shared with grid


# -- Q1(a) -------------------------------------------------------------------------------------
def test_q1a_cells(report):
    t = report.table("grid")
    assert t.title == "Q1(a): MNIST test accuracy (grid)"
    assert t.columns[:3] == ["Batch", "Optimizer", "LR"]
    assert t.columns[-1] == "pin_memory"
    row = {"Batch": "32", "Optimizer": "SGD", "LR": "0.001"}
    assert t.text("ResNet-18 acc (%)", **row) == "99.10 ± 0.20 (3)"
    assert t.text("ResNet-18 last ep. (%)", **row) == "99.05 ± 0.20 (3)"
    assert t.text("ResNet-50 acc (%)", **row) == "99.20"  # one repeat done, one pending
    assert t.text("ResNet-50 acc (%)", Batch="32", Optimizer="Adam", LR="0.001") == "failed"
    assert t.text("ResNet-18 acc (%)", Batch="16", Optimizer="SGD", LR="0.001") == \
        "99.00 ± 0.14 (2)"
    best = t.cell("ResNet-50 acc (%)", Batch="16", Optimizer="Adam", LR="0.001")
    assert best.text == "99.60 ± 0.14 (2)" and "best" in best.css
    assert t.text("pin_memory", Batch="16", Optimizer="SGD", LR="0.001") == "True"


def test_q1a_seed_columns_and_flags(report):
    t = report.table("grid")
    row = {"Batch": "16", "Optimizer": "SGD", "LR": "0.001"}
    assert t.text("ResNet-18 seed (%)", **row) == "99.38"
    flagged = t.cell("ResNet-18 Δ", **row)  # 99.00 - 99.38 = -0.38 > 2 x 0.15 pooled std
    assert flagged.text == "−0.38 ⚠" and "flag" in flagged.css
    calm = t.cell("ResNet-18 Δ", Batch="16", Optimizer="Adam", LR="0.001")  # 99.50 - 99.68
    assert calm.text == "−0.18" and "flag" not in calm.css
    assert t.text("ResNet-50 seed (%)", Batch="16", Optimizer="Adam", LR="0.001") == "99.88"
    assert any(f"pooled over 6 configuration(s) with 13 runs: {_pooled():.2f} pp" in n
               for n in t.notes)
    assert "Budget: ours 3 epochs; the seed 10 epochs on the full training split. " \
           "Differences from the seed column are expected from the budget alone." in t.notes


def test_q1a_analysis_sentences(report):
    bullets = report.section("grid").bullets
    pooled = _pooled()
    assert round(pooled, 2) == 0.15
    best = bullets[0]
    assert best.startswith("**Q1(a) MNIST**: best ResNet-50 · Adam · lr 0.001 · batch 16 at "
                           "99.60 ± 0.14 (2) % test accuracy (best-validation epoch; last epoch "
                           "99.55 %); runner-up ResNet-18 · Adam · lr 0.001 · batch 16 at "
                           "99.50 ± 0.14 (2) %.")
    assert f"Margin 0.10 pp = {0.10 / pooled:.1f}× the yardstick: **within noise**" in best
    assert f"(yardstick: run-to-run std {pooled:.2f} pp)" in best
    assert "3 configurations are within noise of the best" in best
    assert best.endswith("(1 configuration(s) without a result yet).")  # failed
    opt = next(b for b in bullets if b.startswith("Effect of optimizer"))
    diffs = [0.50, 0.35, 0.30]
    assert opt.startswith(f"Effect of optimizer: Adam vs SGD +{statistics.mean(diffs):.2f} pp "
                          "on average over 3 pair(s)")
    assert f"std {statistics.stdev(diffs):.2f} pp, Adam ahead in 3 of 3" in opt
    assert "**beyond noise**" in opt
    batch = next(b for b in bullets if b.startswith("Effect of batch"))
    assert batch.startswith("Effect of batch: batch 32 vs batch 16 −0.02 pp")
    assert "**within noise**" in batch and "batch 32 ahead in 1 of 3" in batch
    model = next(b for b in bullets if b.startswith("Effect of model"))
    assert model.startswith("Effect of model: ResNet-50 vs ResNet-18 +0.17 pp")
    assert "**within noise**" in model
    seed = next(b for b in bullets if b.startswith("Against the seed"))
    assert seed.startswith("Against the seed: 1 of 7 cells differ beyond noise")
    assert "largest −0.38 pp at ResNet-18 · SGD · lr 0.001 · batch 16" in seed
    assert any("The seed's best cell, ResNet-50 · Adam · lr 0.001 · batch 16 (99.88 %), is our "
               "best too (99.60 %)." == b for b in bullets)
    record = next(b for b in bullets if b.startswith("Seed oddity"))
    assert "99.88 % (ResNet-50 · Adam · lr 0.001 · batch 16; ours 99.60 %)" in record
    assert "about 99.8 %" in record


# -- Q1(b) -------------------------------------------------------------------------------------
def test_svm_table_and_binomial_yardstick(report):
    t = report.table("svm")
    row = {"Dataset": "MNIST", "Kernel": "RBF", "C": "1"}
    assert t.text("Degree", **row) == "–"
    assert t.text("Accuracy (%)", **row) == "97.00"
    assert t.text("Seed (%)", **row) == "95.18"
    se = 100 * math.sqrt(0.97 * 0.03 / 1000)  # 0.54 pp: +1.82 is beyond 2 x SE
    assert 1.82 > 2 * se
    assert t.text("Δ", **row) == "+1.82 ⚠"
    assert t.text("Train time (ms)", **row) == "2,000"
    assert t.text("Seed time (ms)", **row) == "40,595"
    assert t.text("Degree", Dataset="MNIST", Kernel="Poly", C="10") == "2"
    assert "best" in t.cell("Accuracy (%)", Dataset="MNIST", Kernel="Poly", C="10").css
    bullets = report.section("svm").bullets
    best = bullets[0]
    se_best = 100 * math.sqrt(0.976 * 0.024 / 1000)
    assert best.startswith("**Q1(b) SVM, MNIST**: best Poly d2 · C 10 at 97.60 % test accuracy;"
                           " runner-up RBF · C 10 at 97.50 %. Margin 0.10 pp = "
                           f"{0.10 / se_best:.1f}× the yardstick: **within noise**")
    assert f"binomial SE {se_best:.2f} pp; run-to-run spread unknown" in best
    assert "Effect of C: C 10 vs C 1 +0.65 pp on average over 2 pair(s)" in " ".join(bullets)
    assert ("Effect of C on fit time, geometric mean over pairs of runs that differ only in it: "
            f"C 10 vs C 1 ×{math.sqrt(1500 / 2000 * 2500 / 3000):.2f} (2 pair(s), range "
            "×0.75–×0.83; C 10 higher in 0 of 2) (fit time spread unknown: no repeats, so not "
            "judged against noise).") in bullets


# -- Q2 ----------------------------------------------------------------------------------------
def test_q2_tables_and_speedups(report):
    acc = report.table("devices-accuracy")
    tim = report.table("devices-time")
    gpu = {"Compute": "GPU", "Batch": "16", "Optimizer": "Adam", "LR": "0.001"}
    cpu = {**gpu, "Compute": "CPU"}
    assert acc.text("ResNet-18 acc (%)", **gpu) == "88.20"
    assert acc.text("ResNet-18 seed (%)", **gpu) == "80.77"
    assert acc.text("ResNet-18 Δ", **gpu) == "+7.43 ⚠"
    assert tim.text("ResNet-18 time (ms)", **cpu) == "100,000"
    assert tim.text("ResNet-18 time (ms)", **gpu) == "5,000"
    assert tim.text("ResNet-18 speedup", **gpu) == "20.0×"
    assert tim.text("ResNet-18 speedup", **cpu) == "–"
    assert tim.text("ResNet-32 speedup", **gpu) == "30.0×"
    assert tim.text("ResNet-18 seed speedup", **gpu) == f"{1036824 / 52771:.1f}×"
    assert tim.text("ResNet-32 seed (ms)", **gpu) == "164,316"
    bullets = report.section("devices").bullets
    # the speedup names the machines it compares (the results' device names)
    assert ("CPU→GPU speedup, ResNet-18 (CPU: test vs NVIDIA H200): 20.0× (geometric mean over "
            f"1 configuration(s) run on both); the seed's: {1036824 / 52771:.1f}×.") in bullets
    assert any(b.startswith("CPU→GPU speedup, ResNet-32 (CPU: test vs NVIDIA H200): 30.0×")
               for b in bullets)
    dev = next(b for b in bullets if b.startswith("Accuracy GPU − CPU"))
    assert dev.startswith("Accuracy GPU − CPU: +0.05 pp on average over 2 pair(s) "
                          "(range −0.10 to +0.20): **within noise**")
    # pairs hold the device fixed: one per device, not one CPU/GPU mix
    assert ("Effect of model: ResNet-32 vs ResNet-18 −2.15 pp on average over 2 pair(s) of runs "
            "that differ only in it (std 0.21 pp, ResNet-32 ahead in 0 of 2)") in " ".join(bullets)
    r32 = next(b for b in bullets if "ResNet-32 reached only" in b)
    assert "18.73–26.42 %" in r32 and r32.endswith("Ours trains normally: 85.90–86.00 %.")
    assert any(n.startswith("Budget: ours 2 epochs, 10,000 training images") for n in acc.notes)


# -- FLOPs and across experiments --------------------------------------------------------------
def test_flops_table(report):
    t = report.table("flops")
    assert t.column("Model") == ["ResNet-18", "ResNet-50"]
    assert t.text("GMACs", Model="ResNet-18") == "0.456"
    assert t.text("GFLOPs", Model="ResNet-18") == "0.912"
    assert t.text("Trained input", Model="ResNet-18") == "1×28×28"
    assert t.text("GMACs at 3×224×224", Model="ResNet-50") == "4.087"
    assert t.text("Params (M)", Model="ResNet-50") == "23.52"
    assert t.text("Seed 'FLOPs (G)'", Model="ResNet-18") == "1.751"
    assert t.text("Seed ÷ our GMACs at 224", Model="ResNet-18") == "0.97 ⚠"
    odd = next(b for b in report.section("flops").bullets if b.startswith("Seed oddity"))
    assert "ResNet-18 1.751, 0.97× our 3×224×224 GMACs (1.814)" in odd
    assert "3.8× our GMACs at the trained 1×28×28 input (0.456)" in odd


def test_across_experiments(report):
    bullets = report.section("across").bullets
    dl = next(b for b in bullets if b.startswith("**MNIST, deep learning vs SVM**"))
    se = 100 * math.sqrt(0.976 * 0.024 / 1000)
    assert ("best deep model ResNet-50 · Adam · lr 0.001 · batch 16 99.60 % vs best SVM "
            "Poly d2 · C 10 97.60 %: +2.00 pp, **beyond noise** "
            f"({2.0 / se:.1f}× the yardstick") in dl
    gf = next(b for b in bullets if b.startswith("**Accuracy per GFLOP, MNIST**"))
    assert (f"ResNet-18 99.50 % at 0.912 GFLOPs = {99.5 / 0.9116:,.1f} %/GFLOP; "
            f"ResNet-50 99.60 % at 2.094 GFLOPs = {99.6 / 2.0936:,.1f} %/GFLOP.") in gf
    assert "ResNet-50 costs 2.3× the compute of ResNet-18 for +0.10 pp (**within noise**)" in gf
    tta = next(b for b in bullets if b.startswith("**Time to 99 % (MNIST)**"))
    # ResNet-18 adam batch 32 reaches 99.2 % at epoch 2: 2 x 6 s (seed 0), 2 x 7 s (seed 1)
    assert tta.startswith("**Time to 99 % (MNIST)**: fastest ResNet-18 · Adam · batch 32 · "
                          "pin_memory True (grid) "
                          "in 13.0 ± 1.4 (2) s (epoch 2); 7 of 8 configurations reached the "
                          "target, 1 never did.")
    t = report.table("tta-mnist")
    assert t.column("Time to target (s)")[-1] == "not reached"
    assert t.text("Time to target (s)",
                  Configuration="ResNet-18 · SGD · batch 32 · pin_memory True") == \
        "21.0 ± 3.0 (3)"
    assert t.text("Experiment", Configuration="ResNet-18 · Adam · batch 16 · pin_memory True") \
        == "grid pin"
    assert "13.0 ± 1.4 (2)" in report.table("tta-mnist").column("Time to target (s)")[0]


def test_generic_side_experiment(report):
    t = report.table("pin")
    assert t.columns[0] == "pin_memory"
    assert t.text("Images/s", pin_memory="True") == "4,900"  # the grid's seed-0 run
    assert t.text("Epoch (s)", pin_memory="False") == "12.00"
    head = report.section("pin").bullets[0]
    assert head == ("**pin**: fastest pin_memory True at 4,900 training images/s; runner-up "
                    "pin_memory False at 4,083: ×1.20, images/s spread unknown: no repeats, so "
                    "not judged against noise.")


def test_summary_answers_each_table(report):
    heads = [s.split("**")[1] for s in report.summary if s.startswith("**")]
    for title in ("Q1(a) MNIST", "pin", "Q1(b) SVM, MNIST", "Q2 Fashion-MNIST",
                  "MNIST, deep learning vs SVM", "Accuracy per GFLOP, MNIST",
                  "Time to 99 % (MNIST)"):
        assert title in heads, title
    best = report.table("best")
    assert best.column("Table") == ["Q1(a) MNIST", "pin", "Q2 Fashion-MNIST",
                                    "Q1(b) SVM, MNIST"]
    q1a = {c: best.text(c, Table="Q1(a) MNIST") for c in best.columns}
    assert q1a == {"Table": "Q1(a) MNIST", "Best": "ResNet-50 · Adam · lr 0.001 · batch 16",
                   "Value": "99.60 ± 0.14 (2) %",
                   "Runner-up": "ResNet-18 · Adam · lr 0.001 · batch 16",
                   "Runner-up value": "99.50 ± 0.14 (2) %", "Margin": "0.10 pp",
                   "Yardstick": f"{_pooled():.2f} pp (std of repeats)",
                   "Verdict": "within noise"}
    assert best.text("Yardstick", Table="Q1(b) SVM, MNIST") == \
        f"{100 * math.sqrt(0.976 * 0.024 / 1000):.2f} pp (binomial SE)"
    assert best.text("Margin", Table="pin") == "×1.20"
    assert best.text("Verdict", Table="pin") == "not judged"
    assert best.text("Verdict", Table="Q2 Fashion-MNIST") == "within noise"  # 88.20 vs 88.00
    status = report.section("status").paragraphs
    assert status[0] == "30 runs: 2 pending, 27 done, 1 failed."
    assert status[1].startswith("**Incomplete:** 3 of 30 runs have no result (2 pending, "
                                "1 failed).")
    failed = report.table("failed")
    assert failed.rows[0][3].text == "RuntimeError: CUDA out of memory"


# -- files and CLI -----------------------------------------------------------------------------
def test_write_report_files(store, tmp_path):
    out = tmp_path / "rep"
    written = write_report(store.path, out)
    assert written.counts == {"done": 27, "failed": 1, "pending": 2}
    md = (out / "report.md").read_text()
    assert "| 32 | SGD | 0.001 | 99.10 ± 0.20 (3) |" in md
    assert "**99.60 ± 0.14 (2)**" in md
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == sorted(["grid-mnist-accuracy.png", "grid-mnist-curves.png",
                           "pin-mnist-curves.png", "svm-svm.png",
                           "devices-fashion-mnist-time.png", "accuracy-vs-flops.png"])
    for p in pngs:
        assert (out / "figures" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{p}" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "http://" not in html and "https://" not in html
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 30 and len({r["key"] for r in rows}) == 30
    shared = next(r for r in rows if r["experiments"] == "grid pin")
    assert shared["test_acc"] == "99.4" and shared["status"] == "done"
    assert sum(r["status"] == "pending" for r in rows) == 2


def cli_main(argv: list[str]) -> int:
    from perfstudy.cli import main

    return main(argv)


def test_cli_wiring():
    from perfstudy import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"report", "export"} <= set(sub.choices)


def test_cli_report(store, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["report", "--db", store.path, "--out", str(out), "--study", "t",
                     "--target", "mnist=99.5"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"report: {out / 'report.html'}")
    assert line.endswith("27 of 30 runs done, 1 failed, 2 pending")
    assert "Time to 99.5 % validation accuracy, MNIST" in (out / "report.md").read_text()
    assert cli_main(["report", "--db", store.path, "--study", "nope"]) == 2
    assert "no study 'nope' stored (studies: t)" in capsys.readouterr().err
    assert cli_main(["report", "--db", store.path, "--target", "mnist=high"]) == 2
    assert cli_main(["report", "--db", str(tmp_path / "absent.db")]) == 2
    assert "no results store here" in capsys.readouterr().err


def test_pin_memory_is_shown_as_not_applicable_where_the_runs_say_so(tmp_path):
    """Runs of the fast engine record pin_memory "n/a" (no DataLoader): the Q1(a) table says
    n/a, not the configured True, and a note says why; a plain-engine run keeps its value."""
    store = Store(tmp_path / "pin.db")
    for opt, note in (("sgd", "n/a (data resident on GPU)"), ("adam", None)):
        cfg = DLConfig(dataset="mnist", model="resnet18", optimizer=opt, batch_size=16)
        result = dl_result(cfg, 99.0, 10, [98.5, 99.0], "cuda")
        if note:
            result.extra["pin_memory"] = note
        finish(store, "p", [Run("q1a", cfg)], result)
    t = build_report(store).table("q1a")
    assert t.column("pin_memory") == ["n/a", "True"]  # rows: SGD, then Adam
    assert any(n.startswith("pin_memory n/a: these runs had no DataLoader (the fast engine keeps "
                            "the data on the GPU") for n in t.notes)


def test_partial_store_without_plots_data(tmp_path):
    """Only pending runs and FLOPs counts: every table still renders, figures are skipped."""
    store = Store(tmp_path / "p.db")
    cfgs = [DLConfig(dataset="mnist", model="resnet18", optimizer=o, batch_size=b)
            for o in ("sgd", "adam") for b in (16, 32)]
    store.add("p", [Run("q1a", c) for c in cfgs])
    cfg = FlopsConfig(model="resnet18")
    finish(store, "p", [Run("flops", cfg)], RunResult(
        "flops", cfg.to_dict(), extra={"input": [1, 28, 28], "macs": 10**9, "flops": 2 * 10**9,
                                       "params": 10**6}, provenance=PROV))
    report = build_report(store)
    t = report.table("q1a")
    assert set(t.column("ResNet-18 acc (%)")) == {"pending"}
    assert report.section("q1a").bullets[0] == ("**Q1(a) MNIST**: no finished runs yet "
                                                 "(4 configuration(s) without a result yet).")
    assert report.figures() == []
    assert report.table("flops").text("GMACs", Model="ResNet-18") == "1.000"
    out = write_report(store.path, tmp_path / "out")
    assert out.counts == {"pending": 4, "done": 1}
    assert "pending" in (tmp_path / "out" / "report.html").read_text()


def test_store_with_two_studies(tmp_path):
    """Without --study every study gets its own section; table ids carry the study's name."""
    store = make_store(tmp_path / "two.db")
    cfg = SVMConfig(dataset="mnist", kernel="rbf", C=10.0)  # already done in study t: shared
    other = SVMConfig(dataset="mnist", kernel="rbf", C=100.0)
    store.add("u", [Run("svm", cfg), Run("svm", other)])
    report = build_report(store)
    assert report.title == "perfstudy report: studies t, u"
    assert report.table("u-svm").column("C") == ["10", "100"]
    assert report.table("u-svm").text("Accuracy (%)", C="10") == "97.50"
    assert report.table("u-svm").text("Accuracy (%)", C="100") == "pending"
    assert report.table("t-grid").text("ResNet-18 acc (%)", Batch="32", Optimizer="SGD",
                                       LR="0.001") == "99.10 ± 0.20 (3)"
    status = report.table("status")
    assert status.columns[0] == "Study"
    assert status.text("pending", Study="u", Experiment="svm") == "1"
    assert [s.id for s in report.sections][2:4] == ["study-t", "study-u"]
    only_u = build_report(store, study="u")
    assert [t.id for t in only_u.tables() if t.id.endswith("svm")] == ["svm"]
    store.close()


def test_time_to_accuracy_says_packed_runs_shared_the_gpu(tmp_path):
    # the Q1(a) grid as measured on an H200 (docs/results/seed-q1a-h200): every run in a pack of 8
    import shutil
    from pathlib import Path

    src = Path(__file__).parents[1] / "docs" / "results" / "seed-q1a-h200" / "store.db"
    shutil.copy(src, tmp_path / "r.db")
    report = build_report(Store(tmp_path / "r.db"))
    for d in ("mnist", "fashion-mnist"):
        notes = report.table(f"tta-{d}").notes
        assert ("16 of 16 runs here trained in a pack (of 8 runs at once on one GPU): their "
                "time is the pack's wall time") in " ".join(notes)
    # ResNet-18, Adam, lr 1e-4, batch 32 on MNIST: 99.41 % validation at epoch 3 of its pack
    t = report.table("tta-mnist")
    assert t.text("Time to target (s)", Configuration="ResNet-18 · Adam · lr 0.0001 · batch 32") \
        == "36.1"


def test_dl_vs_svm_says_a_packed_training_time_is_the_packs(tmp_path):
    # the seed study on an H200 (docs/results/seed-h200): Q1(a)'s best MNIST run trained in a
    # pack of 8, 169.7 s of shared wall time; the best SVM fit alone on the GPU in 1.6 s
    import shutil
    from pathlib import Path

    src = Path(__file__).parents[1] / "docs" / "results" / "seed-h200" / "seed.db"
    shutil.copy(src, tmp_path / "s.db")
    bullets = build_report(Store(tmp_path / "s.db")).section("across").bullets
    dl = next(b for b in bullets if b.startswith("**MNIST, deep learning vs SVM**"))
    assert ("Training time 169,735 ms (the shared wall time of a pack of 8 runs at once on one "
            "GPU) vs fit time 1,584 ms (107.1×).") in dl
    gf = next(b for b in bullets if b.startswith("**Accuracy per GFLOP, MNIST**"))
    assert gf.endswith("The cheaper of these 2 models, ResNet-18, is also the more accurate.")
    svm = build_report(Store(tmp_path / "s.db")).table("q1b")
    assert ("Train time is the fit time (backend: torch on the GPU); the seed's times come "
            "from another machine and solver") in " ".join(svm.notes)


# -- the seed's own comparisons, and what the tables say about packed times --------------------


def _budget_store(path) -> Store:
    """A Q1(a)-like experiment at 3 epochs and a side experiment at 1 epoch of the same cells,
    packed runs on the GPU, and a Q2 whose GPU arm was never stored (run with
    --filter device=cpu on a laptop)."""
    store = Store(path)
    for epochs, exp, accs in ((3, "long", (99.30, 98.90)), (1, "short", (98.10, 98.85))):
        for opt, acc in zip(("adam", "sgd"), accs, strict=True):
            cfg = DLConfig(dataset="mnist", model="resnet18", optimizer=opt, epochs=epochs)
            res = dl_result(cfg, acc, 10, [98.0, 98.5, 99.0][:epochs], "cuda")
            res.extra.update(pack_size=2, pin_memory="n/a (data resident on GPU)")
            finish(store, "b", [Run(exp, cfg)], res)
    for model in ("resnet18", "resnet32"):
        cfg = DLConfig(dataset="fashion-mnist", model=model, device="cpu", epochs=2,
                       train_subset=10_000)
        res = dl_result(cfg, 88.0, 50, [85.0, 88.0], "cpu", n_test=14_000)
        res.extra["pin_memory"] = "n/a (data resident on CPU, no DataLoader)"
        finish(store, "b", [Run("q2", cfg)], res)
    return store


def test_a_shorter_experiment_is_compared_cell_by_cell_with_the_longer_one(tmp_path):
    report = build_report(_budget_store(tmp_path / "b.db"))
    t = report.table("short-vs-long")
    assert t.columns == ["optimizer", "1 epochs (%) · short", "3 epochs (%) · long", "Δ (pp)"]
    # 99.30 - 98.10 against binomial SEs of 0.10 and 0.13 (10,000 test images): beyond noise
    assert t.text("Δ (pp)", optimizer="Adam") == "+1.20 ⚠"
    assert t.cell("Δ (pp)", optimizer="Adam").css == "flag num"
    assert t.text("Δ (pp)", optimizer="SGD") == "+0.05"
    assert t.text("1 epochs (%) · short", optimizer="SGD") == "98.85"


def test_q2_keeps_its_layout_with_one_arm_stored_and_says_pending(tmp_path):
    report = build_report(_budget_store(tmp_path / "b.db"))
    acc, tim = report.table("q2-accuracy"), report.table("q2-time")
    assert acc.column("Compute") == ["CPU", "GPU"]
    assert acc.text("ResNet-18 acc (%)", Compute="GPU") == "pending"
    assert tim.text("ResNet-32 time (ms)", Compute="GPU") == "pending"
    assert acc.text("ResNet-18 acc (%)", Compute="CPU") == "88.00"


def test_every_table_with_packed_training_times_says_so(tmp_path):
    report = build_report(_budget_store(tmp_path / "b.db"))
    def says(table_id: str) -> bool:
        return any("trained in a pack" in n for n in report.table(table_id).notes)

    # the GPU runs were packed, the CPU runs of q2 not
    assert says("long") and says("short") and says("tta-mnist")
    assert not says("q2-time") and not says("tta-fashion-mnist")
    assert any("2 of 2 runs here trained in a pack" in n for n in report.table("long").notes)


def test_the_pin_memory_note_does_not_say_gpu_under_cpu_runs(tmp_path):
    # a Q1(a) trained by the cpu engine on a laptop: resident data, no DataLoader, no GPU
    store = Store(tmp_path / "cpu.db")
    for opt in ("sgd", "adam"):
        cfg = DLConfig(dataset="mnist", model="resnet18", optimizer=opt, device="cpu")
        result = dl_result(cfg, 98.0, 100, [97.5, 98.0], "cpu")
        result.extra["pin_memory"] = "n/a (data resident on CPU, no DataLoader)"
        finish(store, "c", [Run("q1a", cfg)], result)
    t = build_report(store).table("q1a")
    assert t.column("pin_memory") == ["n/a", "n/a"]
    (note,) = [n for n in t.notes if n.startswith("pin_memory n/a")]
    assert "the cpu engine in memory" in note and "kept their data on the GPU" not in note
