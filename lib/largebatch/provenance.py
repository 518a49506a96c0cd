"""Where and with what numbers were made: the machine and the versions behind a result.

Bit-for-bit repeatability holds on one CPU, not across CPUs, so two readers whose
numbers differ first compare these. :func:`environment` is the one record of it,
written into every verdict file (:func:`largebatch.analysis.record_verdicts`) and the
reproduction manifest (:mod:`largebatch.reproduce`), and shown by the summary.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "environment"]

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (``model name`` in ``/proc/cpuinfo``, else what ``platform`` knows)."""
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """The machine (CPU model, cores, usable cores, platform) and the Python and torch versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": _version("torch"), "largebatch": _version("largebatch")}
