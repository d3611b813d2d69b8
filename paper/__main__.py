"""``python -m paper [--data DIR] [--out DIR] [--check] [--only NAME ...]``.

Without ``--check``: draw every figure (``figures/*.png``), table (``tables/*.md``) and then
``paper.md`` from the data folder alone, and record what each was drawn from in ``build.json``.
With ``--check``: change nothing; list every output that is older than its data or quotes a number
the data do not hold, and exit 1 if there is one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DATA_DIR, PAPER_DIR


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA_DIR, help="data folder (default paper/data)")
    ap.add_argument("--out", type=Path, default=PAPER_DIR, help="output folder (default paper/)")
    ap.add_argument("--check", action="store_true", help="only check freshness; exit 1 on any problem")
    ap.add_argument("--only", nargs="+", help="draw only these outputs (path or stem, e.g. stages.png or table1)")
    args = ap.parse_args(argv)
    if args.check:
        from .freshness import check

        problems = check(args.out, args.data)
        for p in problems:
            print(p)
        print("all outputs fresh" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    from .outputs import build

    written, skipped = build(args.data, args.out, args.only)
    print(f"{len(written)} output(s) written, {len(skipped)} skipped")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
