"""Report claims that compare against the seed or across pairs of runs: an effect judged by
its pairs' own spread, and another experiment's runs of a seed Q1(a) cell (the explanations
study) shown beside the seed's figure. Real SQLite stores written through Store.add/finish."""

from __future__ import annotations

import math
import statistics

import pytest

from perfstudy.config import DLConfig
from perfstudy.report import build_report
from perfstudy.report.claims import effect_yardstick
from perfstudy.report.stats import Effect, Yardstick
from perfstudy.study.spec import Run
from perfstudy.study.store import Store
from test_report import dl_result, finish


def test_an_effect_that_half_its_pairs_contradict_is_within_noise():
    # batch 32 vs 16 on 8 pairs, as in the seed study's MNIST Q1(a) on the H200: the mean is
    # 3.4x one accuracy's binomial SE, but 3 of 8 pairs go the other way
    yard = Yardstick(0.07, "binomial", "binomial SE 0.07 pp", "yardstick: binomial SE 0.07 pp")
    diffs = (-0.8, 0.3, -0.6, 0.4, -0.5, 0.2, -0.5, -0.4)
    e = Effect("batch_size", 16, 32, diffs)
    assert yard.judge(e.mean) == "beyond noise"  # what the table's yardstick alone would say
    by = effect_yardstick(e, yard)
    assert by.value == pytest.approx(statistics.stdev(diffs) / math.sqrt(8))
    assert round(by.value, 2) == 0.16
    assert by.judge(e.mean) == "within noise"
    assert by.ratio(e.mean) == "1.5× the pairs' standard error, 0.16 pp"  # 0.2375 / 0.1636
    # pairs that agree: the accuracies' own noise is the larger, and it judges
    steady = Effect("optimizer", "sgd", "adam", (0.50, 0.52, 0.48))
    assert effect_yardstick(steady, yard) is yard
    assert effect_yardstick(Effect("model", "a", "b", (0.3,)), yard) is yard  # one pair


# the explanations study's arms as measured on the H200 (docs/results/seed-explanations-h200)
ARMS = {"native": [93.13, 93.02], "imagenet": [92.91, 92.64]}
CURVES = {"native": [88.7, 89.7, 90.1, 90.9, 91.4, 92.4, 92.6, 92.2, 92.7, 92.9],
          "imagenet": [87.7, 89.9, 89.8, 90.7, 91.1, 92.5, 92.1, 92.5, 92.6, 92.4]}
SEED_R50_FASHION_ADAM_B16 = 95.12  # the seed's Q1(a) cell


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("explain") / "e.db")
    for variant, accs in ARMS.items():
        for seed, acc in enumerate(accs):
            cfg = DLConfig(dataset="fashion-mnist", model="resnet50", variant=variant,
                           batch_size=16, optimizer="adam", lr=1e-3, epochs=10, seed=seed)
            finish(store, "e", [Run("explanations", cfg)],
                   dl_result(cfg, acc, 18.0, CURVES[variant], "cuda", n_test=14_000))
    # the same cell for 5 epochs: not the seed's budget, so no seed column for it
    cfg = DLConfig(dataset="fashion-mnist", model="resnet50", batch_size=16, optimizer="adam",
                   lr=1e-3, epochs=5, seed=0)
    finish(store, "e", [Run("short", cfg)], dl_result(cfg, 92.39, 18.0, CURVES["native"][:5],
                                                       "cuda", n_test=14_000))
    yield build_report(store)
    store.close()


def test_another_experiments_run_of_a_seed_cell_sits_beside_the_seeds_figure(report):
    t = report.table("explanations")
    assert t.columns[:4] == ["variant", "Acc (%)", "Seed (%)", "Δ"]
    assert t.text("Seed (%)", variant="native") == f"{SEED_R50_FASHION_ADAM_B16:.2f}"
    native = statistics.mean(ARMS["native"])
    delta = t.cell("Δ", variant="native")
    assert delta.text == f"−{SEED_R50_FASHION_ADAM_B16 - native:.2f} ⚠" and "flag" in delta.css
    assert t.text("Δ", variant="imagenet") == "−2.34 ⚠"
    assert any(n.startswith("Seed: the seed's Q1(a) figure for the same dataset") for n in t.notes)
    bullets = report.section("explanations").bullets
    against = next(b for b in bullets if b.startswith("Against the seed's Q1(a) figure"))
    assert "2 of 2 cells differ beyond noise" in against
    assert "largest −2.34 pp at variant imagenet (ours 92.78 %, seed 95.12 %)" in against
    assert "Seed (%)" not in report.table("short").columns


def test_time_to_accuracy_names_the_setting_that_differs(report):
    t = report.table("tta-fashion-mnist")
    # the native runs reach 90 % at epoch 3 (54 s; the tie in the store's order), imagenet at 4
    assert t.column("Configuration") == ["variant native · 10 ep.", "variant native · 5 ep.",
                                         "variant imagenet · 10 ep."]
    assert t.column("Time to target (s)") == ["54.0 ± 0.0 (2)", "54.0", "72.0 ± 0.0 (2)"]


def test_the_device_effect_in_q2_is_judged_by_its_pairs_too():
    # the seed study's Q2 on the H200: GPU - CPU over 6 pairs of single runs
    diffs = (2.34, 4.58, 2.24, 5.96, -2.34, 3.11)
    yard = Yardstick(0.28, "binomial", "", "")
    by = effect_yardstick(Effect("device", "cpu", "cuda", diffs), yard)
    assert round(by.value, 2) == 1.16 and by.ratio(statistics.mean(diffs)) == \
        "2.3× the pairs' standard error, 1.16 pp"  # not 9.5x the binomial SE (stored diffs: 1.15)
