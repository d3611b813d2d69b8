"""Settings of the full and quick sweeps, and the JSON record every experiment writes."""
from __future__ import annotations

import datetime
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "paper" / "data"

# The NeuraCrypt Challenge variants in Table 1's order, with the total depth the names count.
VARIANTS = ("linear", "neuracrypt-2-noshuffle", "neuracrypt-2", "neuracrypt-7", "neuracrypt-47")
TOTAL_DEPTH = {"linear": 1, "neuracrypt-2-noshuffle": 2, "neuracrypt-2": 2, "neuracrypt-7": 7, "neuracrypt-47": 47}
REFERENCE_VARIANT = "neuracrypt-7"  # the paper's variant: stages, p-sim and examples come from its run


@dataclass(frozen=True)
class Settings:
    """Sizes of one sweep. ``full()`` is the committed run; ``quick()`` a smoke test for CI."""

    quick: bool
    image_size: int = 128
    patch: int = 16
    hidden: int = 256
    table1_n: int = 1000
    scaling_n: tuple = (250, 500, 1000, 2000)
    psim_steps: int = 1500
    psim_encoders: int = 10
    psim_images: int = 256
    extract_steps: int = 250  # ExtractConfig.steps
    refine_steps: int = 450  # ExtractConfig.refine_steps
    candidates: int = 15  # AttackConfig.candidates
    fresh_images: int = 500  # fresh images T' is scored on (Challenge 2)
    pair_samples: int = 2000  # pairs timed for the per-pair assignment method
    examples: int = 4
    backend: str = "numpy"
    tiny: bool = False  # test-fixture sizes: seconds in all, numbers meaningless

    @classmethod
    def make(cls, quick: bool = False, backend: str = "numpy", tiny: bool = False) -> Settings:
        """The full sweep; with ``quick`` the smoke-test sizes (minutes in all on 2 cores); with
        ``tiny`` the sizes of the tests' fixtures (seconds; the numbers mean nothing)."""
        if tiny:
            return cls(quick=True, tiny=True, image_size=32, patch=8, hidden=32, table1_n=40, scaling_n=(20, 40),
                       psim_steps=5, psim_encoders=2, psim_images=20, extract_steps=2, refine_steps=2, fresh_images=10,
                       pair_samples=10, examples=2, backend=backend)
        if not quick:
            return cls(quick=False, backend=backend)
        return cls(quick=True, hidden=128, table1_n=150, scaling_n=(75, 150, 300), psim_steps=100,
                   psim_encoders=3, psim_images=96, extract_steps=10, refine_steps=10, fresh_images=64,
                   pair_samples=300, backend=backend)

    def to_json(self) -> dict:
        d = asdict(self)
        d["scaling_n"] = list(self.scaling_n)
        return d


def machine_info() -> dict:
    """Where the numbers were measured; the load average says how busy the machine was."""
    import scipy

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "numpy": np.__version__, "scipy": scipy.__version__,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, obj: dict) -> Path:
    """Write ``obj`` atomically (a half-written data file would break ``python -m paper``)."""
    from empirical.fileio import write_json as _write

    _write(path, obj, sort_keys=False)
    return Path(path)


def record(name: str, settings: Settings, seed: int, config: dict, results: dict, seconds: float,
           started: str) -> dict:
    """The common envelope of every ``paper/data/<name>.json``."""
    return {"experiment": name, "quick": settings.quick, "seed": seed,
            "config": {"settings": settings.to_json(), **config}, "machine": machine_info(),
            "started": started, "date": now_utc(), "seconds": seconds, "results": results}
