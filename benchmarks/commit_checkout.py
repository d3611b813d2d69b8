"""An earlier commit of this repository, checked out beside the tree for a side-by-side run.

Used by the scripts that compare the tree with a commit (``same_as_commit.py``,
``default_side_by_side.py``); imported from their own folder, as ``bench_common`` is.
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_common import REPO


def resolve(commit: str) -> str:
    """The full hash of ``commit`` (any name git accepts)."""
    return subprocess.run(["git", "rev-parse", commit], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


@contextmanager
def checked_out(commit: str, prefix: str) -> Iterator[tuple[Path, Path]]:
    """``(tmp, old)``: a temporary folder, and inside it a detached git worktree of ``commit``; both are
    removed on leaving, the worktree from git's list too."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), commit], cwd=REPO, check=True,
                       capture_output=True)
        try:
            yield Path(tmp), old
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
