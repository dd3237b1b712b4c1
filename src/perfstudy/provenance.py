"""Where a number came from: software versions, device and host."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

import perfstudy


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """``$PERFSTUDY_GIT_COMMIT`` where set (code copied without its history, or beside a stale
    one); else the checkout's commit, ``-dirty`` with uncommitted changes to tracked files."""
    if os.environ.get("PERFSTUDY_GIT_COMMIT"):
        return os.environ["PERFSTUDY_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7", "--exclude=*"],
            cwd=Path(perfstudy.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_model()} ({torch.get_num_threads()} threads)"


def collect(device: torch.device | str | None = None) -> dict:
    import sklearn
    import torchvision
    from threadpoolctl import threadpool_info

    info = {
        "perfstudy": perfstudy.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "sklearn": sklearn.__version__,
        "numpy": __import__("numpy").__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "blas_threads": max((p["num_threads"] for p in threadpool_info()), default=None),
        "host": socket.gethostname(),
    }
    if device is not None:
        info["device"] = str(device)
        info["device_name"] = device_name(device)
    return info
