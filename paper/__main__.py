"""``python -m paper [--data DIR] [--out DIR] [--check] [--results DIR ...] [--only NAME ...]``.

Without ``--check``: draw every figure (``figures/*.png``), table (``tables/*.md``) and then
``paper.md`` from the data folder alone, and record what each was drawn from in ``build.json``.
With ``--check``: change nothing; list every output that is older than its data or quotes a number
the data do not hold, and every result (in the data folder and in the benchmarks' results) that
was made by code other than the code in the tree, or records no source fingerprint; exit 1 if
there is one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DATA_DIR, PAPER_DIR, RESULTS_DIR


def _result_folders(args) -> list[Path]:
    """The data folder and the benchmarks' results (by default only when the data folder is too)."""
    results = args.results if args.results is not None else ([RESULTS_DIR] if args.data.resolve() == DATA_DIR else [])
    return [args.data, *[r for r in results if Path(r).is_dir()]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA_DIR, help="data folder (default paper/data)")
    ap.add_argument("--out", type=Path, default=PAPER_DIR, help="output folder (default paper/)")
    ap.add_argument("--check", action="store_true",
                    help="only check freshness and source fingerprints; exit 1 on any problem")
    ap.add_argument("--results", type=Path, nargs="*",
                    help="more folders of results whose source fingerprints --check checks (default: "
                         "benchmarks/results when --data is the default, none otherwise)")
    ap.add_argument("--only", nargs="+", help="draw only these outputs (path or stem, e.g. stages.png or table1)")
    args = ap.parse_args(argv)
    from .provenance import check_fingerprints

    if args.check:
        from .freshness import check

        problems = check(args.out, args.data)
        for p in problems:
            print(p)
        print("all outputs fresh" if not problems else f"{len(problems)} output problem(s)")
        stale = check_fingerprints(_result_folders(args))
        for p in stale:
            print(p)
        if stale:
            print(f"{len(stale)} result(s) not made by the code now in the tree: their numbers may not be what this "
                  "code gives. Re-make them with the commands named above (the committed results are re-made by "
                  "running the benchmarks and `python -m simulations all`), then run `python -m paper`.")
        else:
            print("every result was made by the code now in the tree")
        return 1 if problems or stale else 0
    from .outputs import build

    written, skipped = build(args.data, args.out, args.only)
    print(f"{len(written)} output(s) written, {len(skipped)} skipped")
    stale = check_fingerprints([args.data])
    if stale:
        print(f"note: {len(stale)} data file(s) were not made by the code now in the tree; "
              "`python -m paper --check` names them")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
