"""The DL and SVM trainers on small real subsets (CPU)."""

import pytest

from perfstudy.config import DLConfig, SVMConfig
from perfstudy.dl.train import train_dl
from perfstudy.svm.fit import fit_svm


@pytest.mark.slow
def test_tiny_cpu_training_learns_above_chance():
    cfg = DLConfig(dataset="mnist", model="resnet32", batch_size=16, optimizer="adam", lr=1e-3,
                   epochs=2, num_workers=0, device="cpu", train_subset=600, eval_subset=300,
                   engine="plain")
    r = train_dl(cfg)
    # 10 classes: chance is 10%; 2 epochs on 600 images already reach well past it
    assert r.test_acc > 40.0, r
    assert r.val_acc == max(e.val_acc for e in r.curve)
    assert r.best_epoch == 1 + [e.val_acc for e in r.curve].index(r.val_acc)
    assert len(r.curve) == 2 and r.curve[1].train_loss < r.curve[0].train_loss
    assert r.train_ms == pytest.approx(sum(e.seconds for e in r.curve) * 1e3, rel=1e-6)
    assert r.images_per_s == pytest.approx(600 * 2 / (r.train_ms / 1e3))
    assert r.extra["engine"] == "plain" and r.extra["n_val"] == 300
    assert r.peak_mem_mb > 0


def test_same_seed_same_result():
    cfg = DLConfig(dataset="fashion-mnist", model="resnet32", batch_size=32, epochs=1,
                   num_workers=0, device="cpu", train_subset=100, eval_subset=100, seed=3)
    a, b = train_dl(cfg), train_dl(cfg)
    assert a.test_acc == b.test_acc and a.curve[0].train_loss == b.curve[0].train_loss


def test_svm_on_a_small_subset_is_above_85_percent():
    cfg = SVMConfig(dataset="mnist", kernel="rbf", C=10.0, backend="sklearn",
                    train_subset=2000, eval_subset=1000)
    r = fit_svm(cfg)
    assert r.test_acc > 85.0
    assert r.extra["n_train"] == 2000 and r.extra["n_test"] == 1000
    assert 200 < r.n_support < 2000
