"""Progress bars on stderr for long stages (tqdm), silenced with ``quiet``."""
from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def progress_bar(total: int, desc: str, quiet: bool = False):
    """Yield a callable ``advance(k)``; shows a tqdm bar on stderr unless ``quiet``."""
    if quiet:
        yield lambda k=1: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield bar.update
