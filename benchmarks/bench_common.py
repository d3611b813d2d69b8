"""Helpers shared by the benchmark scripts: machine description, timestamps, JSON output.

Not a test helper and not part of the package: the scripts under ``benchmarks/`` import it from
their own folder (``python benchmarks/<script>.py`` puts that folder on ``sys.path``).
"""
from __future__ import annotations

import datetime
import json
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def fit_exponent(ns, ys) -> float | None:
    """Least-squares slope of log(y) against log(n): y ~ c * n^slope."""
    import numpy as np

    pts = [(n, y) for n, y in zip(ns, ys) if y and y > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def gib(b) -> float:
    return round(b / 2**30, 3)
