"""IDX files, the format of MNIST and Fashion-MNIST: read, verify, and write (for test data).

Layout (http://yann.lecun.com/exdb/mnist/): a big-endian 4-byte magic number 0x000008NN, where
0x08 says "unsigned bytes" and NN is the number of dimensions, then NN big-endian uint32 sizes,
then the bytes. Labels are 0x00000801 (N,), images 0x00000803 (N, rows, cols).

Every failure is a one-line ``DataError`` that names the file: a user with a bad download should
see which file to delete, not a numpy traceback from a reshape.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from perfstudy.errors import DataError

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
IMAGE_SHAPE = (28, 28)

# Canonical (uncompressed) file names, per original file: (images, labels).
# "train" holds 60,000 images and "t10k" 10,000 in both datasets.
PAIRS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NAMES = tuple(name for pair in PAIRS.values() for name in pair)


def one_line(err: BaseException) -> str:
    """An exception as one line, so messages built from it stay one line for the CLI."""
    return " ".join(str(err).split()) or type(err).__name__


def find(folder: Path, name: str) -> Path | None:
    """``folder/name`` raw or gzipped, raw first (it needs no decompression)."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def canonical_name(path: Path) -> str:
    """The file's name without ``.gz``: the key of the checksum tables."""
    return path.name.removesuffix(".gz")


# the largest file of these datasets is 60,000 x 28 x 28 bytes + a header (47 MB): anything
# that is (or decompresses to) more is not one, and is refused before it fills the memory
MAX_BYTES = 64 << 20


def decompress(raw: bytes, what: str) -> bytes:
    """A gzip file's content, at most ``MAX_BYTES`` of it (a 'zip bomb' stops there)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = d.decompress(raw, MAX_BYTES + 1)
    except zlib.error as e:
        raise DataError(f"{what}: not a complete gzip file ({one_line(e)})") from None
    if len(data) > MAX_BYTES:
        raise DataError(f"{what}: decompresses to more than {MAX_BYTES >> 20} MiB; no IDX file "
                        "of these datasets is that large")
    if not d.eof:
        raise DataError(f"{what}: not a complete gzip file (it ends early)")
    return data


def read_bytes(path: Path) -> bytes:
    """The uncompressed content of ``path`` (gunzipped when its name ends in ``.gz``)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise DataError(f"{path}: {path.stat().st_size:,} bytes; no IDX file of these "
                            "datasets is that large")
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({one_line(e)})") from None
    return decompress(raw, str(path)) if path.suffix == ".gz" else raw


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    # usedforsecurity=False: an integrity check, allowed on FIPS-mode systems too
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse(data: bytes, magic: int, path: Path) -> np.ndarray:
    """The array in an IDX file's content, after checking its magic number and its length."""
    what = "labels" if magic == LABELS_MAGIC else "images"
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    # the magic number first: it says how long the header is
    got = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if got is not None and got != magic:
        raise DataError(
            f"{path}: bad magic number 0x{got:08x}, expected 0x{magic:08x} for IDX {what}"
        )
    if len(data) < header:
        raise DataError(f"{path}: truncated: {len(data)} bytes, less than an IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = header + math.prod(dims)
    if len(data) != size:
        state = "truncated" if len(data) < size else "too long"
        raise DataError(
            f"{path}: {state}: its header says {what} of shape {dims} ({size} bytes), "
            f"the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read(path: Path, magic: int, expected_md5: str | None) -> tuple[np.ndarray, str]:
    """One verified IDX file: its array and the MD5 of its uncompressed content.

    The structure is checked before the checksum so that a truncated or mislabelled file gets
    the more telling message; a file that passes both is byte-for-byte the canonical one.
    """
    data = read_bytes(path)
    array = parse(data, magic, path)
    digest = md5(data)
    if expected_md5 is not None and digest != expected_md5:
        raise DataError(
            f"{path}: MD5 of the uncompressed content is {digest}, expected {expected_md5} "
            "(corrupt, or a file of another dataset)"
        )
    return array, digest


def read_pair(
    images: Path, labels: Path, md5s: Mapping[str, str] | None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N, 28, 28) uint8, labels (N,) uint8, and {file name: {"md5", "ok"}}.

    ``md5s`` maps canonical file names to the expected MD5s; None skips the checksum (for
    generated files only).
    """
    md5s = md5s or {}
    x, x_md5 = read(images, IMAGES_MAGIC, md5s.get(canonical_name(images)))
    y, y_md5 = read(labels, LABELS_MAGIC, md5s.get(canonical_name(labels)))
    if x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{images}: images are {x.shape[1:]}, expected {IMAGE_SHAPE}")
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    files = {p.name: {"md5": h, "ok": True} for p, h in ((images, x_md5), (labels, y_md5))}
    return x, y, files


def write(path: Path, array: np.ndarray) -> bytes:
    """Write ``array`` (uint8, 1-D labels or 3-D images) as an IDX file, gzipped if the name
    ends in ``.gz``; returns the uncompressed content (whose MD5 is what gets verified)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {1: LABELS_MAGIC, 3: IMAGES_MAGIC}[array.ndim]
    data = magic.to_bytes(4, "big") + np.asarray(array.shape, dtype=">u4").tobytes()
    data += array.tobytes()
    # mtime=0: the same array gives the same .gz bytes
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return data
