"""Reading ``paper/data/``: the JSON files of ``python -m simulations`` and ``python -m theory.experiments``."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


class MissingData(FileNotFoundError):
    """An output needs a data file that is not there; the message says how to make it."""


class Data:
    """The data folder, read lazily: ``data["table1"]`` is ``table1.json`` as a dict."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._cache: dict = {}

    def path(self, name: str) -> Path:
        return self.folder / (name if "." in name else f"{name}.json")

    def __contains__(self, name: str) -> bool:
        return self.path(name).exists()

    def __getitem__(self, name: str) -> dict:
        if name not in self._cache:
            p = self.path(name)
            if not p.exists():
                hint = "python -m simulations theory" if name.startswith("theory") else f"python -m simulations {name}"
                raise MissingData(f"{p} is missing; make it with `{hint}` (add --quick for a smoke run)")
            self._cache[name] = json.loads(p.read_text())
        return self._cache[name]

    def arrays(self, name: str) -> dict:
        """An ``.npz`` beside the JSON files, as a dict of arrays."""
        p = self.path(name)
        if not p.exists():
            raise MissingData(f"{p} is missing; make it with `python -m simulations examples`")
        with np.load(p) as z:
            return {k: z[k] for k in z.files}

    def quick(self, name: str) -> bool:
        """Whether a data file came from a ``--quick`` run.

        The theory files do not carry the flag; ``theory.json`` (written when ``python -m
        simulations theory`` made them) does, as long as the files are the ones it recorded.
        """
        if name.startswith("theory_"):
            if "theory" not in self:
                return False
            man = self["theory"]
            rec = man["results"]["files"].get(name[len("theory_"):], {})
            return bool(man.get("quick")) and rec.get("date") == self[name].get("date")
        return bool(self[name].get("quick"))


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def numeric_leaves(obj) -> list:
    """Every number in a JSON value, plus fractions written as strings ("4/7")."""
    out = []
    if isinstance(obj, bool):
        return out
    if isinstance(obj, (int, float)):
        out.append(float(obj))
    elif isinstance(obj, str):
        parts = obj.split("/")
        try:
            out.append(float(obj) if len(parts) == 1 else float(parts[0]) / float(parts[1]))
        except (ValueError, ZeroDivisionError):
            pass
    elif isinstance(obj, dict):
        for v in obj.values():
            out.extend(numeric_leaves(v))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(numeric_leaves(v))
    return out
