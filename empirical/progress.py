"""Progress bars on stderr for long stages (tqdm), silenced with ``quiet``."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

Progress = Callable[[int], Any]  # ``advance(k)``: k more units of work are done


@contextlib.contextmanager
def progress_bar(total: int, desc: str, quiet: bool = False) -> Iterator[Progress]:
    """Yield a callable ``advance(k)``; shows a tqdm bar on stderr unless ``quiet``."""
    if quiet:
        yield lambda k=1: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield bar.update
