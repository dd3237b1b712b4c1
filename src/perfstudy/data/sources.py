"""Where a dataset's four IDX files are found, and their download into the cache.

Lookup order, first complete folder wins:

1. the ``data_dir`` argument,
2. ``$PERFSTUDY_DATA_DIR``,
3. ``~/.cache/perfstudy/<name>/`` (where downloads go),
4. ``/usr/share/datasets/<name>/`` (Debian's ``dataset-fashion-mnist`` installs there),
5. a download from the dataset's mirrors into the cache.

For 1 and 2 the folder may hold ``<name>/`` subfolders (one root for both datasets) or directly
the four files. A folder holding only some of the files is an error rather than skipped, so a
half-copied dataset is reported instead of silently replaced by another copy; in the cache it is
completed by the download.
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from perfstudy import __version__
from perfstudy.data import idx
from perfstudy.errors import DataError
from perfstudy.registry import Registry

ENV_VAR = "PERFSTUDY_DATA_DIR"
SYSTEM_ROOT = Path("/usr/share/datasets")
TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    name: str
    mirrors: tuple[str, ...]  # base URLs; a file's URL is mirror + "<file>.gz"


SOURCES: Registry[Source] = Registry("dataset")
SOURCES.register(
    "mnist",
    Source(
        "mnist",
        # HTTPS first; the plain-HTTP original last (every file is checked by SHA-256 anyway)
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    ),
)
SOURCES.register(
    "fashion-mnist",
    Source("fashion-mnist", (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )),
)


def source(name: str) -> Source:
    """The dataset's source; an unknown name is a ``UsageError`` listing the choices."""
    return SOURCES.get(name)


@cache
def _checksums(name: str, kind: str = "md5") -> tuple[tuple[str, str], ...]:
    text = resources.files("perfstudy.data").joinpath(f"{name}.{kind}").read_text()
    pairs = (line.split() for line in text.splitlines() if line.strip())
    return tuple((file, digest) for digest, file in pairs)


def checksums(name: str) -> dict[str, str]:
    """Canonical MD5s of the uncompressed files, shipped with the package: {file name: md5}.

    The uncompressed bytes are what is canonical: the ``.gz`` wrappers of the copies around
    (Debian's, re-packed ones) carry other gzip headers, so an MD5 of the archive would refuse
    good data.
    """
    return dict(_checksums(source(name).name))


def sha256s(name: str) -> dict[str, str]:
    """SHA-256s of the same uncompressed files (computed from copies that match the canonical
    MD5s): what a download is checked against."""
    return dict(_checksums(source(name).name, "sha256"))


def cache_root() -> Path:
    return Path.home() / ".cache" / "perfstudy"


def candidates(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The folders to look in, in order, each with how it was chosen."""
    found: list[tuple[Path, str]] = []
    for root, how in ((data_dir, "data_dir"), (os.environ.get(ENV_VAR), "env")):
        if root:  # None or "" (an empty variable) means not set
            root = Path(root).expanduser()
            found += [(root / name, how), (root, how)]
    found.append((cache_root() / name, "cache"))
    found.append((SYSTEM_ROOT / name, "system"))
    return found


def locate(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    md5s: Mapping[str, str] | None = None,
) -> tuple[Path, str]:
    """The folder holding the dataset's four files, and how it was found (``data_dir``, ``env``,
    ``cache``, ``system`` or ``download``). Downloads into the cache when no folder has them.

    ``mirrors`` and ``md5s`` replace the dataset's own (tests point them at generated data).
    Raises a one-line ``DataError`` listing the places tried when nothing works.
    """
    source(name)  # unknown name: UsageError before anything else
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"data dir {data_dir}: no such folder")
    tried = []
    for folder, how in candidates(name, data_dir):
        have = [n for n in idx.NAMES if idx.find(folder, n)]
        if len(have) == len(idx.NAMES):
            return folder, how
        if have and how != "cache":
            missing = [n for n in idx.NAMES if n not in have]
            raise DataError(
                f"{folder} ({how}) holds only part of {name}: missing "
                + ", ".join(f"{n}[.gz]" for n in missing)
            )
        tried.append(f"{folder} ({how})")
    dest = cache_root() / name
    try:
        download(name, dest, mirrors=mirrors, md5s=md5s)
    except DataError as e:
        raise DataError(
            f"{name} not found in {', '.join(tried)}; {e}; pass a data dir or set {ENV_VAR} "
            "to a folder holding the four IDX files"
        ) from None
    return dest, "download"


def download(
    name: str,
    dest: Path,
    *,
    mirrors: Sequence[str] | None = None,
    md5s: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_S,
) -> None:
    """Fetch the files missing from ``dest`` (as ``.gz``), trying the mirrors in order.

    Each file goes to a temporary file in ``dest``, is checked against the MD5 of its
    uncompressed content, and only then renamed into place: an interrupted or corrupt download
    never leaves a file that a later run would take for good, and processes downloading at the
    same time each rename a complete, identical file.
    """
    mirrors = tuple(mirrors if mirrors is not None else source(name).mirrors)
    shas = sha256s(name) if md5s is None else {}  # test data brings its own MD5s only
    md5s = md5s if md5s is not None else checksums(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"download failed: cannot create {dest} ({idx.one_line(e)})") from None
    for file in idx.NAMES:
        if idx.find(dest, file):
            continue
        errors = []
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{file}.gz"
            try:
                _fetch(url, dest / f"{file}.gz", md5s.get(file), shas.get(file), timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as e:
                # OSError: URLError, HTTPError, timeouts, a full disk; ValueError: an unknown
                # URL scheme; HTTPException: a connection cut mid-body (IncompleteRead)
                errors.append(f"{url}: {idx.one_line(e)}")
            except DataError as e:  # not gzip, or a wrong checksum: try the next mirror
                errors.append(f"{url}: {e}")
        else:
            raise DataError(f"download into {dest} failed: " + "; ".join(errors))


def _fetch(url: str, target: Path, expected_md5: str | None, expected_sha: str | None,
           timeout: float) -> None:
    log.info("downloading %s", url)
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    part = Path(part)
    # some servers (yann.lecun.com) refuse urllib's default User-Agent
    request = urllib.request.Request(url, headers={"User-Agent": f"perfstudy/{__version__}"})
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                if out.tell() + len(chunk) > idx.MAX_BYTES:
                    raise DataError(f"more than {idx.MAX_BYTES >> 20} MiB: not an IDX file")
                out.write(chunk)
        data = idx.decompress(part.read_bytes(), "download")
        digest = idx.md5(data)
        if expected_md5 is not None and digest != expected_md5:
            raise DataError(f"MD5 of the uncompressed content is {digest}, expected {expected_md5}")
        if expected_sha is not None and (sha := idx.sha256(data)) != expected_sha:
            raise DataError(f"SHA-256 of the uncompressed content is {sha}, expected "
                            f"{expected_sha}")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
