"""Oracle for the last step of the attack: can extraction turn a partly right matching into a whole one?

No attack runs here. Alice's key is drawn directly and every image is encoded in her batches with
rows in position order (the global and local permutations are taken as solved). The extraction is
then fed a matching of which a known share ``--right`` is right: the other images are paired with
encodings of other images, chosen at random (a derangement of those images), so each wrong pair is
a random one. T' is fitted as the attack fits it: ``fit_encoder`` with its robust loss, then ``refine_encoder``
on the same pairs (the stage refits on boosting's matching when T' separates the images less than
p-sim does); then, for ``--rounds`` more rounds, T' re-matches every original by distance (the
``final`` stage's matching) and the refit continues on that matching. Each step reports:

* the share of T''s matching that is right (what the attack would end with);
* Challenge 2 on the game's own originals and on new pictures of the kind (``tprime_fresh.py``'s
  sets), both directions;
* the held-out error of the fit (on the fit's own held-back pairs) and its seconds.

If T' fitted on the true pairs (``--right 1``) cannot match the game's own images, extraction
cannot finish the attack at this depth whatever the earlier stages do; if it can, the share of
right pairs it needs says how far boosting must get.

Usage::

    python benchmarks/partial_oracle.py --preset neuracrypt-47 --right 1 0.5 --json nc47_partial.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from tprime_knobs import add_game_args
from tprime_oracle import true_pairs

PAIR_STREAM = 0x9A1F  # which pairs are wrong, and how


def partial_matching(n: int, right: float, seed: int) -> np.ndarray:
    """(n,) image paired with each encoding: ``round(right * n)`` right, the rest a derangement."""
    rng = np.random.default_rng([seed, PAIR_STREAM])
    m = np.arange(n)
    wrong = rng.permutation(n)[:n - round(right * n)]
    if len(wrong) >= 2:
        m[wrong] = wrong[np.roll(np.arange(len(wrong)), 1)]  # each wrong encoding gets another wrong image
    return m


def tprime_matching(params, images, targets, groups, m_stats, family, xp) -> tuple[np.ndarray, float]:
    """The ``final`` stage's matching by T' (images encoded one at a time, batch statistics from
    the images ``m_stats`` pairs with each batch): ``(encoding -> image, median margin)``."""
    from empirical.assignment import match_encodings, match_margins
    from empirical.tprime import encode_each, mean_batch_stats

    stats = mean_batch_stats(params, images[m_stats], groups, family, xp)
    pred = encode_each(params, images, family, stats, xp).reshape(len(images), -1)  # (n, P*D)
    tgt = targets.reshape(len(targets), -1)  # (n, P*D)
    score = 2 * (pred @ tgt.T) - (pred * pred).sum(axis=1)[:, None]  # -|a - b|^2 up to a per-column constant
    m = match_encodings(score)
    return m, float(np.median(match_margins(score, m, xp)))


def main(argv=None) -> int:
    from empirical.evaluate import challenge2_score
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder
    from empirical.holdout import holdout_split
    from empirical.tprime import key_from_params

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.set_defaults(preset="neuracrypt-47")
    ap.add_argument("--right", type=float, nargs="+", default=[1.0, 0.5], help="shares of right pairs fed in")
    ap.add_argument("--rounds", type=int, default=0, help="then re-match by T' and refit, this many times")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if not all(0 <= r <= 1 for r in args.right):
        ap.error("--right takes shares between 0 and 1")
    xp = np
    fam, images, key, targets, groups, sets = true_pairs(args)
    ec = ExtractConfig(seed=args.seed)
    split = holdout_split(groups, ec)
    started, mach, rows = now_utc(), machine(), []
    print(f"{args.preset}, {args.kind}, N {args.n}, hidden {args.hidden}; "
          f"T' matching right, Challenge 2 game ->/<-, pictures ->/<-", flush=True)

    for right in args.right:
        m = partial_matching(args.n, right, args.seed)  # encoding k paired with image m[k]
        fed = float((m == np.arange(args.n)).mean())
        steps = []
        params = None
        for step in range(args.rounds + 2):
            load0, t0 = load_average(), time.perf_counter()
            x = images[m]  # (n, 1, H, W): the image paired with each encoding
            if step == 0:
                f = fit_encoder(x, targets, groups, fam, ec, xp, split=split)
                name = "fit (robust loss)"
            else:
                f = refine_encoder(params, x, targets, groups, fam, ec, xp, split=split)
                name = "refit (squared loss)" if step == 1 else f"refit {step - 1} on T''s matching"
            params, seconds = f.params, time.perf_counter() - t0
            m_new, margin = tprime_matching(params, images, targets, groups, m, fam, xp)
            est = key_from_params(params, fam)
            scores = {k: challenge2_score(key, est, v, xp, seed=1) for k, v in sets.items()}
            row = {"step": name, "pairs_right_fed": float((m == np.arange(args.n)).mean()),
                   "tprime_matching_right": float((m_new == np.arange(args.n)).mean()),
                   "median_margin": margin, "held_out_error": min(e for _, e in f.held_out) if f.held_out else None,
                   "seconds": seconds, "load": load_record(load0), "sets": scores}
            steps.append(row)
            print(f"  right {right:.2f} {name:<22} fed {row['pairs_right_fed']:6.1%} "
                  f"-> T' {row['tprime_matching_right']:6.1%}"
                  + "".join(f"  {k} {s['share']:.1%}/{s['share_public']:.1%}" for k, s in scores.items())
                  + f"  {seconds:.0f} s", flush=True)
            if step >= 1:
                m = m_new  # the refits after the first are on T''s own matching
        rows.append({"right": right, "fed": fed, "steps": steps})
        if args.json:
            write_json(args.json, {"benchmark": "partial_oracle", "date": now_utc(), "started": started,
                                   "machine": mach, "source_fingerprint": sources(__file__, "tprime_fresh.py",
                                                                                  "tprime_knobs.py", "tprime_oracle.py",
                                                                                  "games.py"),
                                   "settings": {k: v for k, v in vars(args).items() if k != "json"}, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
