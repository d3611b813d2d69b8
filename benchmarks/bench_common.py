"""Helpers shared by the benchmark scripts: machine description, source fingerprint, load, JSON output.

Not a test helper and not part of the package: the scripts under ``benchmarks/`` import it from
their own folder (``python benchmarks/<script>.py`` puts that folder on ``sys.path``).
"""
from __future__ import annotations

import datetime
import resource
import subprocess
from pathlib import Path

from empirical.machine import fingerprint_record, load_average, load_record, machine_info

REPO = Path(__file__).resolve().parent.parent

__all__ = ["REPO", "GpuMemory", "fit_exponent", "gib", "load_average", "load_record", "machine", "now_utc",
           "peak_rss_bytes", "sources", "write_json"]


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        except Exception:
            return ""

    dirty = [ln[3:] for ln in run("status", "--porcelain", "--", "empirical", "benchmarks").splitlines()
             if len(ln) > 3]
    return {"commit": run("rev-parse", "HEAD").strip() or None, "uncommitted_files": dirty}


def machine(xp=None) -> dict:
    """Where a measurement ran: :func:`empirical.machine.machine_info` (CPU, cores, memory, load
    average now, library versions, GPU if used) and the git commit with the uncommitted files."""
    return {**machine_info(xp), "git": _git()}


def sources(script: str, *uses: str) -> dict:
    """The ``source_fingerprint`` of a result of ``benchmarks/<script>``: the package and the script.

    A benchmark's numbers depend on the attack (``empirical``), on its own script, on these
    helpers and on the other benchmark files it ``uses`` (names inside ``benchmarks/``); the
    fingerprint covers those sources and nothing else.
    """
    return fingerprint_record(("empirical", f"benchmarks/{Path(script).name}", *(f"benchmarks/{u}" for u in uses),
                               "benchmarks/bench_common.py"))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_json(path, obj) -> None:
    """Atomic JSON with the keys in the order they were put in (the package's writer)."""
    from empirical.fileio import write_json as _write

    _write(path, obj, sort_keys=False)


def result_header(benchmark: str, started: str, mach: dict, fingerprint: dict, args) -> dict:
    """The fields every result file opens with: what ran, when, where, on which code and settings."""
    return {"benchmark": benchmark, "date": now_utc(), "started": started, "machine": mach,
            "source_fingerprint": fingerprint,
            "settings": {k: v for k, v in vars(args).items() if k != "json"}}


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
