"""Where a result was measured and with which code: one record for every result this project writes.

:func:`machine_info` names the machine (CPU, cores, memory, the load while it ran, library
versions, the GPU if one was used). :func:`fingerprint_record` hashes the source of the packages a
result's code imports, so that a committed result can be checked against the code that is in the
tree now (``python -m paper --check``). :func:`load_record` keeps the load average beside a
timing, and :func:`fit_refusal` says when timings were taken on a machine too busy to fit how
they grow. No absolute path of the measuring machine goes into any of them.
"""
from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

from .backend import Namespace

PACKAGES = ("empirical", "theory", "simulations", "paper", "benchmarks")
REPO = Path(__file__).resolve().parent.parent

# A timing counts as taken under load when the 1-minute load average, at its start or its end,
# exceeds the run's own compute threads by more than this many runnable tasks per core.
LOAD_LIMIT_PER_CORE = 0.25


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


# --- the code that made a result -----------------------------------------------------------------

def source_files(root: Path = REPO, packages: Iterable[str] = PACKAGES) -> list[Path]:
    """The Python sources under ``packages``, in a fixed order.

    Each entry of ``packages`` is a folder of the repository (every ``*.py`` below it) or one
    source file (``"benchmarks/scaling.py"``), relative to ``root``.
    """
    root = Path(root)
    files = set()
    for entry in packages:
        p = root / entry
        if p.is_file():
            files.add(p)
        elif p.is_dir():
            files.update(q for q in p.rglob("*.py") if "__pycache__" not in q.parts)
    return sorted(files)


def source_fingerprint(root: Path = REPO, packages: Iterable[str] = PACKAGES) -> str:
    """A short hash of the sources under ``packages`` (each file's path relative to ``root``, and content).

    Only these sources count: a result made by the attack is fingerprinted over ``empirical`` and
    the code that ran it, not over the theory, so editing one package leaves the other's results
    current.
    """
    root = Path(root)
    h = hashlib.sha256()
    for p in source_files(root, packages):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fingerprint_record(packages: Sequence[str], root: Path = REPO) -> dict:
    """``{"packages": [...], "hash": ...}``: what a result stores as its ``source_fingerprint``."""
    return {"packages": list(packages), "hash": source_fingerprint(root, packages)}


def fingerprint_now(record: dict | str | None, root: Path = REPO) -> tuple[str, str, list[str]]:
    """``(recorded hash, hash of the same sources now, packages)`` for a stored ``source_fingerprint``.

    A record is either :func:`fingerprint_record`'s dict or a bare hash string, which stands for
    every package in :data:`PACKAGES`. Raises ``ValueError`` for anything else.
    """
    if isinstance(record, str):
        packages = list(PACKAGES)
        recorded = record
    elif (isinstance(record, dict) and isinstance(record.get("hash"), str)
          and isinstance(record.get("packages"), list) and all(isinstance(p, str) for p in record["packages"])):
        packages, recorded = record["packages"], record["hash"]
    else:
        raise ValueError(f"not a source fingerprint: {record!r}")
    return recorded, source_fingerprint(root, packages), packages


# --- the machine and its load --------------------------------------------------------------------

def compute_threads() -> int:
    """Threads this process's array work may use: the BLAS/OpenMP limit where one is set, else the cores."""
    cpus = os.cpu_count() or 1
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return min(int(value), cpus)
    return cpus


def load_record(start: Sequence[float], end: Sequence[float] | None = None, threads: int | None = None) -> dict:
    """The load beside one timing: load averages at its start and end, the run's threads, the limit.

    ``limit`` is the highest 1-minute load average at which the timing still counts as taken on
    an otherwise quiet machine: the run's own ``threads`` plus :data:`LOAD_LIMIT_PER_CORE` per core.
    ``end`` defaults to the load average now.
    """
    cpus = os.cpu_count() or 1
    threads = compute_threads() if threads is None else int(threads)
    return {"loadavg_start": list(start), "loadavg_end": list(load_average() if end is None else end),
            "threads": threads, "cpus": cpus, "limit": round(threads + LOAD_LIMIT_PER_CORE * cpus, 2)}


def load_exceeded(record: dict | None) -> float | None:
    """The highest 1-minute load average of a :func:`load_record` when it is above the record's limit.

    None when the timing was taken within the limit. Raises ``KeyError`` when the record does not
    hold the load (a result made before loads were recorded).
    """
    if not record or not record.get("loadavg_start") or not record.get("loadavg_end") or "limit" not in record:
        raise KeyError("no load average recorded")
    peak = max(record["loadavg_start"][0], record["loadavg_end"][0])
    return peak if peak > record["limit"] else None


def fit_refusal(timings: Sequence[dict], key: str = "n") -> dict | None:
    """Why no growth exponent may be fitted to ``timings``, or None when one may.

    Each timing is a dict holding its size under ``key`` and its :func:`load_record` under
    ``"load"``. The answer names the first timing whose load was not recorded (``reason`` "not
    recorded") or that was taken under load (``reason`` "busy", with its 1-minute ``load``, the
    ``limit``, the run's ``threads`` and the ``cpus``); its keys are always ``reason``, ``key``,
    ``load``, ``limit``, ``threads`` and ``cpus`` (None where they do not apply). A slope fitted to
    times that other jobs stretched measures their load as much as the code's growth.
    """
    for t in timings:
        out = {"reason": None, key: t.get(key), "load": None, "limit": None, "threads": None, "cpus": None}
        try:
            peak = load_exceeded(t.get("load"))
        except KeyError:
            return {**out, "reason": "not recorded"}
        if peak is not None:
            rec = t["load"]
            return {**out, "reason": "busy", "load": peak, "limit": rec["limit"], "threads": rec["threads"],
                    "cpus": rec["cpus"]}
    return None


def machine_info(xp: Namespace | None = None) -> dict:
    """Platform, CPU, cores, memory, load average, library versions, and the GPU if ``xp`` is CuPy."""
    import numpy
    import scipy

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
            "cpus": os.cpu_count(), "memory_gib": _mem_total_gib(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "loadavg": load_average(), "threads": compute_threads(),
            "backend": "numpy"}
    if xp is not None and xp.__name__.startswith("cupy"):
        props = xp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info.update(backend="cupy", gpu=name.decode() if isinstance(name, bytes) else str(name),
                    gpu_memory_gib=round(props["totalGlobalMem"] / 2**30, 1), cupy=xp.__version__)
    return info
