"""Settings of the full and quick sweeps, and the JSON record every experiment writes."""
from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from pathlib import Path

from empirical.encoder import EncoderConfig
from empirical.extraction import ExtractConfig
from empirical.machine import fingerprint_record, load_record, machine_info
from empirical.pipeline import AttackConfig
from empirical.psim import PsimConfig

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "paper" / "data"

# The NeuraCrypt Challenge variants in Table 1's order, with the total depth the names count.
VARIANTS = ("linear", "neuracrypt-2-noshuffle", "neuracrypt-2", "neuracrypt-7", "neuracrypt-47")
TOTAL_DEPTH = {"linear": 1, "neuracrypt-2-noshuffle": 2, "neuracrypt-2": 2, "neuracrypt-7": 7, "neuracrypt-47": 47}
REFERENCE_VARIANT = "neuracrypt-7"  # the paper's variant: stages, p-sim and examples come from its run

# The full sweep uses the attack's own defaults: one place defines them (empirical.pipeline,
# empirical.psim, empirical.extraction, empirical.encoder).
_FAMILY, _ATTACK, _PSIM, _EXTRACT = EncoderConfig(), AttackConfig(), PsimConfig(), ExtractConfig()

# The sources whose code made each experiment's result (see empirical.machine.source_fingerprint).
_BENCH_SPEEDUP = ("benchmarks/speedup.py", "benchmarks/bench_common.py")
_BENCH_SWEEP = ("benchmarks/streaming.py", "benchmarks/results/cpu_streaming_sweep.json")
ATTACK_SOURCES = ("empirical", "simulations")
SOURCES = {
    "table1": ATTACK_SOURCES, "stages": ATTACK_SOURCES, "psim": ATTACK_SOURCES, "examples": ATTACK_SOURCES,
    "scaling": (*ATTACK_SOURCES, *_BENCH_SWEEP),  # its own runs, and the fixed-budget sweep's result
    "speedup": ("empirical", "simulations", *_BENCH_SPEEDUP),  # the benchmark's result, or its script run here
    "theory": ("theory", "simulations"),
    "all": ("empirical", "simulations", "theory", *_BENCH_SPEEDUP, *_BENCH_SWEEP),
}


@dataclass(frozen=True)
class Settings:
    """Sizes of one sweep. ``make()`` is the committed run; ``make(quick=True)`` a smoke test for CI.

    The full sweep's training budgets are the attack's defaults, read from its configurations.
    """

    quick: bool
    image_size: int = _FAMILY.image_size
    patch: int = _FAMILY.patch
    hidden: int = _FAMILY.hidden
    table1_n: int = 1000
    scaling_n: tuple = (250, 500, 1000, 2000)
    psim_steps: int = _PSIM.steps
    psim_encoders: int = _PSIM.n_encoders
    psim_images: int = _PSIM.images_per_encoder
    extract_steps: int = _EXTRACT.steps
    refine_steps: int = _EXTRACT.refine_steps
    candidates: int = _ATTACK.candidates
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


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, obj: dict) -> Path:
    """Write ``obj`` atomically (a half-written data file would break ``python -m paper``)."""
    from empirical.fileio import write_json as _write

    _write(path, obj, sort_keys=False)
    return Path(path)


def record(name: str, settings: Settings, seed: int, config: dict, results: dict, seconds: float,
           started: str, load_start: list, xp=None) -> dict:
    """The common envelope of every ``paper/data/<name>.json``.

    ``load`` holds the load average at the start and the end of the experiment beside its
    ``seconds``; ``source_fingerprint`` hashes the sources that made the result (:data:`SOURCES`);
    ``xp`` (the attack's array module) names the GPU in ``machine`` when one was used.
    """
    return {"experiment": name, "quick": settings.quick, "seed": seed,
            "config": {"settings": settings.to_json(), **config}, "machine": machine_info(xp),
            "source_fingerprint": fingerprint_record(SOURCES[name]),
            "started": started, "date": now_utc(), "seconds": seconds, "load": load_record(load_start),
            "results": results}
