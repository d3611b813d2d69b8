"""Helpers shared by the benchmark scripts: machine description, timestamps, JSON output.

Not a test helper and not part of the package: the scripts under ``benchmarks/`` import it from
their own folder (``python benchmarks/<script>.py`` puts that folder on ``sys.path``).
"""
from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
    except OSError:
        pass
    return None


def _git() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        except Exception:
            return ""

    dirty = [ln[3:] for ln in run("status", "--porcelain", "--", "empirical").splitlines() if len(ln) > 3]
    return {"commit": run("rev-parse", "HEAD").strip() or None, "empirical_uncommitted_files": dirty}


def machine(xp=None) -> dict:
    """Where a measurement ran: CPU, cores, memory, load, library versions, git state, GPU if used."""
    import numpy
    import scipy

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
            "cpus": os.cpu_count(), "memory_gib": _mem_total_gib(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "loadavg_at_start": list(os.getloadavg()), "git": _git(),
            "package_dir": str(package_dir()), "package_sources_sha": package_fingerprint()}
    if xp is not None and xp.__name__.startswith("cupy"):
        props = xp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
        info["cupy"] = xp.__version__
    return info


def package_dir() -> Path:
    """Folder of the ``empirical`` package this process imports (the checkout, or a snapshot on PYTHONPATH)."""
    import empirical

    return Path(empirical.__file__).resolve().parent


def package_fingerprint() -> str:
    """Short hash of the imported package's sources (others may be editing the checkout meanwhile)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(package_dir().glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_json(path, obj) -> None:
    """Atomic JSON with the keys in the order they were put in (the package's writer)."""
    from empirical.fileio import write_json as _write

    _write(path, obj, sort_keys=False)


def fit_exponent(ns, ys) -> float | None:
    """Least-squares slope of log(y) against log(n): y ~ c * n^slope."""
    import numpy as np

    pts = [(n, y) for n, y in zip(ns, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def gib(b) -> float:
    return round(b / 2**30, 3)


class GpuMemory:
    """Peak bytes in use in CuPy's memory pool (a memory hook); a no-op under NumPy."""

    def __init__(self, xp):
        self.xp, self.used, self.peak, self.hook = xp, 0, 0, None
        if xp.__name__.startswith("cupy"):
            from cupy.cuda import memory_hook

            outer = self

            class Hook(memory_hook.MemoryHook):
                name = "peak_bytes"

                def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                    outer.used += mem_size
                    outer.peak = max(outer.peak, outer.used)

                def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
                    outer.used -= mem_size

            self.hook = Hook()

    def __enter__(self):
        if self.hook is not None:
            self.hook.__enter__()
        return self

    def __exit__(self, *exc):
        if self.hook is not None:
            self.hook.__exit__(*exc)
        return False

    def info(self) -> dict:
        if self.hook is None:
            return {}
        return {"gpu_peak_bytes": self.peak, "gpu_peak_gib": gib(self.peak), "gpu_in_use_gib": gib(self.used),
                "gpu_pool_total_gib": gib(self.xp.get_default_memory_pool().total_bytes())}
