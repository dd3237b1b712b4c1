"""perfstudy.data: IDX reading and verification, lookup order, download, the 70/10/20 split.

Corrupt-file, lookup and download tests run on tiny generated datasets (conftest); the split and
statistics tests on the real MNIST and Fashion-MNIST found through $PERFSTUDY_DATA_DIR.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from perfstudy import data
from perfstudy.data import idx, sources
from perfstudy.data.splits import Split, pixel_stats, split_indices, subset
from perfstudy.errors import DataError, UsageError

TRAIN_IMAGES, TRAIN_LABELS = idx.PAIRS["train"]
T10K_IMAGES, T10K_LABELS = idx.PAIRS["t10k"]
REAL = ("mnist", "fashion-mnist")


def _images(n: int) -> np.ndarray:
    return (np.arange(n * 28 * 28) % 251).astype(np.uint8).reshape(n, 28, 28)


# --- the IDX reader, on generated files ---------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_read_pair_round_trip(tmp_path, gz):
    suffix = ".gz" if gz else ""
    x, y = _images(5), np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    images, labels = tmp_path / (TRAIN_IMAGES + suffix), tmp_path / (TRAIN_LABELS + suffix)
    x_bytes, y_bytes = idx.write(images, x), idx.write(labels, y)
    assert len(x_bytes) == 16 + 5 * 784 and len(y_bytes) == 8 + 5
    if gz:
        assert gzip.decompress(images.read_bytes()) == x_bytes
    md5s = {TRAIN_IMAGES: hashlib.md5(x_bytes).hexdigest()}
    md5s[TRAIN_LABELS] = hashlib.md5(y_bytes).hexdigest()

    got_x, got_y, files = idx.read_pair(images, labels, md5s)

    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert files == {
        images.name: {"md5": md5s[TRAIN_IMAGES], "ok": True},
        labels.name: {"md5": md5s[TRAIN_LABELS], "ok": True},
    }


def test_bad_magic_names_the_file(tmp_path):
    images, labels = tmp_path / TRAIN_IMAGES, tmp_path / TRAIN_LABELS
    idx.write(images, np.zeros(3, dtype=np.uint8))  # a labels file where images should be
    idx.write(labels, np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="bad magic number 0x00000801, expected 0x00000803") as e:
        idx.read_pair(images, labels, None)
    assert str(images) in str(e.value)


@pytest.mark.parametrize(
    ("suffix", "cut", "says"),
    [
        ("", 100, "truncated: its header says images of shape (4, 28, 28) (3152 bytes)"),
        ("", 3149, "truncated: 3 bytes, less than an IDX header"),
        (".gz", 20, "not a complete gzip file"),
    ],
    ids=["raw-body", "raw-header", "gz"],
)
def test_truncated_file_names_the_file(tmp_path, suffix, cut, says):
    images, labels = tmp_path / (TRAIN_IMAGES + suffix), tmp_path / TRAIN_LABELS
    idx.write(images, _images(4))
    idx.write(labels, np.zeros(4, dtype=np.uint8))
    images.write_bytes(images.read_bytes()[:-cut])
    with pytest.raises(DataError, match=r"not a complete|truncated") as e:
        idx.read_pair(images, labels, None)
    assert str(e.value).startswith(f"{images}: ")
    assert says in str(e.value)


def test_extra_bytes_are_refused(tmp_path):
    labels = tmp_path / TRAIN_LABELS
    labels.write_bytes(idx.write(labels, np.zeros(4, dtype=np.uint8)) + b"\0")
    with pytest.raises(DataError, match=f"{labels}: too long"):
        idx.read(labels, idx.LABELS_MAGIC, None)


def test_mismatched_counts_name_both_files(tmp_path):
    images, labels = tmp_path / TRAIN_IMAGES, tmp_path / TRAIN_LABELS
    idx.write(images, _images(5))
    idx.write(labels, np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError) as e:
        idx.read_pair(images, labels, None)
    assert str(e.value) == f"{images} holds 5 images but {labels} holds 4 labels"


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_wrong_checksum_names_the_file(tmp_path, gz):
    suffix = ".gz" if gz else ""
    images, labels = tmp_path / (TRAIN_IMAGES + suffix), tmp_path / TRAIN_LABELS
    x = _images(3)
    good = hashlib.md5(idx.write(images, x)).hexdigest()
    md5s = {TRAIN_IMAGES: good, TRAIN_LABELS: idx.md5(idx.write(labels, np.zeros(3, np.uint8)))}
    idx.read_pair(images, labels, md5s)  # as written: fine
    x[1, 14, 14] ^= 1  # one bit of one pixel: structure intact, content not
    bad = hashlib.md5(idx.write(images, x)).hexdigest()
    with pytest.raises(DataError) as e:
        idx.read_pair(images, labels, md5s)
    assert str(e.value).startswith(f"{images}: MD5 of the uncompressed content is {bad}, ")
    assert f"expected {good}" in str(e.value)


def test_labels_outside_the_classes_name_the_file(fake_dataset):
    folder, md5s = fake_dataset
    labels = folder / f"{T10K_LABELS}.gz"
    y = np.full(40, 10, dtype=np.uint8)
    md5s = {**md5s, T10K_LABELS: idx.md5(idx.write(labels, y))}
    with pytest.raises(DataError, match=f"{labels}: label 10 is not a class 0-9"):
        data.load("mnist", folder, md5s=md5s)


def test_shipped_checksums_are_the_canonical_ones():
    mnist, fashion = sources.checksums("mnist"), sources.checksums("fashion-mnist")
    assert sorted(mnist) == sorted(fashion) == sorted(idx.NAMES)
    assert mnist[TRAIN_IMAGES] == "6bbc9ace898e44ae57da46a324031adb"
    assert mnist[T10K_LABELS] == "27ae3e4e09519cfbb04c329615203637"
    assert fashion[TRAIN_IMAGES] == "f4a8712d7a061bf5bd6d2ca38dc4d50a"
    assert fashion[T10K_LABELS] == "15d484375f8d13e6eb1aabb0c3f46965"


def test_unknown_dataset_lists_the_choices():
    for call in (data.load, data.locate, data.check):
        with pytest.raises(UsageError) as e:
            call("cifar10")
        assert str(e.value) == "unknown dataset 'cifar10'; choose from: mnist, fashion-mnist"


# --- lookup order ------------------------------------------------------------------------------


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    """An empty HOME (so an empty cache) and no $PERFSTUDY_DATA_DIR; returns the cache folder."""
    if (sources.SYSTEM_ROOT / "mnist").exists():
        pytest.skip(f"{sources.SYSTEM_ROOT / 'mnist'} exists on this machine and would be found")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    return tmp_path / "home" / ".cache" / "perfstudy" / "mnist"


def test_lookup_order_data_dir_then_env_then_cache(
    tmp_path, monkeypatch, no_data_anywhere, make_fake_dataset
):
    make = make_fake_dataset
    given, env, cache = tmp_path / "given", tmp_path / "env", no_data_anywhere
    make(given / "mnist")  # a root holding <name>/
    make(env)  # the four files directly
    make(cache)
    monkeypatch.setenv(sources.ENV_VAR, str(env))

    assert data.locate("mnist", given) == (given / "mnist", "data_dir")
    assert data.locate("mnist", str(given / "mnist")) == (given / "mnist", "data_dir")
    assert data.locate("mnist") == (env, "env")
    monkeypatch.setenv(sources.ENV_VAR, str(given))
    assert data.locate("mnist") == (given / "mnist", "env")
    monkeypatch.delenv(sources.ENV_VAR)
    assert data.locate("mnist") == (cache, "cache")
    # a data dir that does not exist is an error, not a silent fall-back to the cache
    with pytest.raises(DataError, match="nowhere: no such folder"):
        data.locate("mnist", tmp_path / "nowhere")


def test_a_half_copied_folder_is_reported(fake_dataset):
    folder, _ = fake_dataset
    (folder / f"{T10K_IMAGES}.gz").unlink()
    with pytest.raises(DataError) as e:
        data.locate("mnist", folder)
    assert str(e.value) == (
        f"{folder} (data_dir) holds only part of mnist: missing {T10K_IMAGES}[.gz]"
    )


# --- download ----------------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def http_mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/www``: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_falls_back_to_the_next_mirror(http_mirror, no_data_anywhere, make_fake_dataset):
    root, url = http_mirror
    md5s = make_fake_dataset(root / "mnist")
    mirrors = [f"{url}/gone/", f"{url}/mnist/"]  # the first answers 404

    ds = data.load("mnist", mirrors=mirrors, md5s=md5s)

    cache = no_data_anywhere
    assert ds.source["how"] == "download" and ds.source["dir"] == str(cache.resolve())
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in idx.NAMES)
    for name in idx.NAMES:  # byte for byte what the mirror served
        assert (cache / f"{name}.gz").read_bytes() == (root / "mnist" / f"{name}.gz").read_bytes()
        assert ds.source["files"][f"{name}.gz"] == {"md5": md5s[name], "ok": True}
    assert (len(ds.train), len(ds.val), len(ds.test)) == (70, 10, 20)
    assert data.load("mnist", mirrors=mirrors, md5s=md5s).source["how"] == "cache"


def test_download_completes_a_partial_cache_from_a_file_url(
    tmp_path, no_data_anywhere, make_fake_dataset
):
    mirror, cache = tmp_path / "mirror", no_data_anywhere
    md5s = make_fake_dataset(mirror)
    cache.mkdir(parents=True)
    kept = cache / f"{TRAIN_LABELS}.gz"
    kept.write_bytes((mirror / kept.name).read_bytes())
    os.utime(kept, ns=(0, 0))

    assert data.locate("mnist", mirrors=[mirror.as_uri()], md5s=md5s) == (cache, "download")
    assert kept.stat().st_mtime_ns == 0  # not fetched again
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in idx.NAMES)


def test_download_with_a_wrong_checksum_leaves_nothing(
    http_mirror, no_data_anywhere, make_fake_dataset
):
    root, url = http_mirror
    make_fake_dataset(root / "mnist", seed=1)
    md5s = sources.checksums("mnist")  # the real MNIST's: the generated files do not match
    with pytest.raises(DataError) as e:
        data.locate("mnist", mirrors=[f"{url}/mnist/"], md5s=md5s)
    message = str(e.value)
    assert f"{url}/mnist/{TRAIN_IMAGES}.gz: MD5 of the uncompressed content is " in message
    assert f"expected {md5s[TRAIN_IMAGES]}" in message
    assert list(no_data_anywhere.iterdir()) == []  # no file, no leftover .part


def test_a_download_of_the_real_files_is_checked_by_md5_and_sha256(
    http_mirror, no_data_anywhere, real_data_dir
):
    root, url = http_mirror
    shutil.copytree(real_data_dir / "mnist", root / "mnist")
    assert data.locate("mnist", mirrors=[f"{url}/mnist/"]) == (no_data_anywhere, "download")
    shas = sources.sha256s("mnist")
    for name in idx.NAMES:
        assert idx.sha256(idx.read_bytes(no_data_anywhere / f"{name}.gz")) == shas[name]


def test_a_download_larger_than_any_idx_file_is_cut_off(http_mirror, no_data_anywhere):
    root, url = http_mirror
    (root / "mnist").mkdir()
    (root / "mnist" / f"{TRAIN_IMAGES}.gz").write_bytes(os.urandom(idx.MAX_BYTES + (1 << 20)))
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES}.gz: more than 64 MiB: not an IDX file"):
        data.locate("mnist", mirrors=[f"{url}/mnist/"])
    assert list(no_data_anywhere.iterdir()) == []  # no file, no leftover .part


def test_a_gzip_bomb_is_refused_before_it_fills_memory(tmp_path):
    bomb = tmp_path / f"{TRAIN_IMAGES}.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        for _ in range(80):  # 80 MiB of zeros in ~80 KB
            f.write(bytes(1 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(DataError, match="decompresses to more than 64 MiB"):
        idx.read_bytes(bomb)


def test_no_data_and_no_network_is_one_line(tmp_path, no_data_anywhere):
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/mnist/"
    (tmp_path / "given").mkdir()  # an empty folder: looked in, then the others
    with pytest.raises(DataError) as e:
        data.load("mnist", tmp_path / "given", mirrors=[mirror])
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(
        f"mnist not found in {tmp_path / 'given' / 'mnist'} (data_dir), "
        f"{tmp_path / 'given'} (data_dir), {no_data_anywhere} (cache), "
        f"{sources.SYSTEM_ROOT / 'mnist'} (system); download into {no_data_anywhere} failed: "
        f"{mirror}{TRAIN_IMAGES}.gz: <urlopen error"
    )
    assert message.endswith("set PERFSTUDY_DATA_DIR to a folder holding the four IDX files")


def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(DataError, match=f"^data dir {tmp_path / 'nope'}: no such folder$"):
        data.locate("mnist", tmp_path / "nope")


# --- the in-process cache ----------------------------------------------------------------------


def test_loads_are_cached_and_read_only(fake_dataset):
    folder, md5s = fake_dataset
    a = data.load("mnist", folder, md5s=md5s)
    b = data.load("mnist", folder, md5s=md5s)
    assert a.train.x is b.train.x and a.test.y is b.test.y
    assert a.source == b.source and a.source is not b.source
    with pytest.raises(ValueError, match="read-only"):
        a.train.x[0, 0, 0] = 1
    assert data.load("mnist", folder, split_seed=1, md5s=md5s).train.x is not a.train.x


def test_a_file_changed_after_a_load_is_read_again(fake_dataset):
    folder, md5s = fake_dataset
    data.load("mnist", folder, md5s=md5s)
    labels = folder / f"{TRAIN_LABELS}.gz"
    idx.write(labels, np.zeros(60, dtype=np.uint8))
    os.utime(labels, ns=(0, 0))
    with pytest.raises(DataError, match=f"{labels}: MD5 of the uncompressed content"):
        data.load("mnist", folder, md5s=md5s)


# --- the real datasets -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=REAL)
def real(request, real_data_dir):
    """(dataset, pooled images, pooled labels) of a real dataset found through the env var."""
    name = request.param
    if not (real_data_dir / name).is_dir():
        pytest.skip(f"no {name} in {real_data_dir} ($PERFSTUDY_DATA_DIR)")
    ds = data.load(name)
    folder = real_data_dir / name
    pairs = [
        idx.read_pair(idx.find(folder, i), idx.find(folder, lb), None)
        for i, lb in idx.PAIRS.values()
    ]
    return ds, np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def test_real_data_is_found_through_the_env_var_and_verified(real, real_data_dir):
    ds, _, _ = real
    canonical = sources.checksums(ds.name)
    assert ds.source["how"] == "env"
    assert ds.source["dir"] == str((real_data_dir / ds.name).resolve())
    assert {f.removesuffix(".gz"): v["md5"] for f, v in ds.source["files"].items()} == canonical
    assert all(v["ok"] for v in ds.source["files"].values())


def test_shipped_sha256s_are_those_of_the_verified_files(real, real_data_dir):
    ds, _, _ = real  # found and verified by MD5
    shas = sources.sha256s(ds.name)
    for file in idx.NAMES:
        data_bytes = idx.read_bytes(idx.find(real_data_dir / ds.name, file))
        assert idx.sha256(data_bytes) == shas[file]


def test_split_sizes_are_exact(real):
    ds, x, _ = real
    assert len(x) == 70_000
    assert (len(ds.train), len(ds.val), len(ds.test)) == (49_000, 7_000, 14_000)
    for split in (ds.train, ds.val, ds.test):
        assert split.x.shape == (len(split), 28, 28) and split.x.dtype == np.uint8
        assert split.y.shape == (len(split),) and split.y.dtype == np.int64


def test_splits_are_stratified(real):
    ds, _, y = real
    pooled = np.bincount(y, minlength=10) / len(y)
    for split in (ds.train, ds.val, ds.test):
        counts = np.bincount(split.y, minlength=10)
        assert np.abs(counts - pooled * len(split)).max() <= 1


def test_splits_partition_the_pool_deterministically(real):
    ds, x, y = real
    train, val, test = split_indices(y, seed=0)
    assert len(np.unique(np.concatenate([train, val, test]))) == 70_000  # disjoint, all used
    for split, index in ((ds.train, train), (ds.val, val), (ds.test, test)):
        np.testing.assert_array_equal(split.x, x[index])
        np.testing.assert_array_equal(split.y, y[index])
    again = split_indices(y, seed=0)
    other = split_indices(y, seed=1)
    for a, b, c in zip((train, val, test), again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(np.sort(a), np.sort(c))
    reseeded = data.load(ds.name, split_seed=1)
    np.testing.assert_array_equal(reseeded.test.y, y[other[2]])
    assert not np.array_equal(reseeded.train.x, ds.train.x)


# mean/std of the training split (seed 0) pixels / 255; MNIST's 0.1307/0.3081 are of the
# original 60,000, the pooled 70,000 give 0.1309/0.3084
TRAIN_STATS = {"mnist": (0.131, 0.308), "fashion-mnist": (0.286, 0.353)}


def test_normalisation_comes_from_the_training_split(real):
    ds, x, _ = real
    assert (round(ds.mean, 3), round(ds.std, 3)) == TRAIN_STATS[ds.name]
    assert ds.mean == pytest.approx(ds.train.x.mean() / 255, rel=1e-9)
    assert ds.std == pytest.approx(ds.train.x.std() / 255, rel=1e-9)
    assert (ds.mean, ds.std) == pixel_stats(ds.train.x)
    assert ds.mean != pixel_stats(x)[0]  # not the pooled data's


def test_subset_is_stratified_and_deterministic(real):
    ds, _, _ = real
    part = subset(ds.train, 1000, seed=0)
    assert len(part) == 1000
    share = np.bincount(ds.train.y, minlength=10) / len(ds.train)
    assert np.abs(np.bincount(part.y, minlength=10) - share * 1000).max() <= 1
    same, other = subset(ds.train, 1000, seed=0), subset(ds.train, 1000, seed=1)
    np.testing.assert_array_equal(part.x, same.x)
    assert not np.array_equal(part.y, other.y)
    assert subset(ds.train, 49_000) is ds.train and subset(ds.train, 10**9) is ds.train
    assert len(subset(ds.val, 6_995)) == 6_995  # fewer left out than classes: still exact
    with pytest.raises(UsageError, match="cannot hold one of each of 10 classes"):
        subset(ds.val, 9)


def test_check_reports_files_sizes_and_class_counts(real):
    ds, _, y = real
    report = json.loads(json.dumps(data.check(ds.name)))
    assert report["how"] == "env" and report["split_seed"] == 0
    assert report["files"] == ds.source["files"]
    assert report["sizes"] == {"train": 49_000, "val": 7_000, "test": 14_000}
    counts = report["class_counts"]
    assert [sum(c) for c in counts.values()] == [49_000, 7_000, 14_000]
    assert np.array_equal(np.sum(list(counts.values()), axis=0), np.bincount(y, minlength=10))
    if ds.name == "fashion-mnist":  # 7,000 images per class: the split is exactly 70/10/20
        assert counts == {"train": [4900] * 10, "val": [700] * 10, "test": [1400] * 10}


def test_split_len():
    assert len(Split(np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.int64))) == 3
