"""The PyTorch C-SVC against libsvm (scikit-learn's SVC): same kernels, gamma, optimum and
predictions. The equivalence tests fit both on 2,000 stratified training images and compare on
1,000 test images, for every Q1(b) configuration on MNIST and four on Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import linear_kernel, polynomial_kernel, rbf_kernel
from sklearn.svm import SVC

from perfstudy import data
from perfstudy.svm.torchsvc import TorchSVC
from perfstudy.svm.torchsvc.kernel_rows import CachedRows, FullKernel
from perfstudy.svm.torchsvc.kernels import Kernel, resolve_gamma
from perfstudy.svm.torchsvc.smo import solve

Q1B = [("rbf", C, 3) for C in (0.1, 1, 10)] + [
    ("poly", C, d) for C in (0.1, 1, 10) for d in (2, 3, 4)
]
FASHION = [("rbf", 10, 3), ("poly", 0.1, 2), ("poly", 10, 4), ("rbf", 0.1, 3)]


def _features(x):
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def subsets():
    """{dataset: (x_train, y_train, x_test, y_test)}: 2,000 / 1,000 stratified images."""
    out = {}
    for name in ("mnist", "fashion-mnist"):
        ds = data.load(name)
        tr, te = data.subset(ds.train, 2000, seed=0), data.subset(ds.test, 1000, seed=0)
        out[name] = (_features(tr.x), tr.y, _features(te.x), te.y)
    return out


def _check_equivalent(subsets, dataset, kernel, C, degree):
    xtr, ytr, xte, yte = subsets[dataset]
    params = dict(kernel=kernel, C=C, degree=degree, decision_function_shape="ovo")
    ref = SVC(**params).fit(xtr, ytr)
    ours = TorchSVC(**params, device="cpu").fit(xtr, ytr)

    # accuracy within 0.1 percentage point = at most one of the 1,000 test images
    n_right_ref = int(np.sum(ref.predict(xte) == yte))
    n_right = int(np.sum(ours.predict(xte) == yte))
    assert abs(n_right - n_right_ref) <= 1, (n_right, n_right_ref)
    # support vectors within 3% in total and per class (at least 2 vectors of slack per class)
    assert abs(ours.n_support_.sum() - ref.n_support_.sum()) <= 0.03 * ref.n_support_.sum()
    slack = np.maximum(0.03 * ref.n_support_, 2)
    assert np.all(np.abs(ours.n_support_ - ref.n_support_) <= slack), (
        ours.n_support_,
        ref.n_support_,
    )
    # decision values: same order and sign as sklearn's ovo output
    d_ref, d_ours = ref.decision_function(xte), ours.decision_function(xte)
    assert d_ours.shape == d_ref.shape == (len(xte), 45)
    assert np.corrcoef(d_ref.ravel(), d_ours.ravel())[0, 1] > 0.999
    # the bias too: libsvm's rho from the free support vectors
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=5e-3)


@pytest.mark.parametrize("kernel,C,degree", Q1B)
def test_equivalent_to_libsvm_mnist(subsets, kernel, C, degree):
    _check_equivalent(subsets, "mnist", kernel, C, degree)


@pytest.mark.parametrize("kernel,C,degree", FASHION)
def test_equivalent_to_libsvm_fashion(subsets, kernel, C, degree):
    _check_equivalent(subsets, "fashion-mnist", kernel, C, degree)


def test_gamma_scale_and_auto_match_sklearn(subsets):
    x = subsets["mnist"][0]
    y = subsets["mnist"][1]
    for gamma in ("scale", "auto"):
        ref = SVC(kernel="linear", gamma=gamma).fit(x[:50], y[:50])._gamma
        assert resolve_gamma(gamma, x[:50]) == pytest.approx(ref, rel=1e-12)
    assert resolve_gamma("scale", x) == pytest.approx(1.0 / (784 * x.astype(np.float64).var()))
    assert resolve_gamma(0.5, x) == 0.5


@pytest.mark.parametrize(
    "kernel,ref",
    [
        (Kernel("rbf", gamma=0.02), lambda a, b: rbf_kernel(a, b, gamma=0.02)),
        (
            Kernel("poly", gamma=0.05, degree=3, coef0=0.5),
            lambda a, b: polynomial_kernel(a, b, degree=3, gamma=0.05, coef0=0.5),
        ),
        (Kernel("linear"), linear_kernel),
    ],
)
def test_kernels_match_sklearn_pairwise(kernel, ref):
    rng = np.random.default_rng(0)
    a, b = rng.random((70, 784), dtype=np.float32), rng.random((50, 784), dtype=np.float32)
    a[3] = b[7]  # a duplicate: rounding may put ||x - x'||^2 below 0, and K above 1 unclamped
    got = kernel.block(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    want = ref(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    diag = kernel.diag(torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(
        diag, np.diag(ref(a.astype(np.float64), a.astype(np.float64))), rtol=2e-5
    )
    if kernel.kind == "rbf":
        assert got.max() <= 1.0


def _two_class(subsets, n=400):
    x, y = subsets["mnist"][0], subsets["mnist"][1]
    keep = np.flatnonzero((y == 4) | (y == 9))[:n]
    return x[keep], np.where(y[keep] == 4, 1.0, -1.0)


def test_two_class_solution_satisfies_kkt(subsets):
    """On a 4-vs-9 problem, alpha is feasible and the maximal KKT violation, recomputed from
    scratch in float64 (not the solver's running gradient), is below tol."""
    x, y = _two_class(subsets)
    C, tol = 1.0, 1e-3
    kern = Kernel("rbf", gamma=resolve_gamma("scale", x))
    xt = torch.from_numpy(x)
    cols = torch.arange(len(x))[None]
    yt = torch.from_numpy(y)[None]
    sol = solve(FullKernel(xt, kern), cols, yt, yt != 0, kern.diag(xt), C=C, tol=tol)
    a = sol.alpha[0].double().numpy()
    assert np.all(a >= 0) and np.all(a <= C)
    assert abs(a @ y) < 1e-10
    K = rbf_kernel(x.astype(np.float64), gamma=kern.gamma)
    grad = y * (K @ (a * y)) - 1.0
    F = -y * grad
    up = ((y > 0) & (a < C)) | ((y < 0) & (a > 0))
    low = ((y > 0) & (a > 0)) | ((y < 0) & (a < C))
    assert F[up].max() - F[low].min() < tol
    # rho from the free vectors, as libsvm: the decision function is 0 on the margin
    free = (a > 0) & (a < C)
    assert free.any()
    np.testing.assert_allclose(float(sol.rho[0]), np.mean(y[free] * grad[free]), atol=1e-4)
    assert sol.n_iter[0] > 0 and float(sol.gap[0]) < tol


def test_row_cache_gives_the_full_matrix_solution(subsets):
    """The small-memory path (a 12-row cache: evictions all along) takes the same iterations
    to the same alpha as the precomputed matrix."""
    x, y = subsets["mnist"][0][:600], subsets["mnist"][1][:600]
    kern = Kernel("poly", gamma=resolve_gamma("scale", x), degree=2)
    # three classes -> three pairs, laid out as the estimator does
    cls = [np.flatnonzero(y == c)[:60] for c in (0, 1, 2)]
    xs = torch.from_numpy(x[np.concatenate(cls)])
    starts = np.cumsum([0, 60, 60])
    cols, sign = [], []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        cols.append(np.r_[starts[a] : starts[a] + 60, starts[b] : starts[b] + 60])
        sign.append(np.r_[np.ones(60), -np.ones(60)])
    cols, sign = torch.tensor(np.array(cols)), torch.tensor(np.array(sign), dtype=torch.float32)
    args = (cols, sign, sign != 0, kern.diag(xs))
    full = solve(FullKernel(xs, kern), *args, C=1.0)
    cache = CachedRows(xs, kern, slots=12)
    cached = solve(cache, *args, C=1.0)
    assert cache.rows_computed > 12  # rows were evicted and computed again
    # not bit-equal: BLAS rounds a block of a few rows differently from a block of 4,096
    torch.testing.assert_close(full.alpha, cached.alpha, rtol=0, atol=1e-5)
    assert torch.equal(full.n_iter, cached.n_iter)


def test_binary_problem_follows_sklearn_sign_convention(subsets):
    x, y = _two_class(subsets, n=300)
    labels = np.where(y > 0, 4, 9)
    ref = SVC(C=1.0).fit(x, labels)
    ours = TorchSVC(C=1.0, device="cpu").fit(x, labels)
    d_ref, d_ours = ref.decision_function(x), ours.decision_function(x)
    assert d_ours.shape == (len(x),)
    assert np.corrcoef(d_ref, d_ours)[0, 1] > 0.999
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    assert list(ours.classes_) == [4, 9]


def test_ovr_shape_and_estimator_attributes(subsets):
    xtr, ytr = subsets["mnist"][0][:500], subsets["mnist"][1][:500]
    ours = TorchSVC(C=1.0, decision_function_shape="ovr", device="cpu").fit(xtr, ytr)
    ref = SVC(C=1.0).fit(xtr, ytr)
    ovr = ours.decision_function(xtr)
    assert ovr.shape == (500, 10)
    np.testing.assert_allclose(ovr, ref.decision_function(xtr), atol=1e-2)
    assert ours.n_iter_.shape == (45,) and np.all(ours.n_iter_ > 0)
    # support_ grouped by class, ascending within a class, as sklearn lists them
    assert np.all(np.diff(ytr[ours.support_]) >= 0)
    for c in range(10):
        s = ours.support_[ytr[ours.support_] == c]
        assert np.all(np.diff(s) > 0)
    assert ours.support_vectors_.shape == (ours.n_support_.sum(), 784)
    assert ours.score(xtr, ytr) == pytest.approx(ref.score(xtr, ytr), abs=0.002)


@pytest.mark.cuda
def test_cuda_graph_run_matches_cpu(subsets):
    xtr, ytr, xte, _ = subsets["mnist"]
    cpu = TorchSVC(C=10, device="cpu").fit(xtr, ytr)
    gpu = TorchSVC(C=10, device="cuda").fit(xtr, ytr)
    np.testing.assert_array_equal(gpu.n_support_, cpu.n_support_)
    np.testing.assert_allclose(gpu.decision_function(xte), cpu.decision_function(xte), atol=1e-3)
