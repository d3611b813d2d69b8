"""Where a result was measured and with which code: one record for every result this project writes.

:func:`machine_info` names the machine (CPU, cores, memory, the load while it ran, library
versions, the GPU if one was used); :func:`source_fingerprint` hashes the project's own source, so
a committed result can be checked against the code that is in the tree now (``python -m paper
--check``). No absolute path of the measuring machine goes into either.
"""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

PACKAGES = ("empirical", "theory", "simulations", "paper", "benchmarks")
REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (how busy the machine was), or [] where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def source_files(root: Path = REPO) -> list[Path]:
    """The project's Python sources whose content a result depends on, in a fixed order."""
    return sorted(p for pkg in PACKAGES if (root / pkg).is_dir()
                  for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def source_fingerprint(root: Path = REPO) -> str:
    """A short hash of every project source file (path relative to the repository, and content)."""
    h = hashlib.sha256()
    for p in source_files(root):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def machine_info(xp=None) -> dict:
    """Platform, CPU, cores, memory, load average, library versions, and the GPU if ``xp`` is CuPy."""
    import numpy
    import scipy

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
            "cpus": os.cpu_count(), "memory_gib": _mem_total_gib(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "loadavg": load_average(), "backend": "numpy"}
    if xp is not None and xp.__name__.startswith("cupy"):
        props = xp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info.update(backend="cupy", gpu=name.decode() if isinstance(name, bytes) else str(name),
                    gpu_memory_gib=round(props["totalGlobalMem"] / 2**30, 1), cupy=xp.__version__)
    return info
