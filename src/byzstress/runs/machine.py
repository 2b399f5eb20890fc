"""What a run or a benchmark records about the machine it ran on.

A run is a pure function of its spec, its seed and this: the library versions, the CPU (or
GPU) and the float32 kernels torch dispatches to (docs/reproducibility.md). The run records
(:mod:`.runner`) and the benchmarks name the machine through these functions.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .. import __version__

__all__ = ["cpu_model", "device_name", "dist_version", "kernels", "versions"]


def dist_version(dist: str) -> str | None:
    """An installed distribution's version, read from its metadata: importing torchvision
    only for its version would cost a short run about a second."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """The versions that decide a run's numbers besides the code and the machine."""
    return {
        "byzstress": __version__,
        "torch": torch.__version__,
        "torchvision": dist_version("torchvision"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``None`` elsewhere). The run records
    and the benchmarks name the machine with it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def kernels() -> dict[str, str | None]:
    """What decides float32 rounding on the CPU besides the code: the CPU, the ATen kernel
    set torch dispatches to (``ATEN_CPU_CAPABILITY`` may lower it) and oneDNN's ISA cap."""
    return {
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's architecture as Python reports it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
