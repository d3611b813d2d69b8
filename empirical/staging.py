"""Writing outputs so that nothing is ever half-written or left behind.

:func:`atomic_path` writes one file through a temporary renamed into place; :class:`Staging` writes
several outputs (files or folders) to recognisable temporaries and renames them all into place at
the end, or removes them all. Temporaries carry the host and process id in their names, so those
of a killed process are recognised and swept by the next run (:func:`sweep_stale_partials`).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import PathLike, UserError

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_PARTIAL = ".partial-"
_MARKER = ".neuracrypt-partial"  # inside a temporary folder while it is being written
_PARTIAL_RE = re.compile(r"\.partial-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-")


def partial_prefix(final: PathLike) -> str:
    """The name prefix of a temporary beside ``final``: ``.<name>.partial-<host>-<pid>-``.

    A temporary is recognisable by this name (the output it is for, the machine and the process
    that writes it); a later ``make`` removes those whose process has died.
    """
    return f".{Path(final).name}{_PARTIAL}{_HOST}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale_partials(final: PathLike) -> list[Path]:
    """Remove temporaries for ``final`` left by a process of this machine that has died (e.g. killed).

    Only names made by :func:`partial_prefix` are touched, and a folder only if it still holds the
    marker written while it was being filled; backups of replaced outputs (``...old``) are kept.
    """
    final = Path(final)
    parent, removed = final.parent, []
    if not parent.is_dir():
        return removed
    prefix = f".{final.name}{_PARTIAL}{_HOST}-"
    for p in parent.iterdir():
        if not p.name.startswith(prefix) or p.name.endswith(".old"):
            continue
        m = _PARTIAL_RE.match(p.name, len(final.name) + 1)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                if (p / _MARKER).is_file():
                    shutil.rmtree(p)
                    removed.append(p)
            else:
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted write therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=partial_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()


class Staging:
    """Several outputs written to temporaries beside their final paths, then renamed into place together.

    ``folder(final)`` and ``file(final)`` return a temporary to write; :meth:`commit` renames every
    temporary onto its final path. Until then nothing under a final path exists or changes; if the
    block raises (Ctrl-C and SIGTERM included, see :func:`run_command`) or a rename fails, every
    temporary, every rename already made and every folder created for them is undone. An existing
    output is replaced only with ``force`` (an existing *empty* folder is always fine), and then
    kept aside until all the new ones are in place.
    """

    def __init__(self, force: bool = False):
        self.force = force
        self._entries: list[tuple[Path, Path, bool]] = []  # (temporary, final, is a folder)
        self._made: list[Path] = []  # folders created for the outputs, outermost first
        self._committed = False

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and not self._committed:
            self._abort()
        return False

    def _parents(self, final: Path) -> None:
        missing, p = [], final.parent
        while not p.exists() and not p.is_symlink() and p != p.parent:
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            self._made.append(d)

    def folder(self, final: PathLike) -> Path:
        final = Path(final)
        self._parents(final)
        sweep_stale_partials(final)
        tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(final), dir=final.parent))
        self._entries.append((tmp, final, True))
        (tmp / _MARKER).write_text(f"a temporary folder being written for {final.name}; safe to delete\n")
        return tmp

    def file(self, final: PathLike) -> Path:
        final = Path(final)
        self._parents(final)
        sweep_stale_partials(final)
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(final), suffix=".tmp", dir=final.parent)
        os.close(fd)
        self._entries.append((Path(tmp), final, False))
        return Path(tmp)

    def _place_file(self, tmp: Path, final: Path) -> None:
        """Rename ``tmp`` onto ``final``, which must not exist: never replaces a file that appeared meanwhile."""
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise UserError(f"{final} appeared while writing; not overwriting it") from None
        except OSError:  # no hard links here: check, then rename
            if os.path.lexists(final):
                raise UserError(f"{final} appeared while writing; not overwriting it") from None
            os.rename(tmp, final)
            return
        os.unlink(tmp)

    def commit(self) -> None:
        placed: list[tuple[Path, Path, bool, Path | None, bool]] = []
        try:
            for tmp, final, is_dir in self._entries:
                backup, was_empty_dir = None, False
                if is_dir:
                    (tmp / _MARKER).unlink()
                if os.path.lexists(final):
                    if is_dir and final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
                        final.rmdir()
                        was_empty_dir = True
                    elif self.force:
                        backup = final.with_name(partial_prefix(final) + "old")
                        os.rename(final, backup)
                    else:
                        raise UserError(f"{final} exists; not overwriting it")
                placed.append((tmp, final, is_dir, backup, was_empty_dir))
                if is_dir:
                    os.rename(tmp, final)
                else:
                    self._place_file(tmp, final)
        except BaseException:
            self._roll_back(placed)
            raise
        self._committed = True
        for _, _, _, backup, _ in placed:
            if backup is not None:
                _remove(backup)

    def _roll_back(self, placed) -> None:
        for tmp, final, _is_dir, backup, was_empty_dir in reversed(placed):
            with contextlib.suppress(OSError):
                if os.path.lexists(final):
                    if not os.path.lexists(tmp):
                        os.rename(final, tmp)  # the new output goes back to its temporary (removed below)
                    elif os.path.samefile(tmp, final):
                        os.unlink(final)  # placed by a hard link, its temporary not yet removed
                if backup is not None:
                    os.rename(backup, final)
                elif was_empty_dir:
                    final.mkdir()
        self._abort()

    def _abort(self) -> None:
        for tmp, _, _ in self._entries:
            _remove(tmp)
        for d in reversed(self._made):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if still empty
