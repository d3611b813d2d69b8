"""User-facing errors, and how every command reports them: one line on stderr, a non-zero exit.

:class:`UserError` is what the project raises for bad input (a file, a flag, a size), with a
message naming what is wrong; :func:`run_command` runs a command's body and turns any failure,
Ctrl-C and SIGTERM included, into one line; :class:`OneLineParser` does the same for bad flags.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

PathLike = str | os.PathLike  # a path given as a string or a Path

DEBUG_ENV = "NEURACRYPT_DEBUG"  # set to 1 to see the traceback behind any one-line error


class UserError(ValueError):
    """A problem with what the user gave (a file, a flag, a size); the message is one line naming it."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {one_line(message)} (see --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that clean-up code runs as for Ctrl-C."""

    signum = signal.SIGTERM


def one_line(e: object) -> str:
    """``e`` (an exception or a message) as one line: every run of white space made one space."""
    return " ".join(str(e).split())


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except (ValueError, OSError):  # pragma: no cover - not settable here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(body: Callable[[], int], interrupted: str = "") -> int:
    """Run a command's body; every failure becomes one line on stderr and a non-zero exit.

    :class:`UserError` and :class:`OSError` (bad input, full disk, no permission) print
    ``error: <message>`` and return 2; Ctrl-C or SIGTERM prints ``interrupted`` and ``interrupted``
    (what to do next) and returns 130 or 143; running out of memory returns 2; anything else is a
    bug, printed as one line naming the exception and returning 1. With ``NEURACRYPT_DEBUG=1`` the
    exception is raised instead, with its traceback.
    """
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")

    def say(line: str) -> None:
        sys.stdout.flush()
        print(line, file=sys.stderr, flush=True)

    with _sigterm_raises():
        try:
            return body()
        except KeyboardInterrupt as e:
            if debug:
                raise
            signum = int(getattr(e, "signum", signal.SIGINT))
            how = " by SIGTERM" if signum == signal.SIGTERM else ""
            say(f"interrupted{how}" + (f"; {interrupted}" if interrupted else ""))
            return 128 + signum
        except (UserError, OSError) as e:
            if debug:
                raise
            say(f"error: {one_line(e) or type(e).__name__}")
            return 2
        except MemoryError:
            if debug:
                raise
            say("error: out of memory (the inputs need more memory than this machine has); "
                "try fewer or smaller images")
            return 2
        except Exception as e:
            if debug:
                raise
            say(f"error: internal error ({type(e).__name__}: {one_line(e)}); "
                f"rerun with {DEBUG_ENV}=1 to see the traceback")
            return 1
