"""How the reports' wall times were taken, said beside them: the machine they ran on. Times
are this run's own (no separate benchmark): compare them only within one report, made with
nothing else running on the machine (``dvc repro`` alone)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

__all__ = ["machine"]


def _cpu() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's word for it)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """E.g. ``2 cores of Intel(R) Xeon(R) ..., 2 torch threads`` (and the GPU, if any)."""
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} cores of {_cpu()}, {torch.get_num_threads()} torch threads{gpu}"
