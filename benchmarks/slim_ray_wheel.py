"""Ray's wheels for a machine that can receive only 64 MiB per call (the H200 device here):
ray 2.60.0 for CPython 3.12 without its Java workers and the libraries perfstudy does not use,
plus the dependencies that machine lacks.

    python benchmarks/slim_ray_wheel.py [--dest .whl]

Then, on that machine: ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl`` and
``PYTHONPATH=src:/tmp/site``. The full wheel is 79 MB; this one about 38 MB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

RAY = "ray==2.60.0"
# what ray needs and the GPU machine's Python 3.12 does not have
EXTRA = ["jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "referencing==0.37.0",
         "rpds-py==2026.9.1"]
DROP = ("ray/jars/", "ray/dashboard/client/", "ray/rllib/", "ray/tune/", "ray/train/",
        "ray/serve/", "ray/llm/", "ray/data/")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def download(dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + [RAY, *EXTRA], check=True)


def slim(wheel: Path) -> Path:
    """Rewrite the wheel without DROP's folders (and their RECORD lines)."""
    out = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith(DROP):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(x for x in lines if not x.startswith(DROP)) + "\n").encode()
            dst.writestr(item, data)
    out.replace(wheel)
    return wheel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=".whl", help="folder for the wheels (default .whl)")
    dest = Path(ap.parse_args().dest)
    dest.mkdir(exist_ok=True)
    download(dest)
    for wheel in dest.glob("ray-*.whl"):
        slim(wheel)
    total = sum(f.stat().st_size for f in dest.glob("*.whl"))
    print(f"{dest}: {total / 1e6:.1f} MB in {len(list(dest.glob('*.whl')))} wheels")


if __name__ == "__main__":
    main()
