"""Memory before allocation: what a run is about to need, against what this machine has free.
"""
from __future__ import annotations

import os
import sys

from .errors import UserError


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate: MemAvailable, capped by a cgroup limit.

    None when it cannot be told (then no check is made).
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is None:  # cgroup v1
        limit, used = (_read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                       _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    if limit is not None and used is not None and limit < 2**60:
        room = max(limit - used, 0)
        avail = room if avail is None else min(avail, room)
    return avail


def format_bytes(n: float) -> str:
    """``n`` bytes for a person: 512 B, 3.2 MiB, 1.5 GiB, ..."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(need: float, what: str) -> None:
    """Refuse, before allocating, when ``what`` needs more than the available memory."""
    avail = available_memory()
    if avail is not None and need > avail:
        raise UserError(f"{what} needs {format_bytes(need)} of memory; {format_bytes(avail)} is available")


def peak_resident() -> int | None:
    """The most resident memory this process has held so far, in bytes (None where it cannot be told)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS counts bytes, Linux KiB
