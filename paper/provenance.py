"""Was every result made by the code now in the tree? The check of source fingerprints.

Every JSON result that ``python -m simulations``, ``python -m theory.experiments`` and the
benchmark scripts write records a ``source_fingerprint``: a hash of the sources of the packages
its code imports (:func:`empirical.machine.fingerprint_record`; the attack's results cover
``empirical`` and ``simulations``, the theory's ``theory``, a benchmark's ``empirical`` and its
script). :func:`check_fingerprints` hashes the same sources as they are now and lists

* every result whose fingerprint differs: it was made by other code, so its numbers may not be
  what the code in the tree gives;
* every result that records no fingerprint: the code that made it is unknown.

Fingerprints nested inside a result (a benchmark's result copied into ``speedup.json``, each run
of the GPU check) are checked too, each named by its place in the file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from empirical.machine import REPO, fingerprint_now

KEY = "source_fingerprint"


def fingerprints(obj, where: str = "") -> Iterator[tuple[str, object]]:
    """``(place in the file, record)`` of every ``source_fingerprint`` in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == KEY:
                yield where or "top level", v
            else:
                yield from fingerprints(v, f"{where}.{k}" if where else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from fingerprints(v, f"{where}[{i}]")


def shown(path: Path) -> str:
    """``path`` relative to the working folder or the repository where it lies inside one."""
    path = Path(path).resolve()
    for base in (Path.cwd(), REPO):
        try:
            return path.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return os.fspath(path)


def remake_hint(path: Path, obj=None) -> str:
    """The command that makes the result at ``path`` (whose content is ``obj``) again."""
    name = Path(path).stem
    bench = obj.get("benchmark") if isinstance(obj, dict) else None
    if isinstance(bench, str) and bench.split():
        script = REPO / "benchmarks" / f"{bench.split()[0]}.py"
        if script.exists():
            return f"re-run `python benchmarks/{script.name}` with the settings it records (benchmarks/README.md)"
        return "re-run the benchmark that wrote it (benchmarks/README.md)"
    if isinstance(obj, dict) and "stage_records" in obj and "final_share_matched" in obj:  # the attack's --json
        return ("re-run `python -m empirical.attack --json PATH` with the settings in its `config` "
                "(benchmarks/README.md gives the commands)")
    if name.startswith("theory"):
        return "`python -m simulations theory`"
    if name == "run_all":
        return "`python -m simulations all`"
    return f"`python -m simulations {name}`"


def check_fingerprints(folders: Iterable[Path | str], root: Path = REPO) -> list[str]:
    """One line per result under ``folders`` (``*.json``) that the code in ``root`` did not make.

    Empty when every result records a fingerprint and each equals the fingerprint of the same
    sources now.
    """
    problems = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            where_file = shown(path)
            try:
                obj = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                problems.append(f"{where_file}: cannot be read as JSON ({e})")
                continue
            records = list(fingerprints(obj))
            if not records:
                problems.append(f"{where_file}: records no source fingerprint, so the code that made it is unknown "
                                f"(it predates fingerprints); re-make it: {remake_hint(path, obj)}")
                continue
            for where, rec in records:
                try:
                    recorded, now, packages = fingerprint_now(rec, root)
                except ValueError:
                    problems.append(f"{where_file} ({where}): the source fingerprint is malformed: {rec!r}")
                    continue
                if recorded != now:
                    problems.append(f"{where_file} ({where}): made by other code: source fingerprint {recorded} of "
                                    f"{', '.join(packages)}, but those sources hash to {now} now; "
                                    f"re-make it: {remake_hint(path, obj)}")
    return problems
