"""What limits T' on images it has never seen: a learning curve of the Challenge 2 score.

T' (the extracted encoder) is scored the way the public challenge scores Challenge 2, on fresh
images: is T(x) the nearest of the true encodings to T'(x), by squared distance of the patch
means? The attack's own ``--fresh`` score draws its fresh images as new crops of the same bundled
pictures the game was drawn from; this script separates the kinds of "fresh":

* ``game``: 500 of the game's own originals, re-encoded (what T' was fitted on);
* ``crops``: new crops of the game's own pictures (the attack's ``--fresh``);
* ``pictures``: new pictures of the game's kind, none of which the game contains. For the
  ``split`` kind the bundled source pictures are split in two (alternate sources): the game is
  drawn from one half, these from the other; for ``synthetic``, new random fields;
* ``other``: the other kind (synthetic for a ``split`` game, held-out bundled pictures for a
  synthetic game): the cross-kind score.

For each set it reports both directions of the nearest-neighbour score
(:func:`empirical.evaluate.challenge2_score`: T'(x) against every T(x'), and the public script's
T(x) against every submitted T'(x')) and the relative error of the patch means, so a gap between
the game's images and fresh ones (generalisation) can be told from an error that is already large
on the game (fit); beside them, the attack's own estimate from the matched pairs it held back
from extraction, which needs no key.

Each configuration runs the whole attack (``run_attack``) on a game in memory; configurations
that differ only in the extraction's step counts (``--steps-scale``) reuse the earlier stages
from a work dir. Alice's key is read only after the attack has returned, to score T'.

Usage::

    python benchmarks/tprime_fresh.py --json benchmarks/results/cpu_tprime_fresh.json
    python benchmarks/tprime_fresh.py --presets neuracrypt-7 --kinds split --n-list 600 --hidden-list 256
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from games import synthetic_images

KINDS = ("split", "synthetic")
FRESH_SEED = 0xF4E5  # mixed into every fresh draw, so no fresh set repeats a game's draw


def split_images(n: int, size: int, seed: int, half: int, patch: int = 16) -> np.ndarray:
    """``n`` bundled-style crops drawn only from every other source picture (``half`` 0 or 1).

    The same crop, zoom, rotation and contrast draws as the bundled images (``empirical.data``),
    so the two halves differ only in the pictures they show. Returns (n, 1, size, size) float32.
    """
    from empirical.data import _augment, _sample_view, _source_pyramids
    from empirical.fileio import quantize16

    pyramids, weights = _source_pyramids()
    keep = np.arange(half, len(pyramids), 2)
    p = weights[keep] / weights[keep].sum()
    rng = np.random.default_rng([seed, size, half, 0x5B17])
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        out[i, 0] = quantize16(_augment(_sample_view(pyramids[keep[rng.choice(len(keep), p=p)]], size, rng), rng))
    return out


def kind_images(kind: str, n: int, size: int, seed: int, held_out: bool) -> np.ndarray:
    """Images of ``kind``; ``held_out`` gives the pictures a ``split`` game never contains."""
    if kind == "split":
        return split_images(n, size, seed, half=1 if held_out else 0)
    return synthetic_images(n, size, seed + (1 if held_out else 0))[:, None]


SETS = {"game": "the game's own originals, re-encoded",
        "crops": "new crops of the game's own pictures",
        "pictures": "new pictures of the game's kind, not in the game",
        "other": "pictures of the other kind (cross-kind)"}


def fresh_sets(kind: str, game_originals: np.ndarray, seed: int, n: int, size: int) -> dict:
    """The four image sets T' is scored on (:data:`SETS`), ``n`` images each."""
    other = "synthetic" if kind == "split" else "split"
    return {"game": game_originals[:n],
            "crops": kind_images(kind, n, size, seed + FRESH_SEED, held_out=False),
            "pictures": kind_images(kind, n, size, seed + 2 * FRESH_SEED, held_out=True),
            "other": kind_images(other, n, size, seed + 3 * FRESH_SEED, held_out=True)}


def score_sets(true_key, est_key, sets: dict, xp) -> dict:
    """Challenge 2 (both directions) and the relative error of the patch means, on every set."""
    from empirical.evaluate import challenge2_score

    return {name: challenge2_score(true_key, est_key, x, xp, seed=1) for name, x in sets.items()}


def held_out_estimate(info: dict) -> str:
    """The attack's own estimate on its held-back pairs, as printed: ``est/back`` or ``-``."""
    h = info.get("held_out")
    return "-" if not h else f"{h['est_to_nearest_truth']:.1%}/{h['truth_to_nearest_est']:.1%}"


def score_columns(fresh: dict) -> str:
    """One printed row's scores: for each set, both directions and the relative error."""
    return "".join(f"{f['share']:>8.1%}{f['share_public']:>7.1%}{f['relative_error']:>7.3f}" for f in fresh.values())


def score_header() -> str:
    return "".join(f"{s[:5] + '->':>8}{'<-':>7}{'err':>7}" for s in SETS)


def asked_widths(text: str) -> tuple[int, ...]:
    """One ``--tprime-widths`` value as ``ExtractConfig.widths`` takes it: ``()`` for ``family``."""
    from empirical.encoder import parse_widths

    return () if text == "family" else parse_widths(text)


def attack_game(preset: str, kind: str, n: int, hidden: int, seed: int, widths: str, image_size: int, xp,
                **extract):
    """One game of ``kind`` in memory, attacked whole: ``(game, secrets, result, seconds, load at the start)``.

    ``widths``: T''s, as ``--tprime-widths`` takes it; ``extract``: other ``ExtractConfig`` fields.
    Alice's secrets are returned for scoring only.
    """
    from empirical.alice import bundled_ids, game_in_memory
    from empirical.encoder import expand_widths
    from empirical.encoder import preset as family
    from empirical.extraction import ExtractConfig
    from empirical.pipeline import AttackConfig, run_attack

    fam = family(preset, image_size=image_size, hidden=hidden)
    imgs = kind_images(kind, n, image_size, seed, held_out=False)
    game, secrets = game_in_memory(imgs, bundled_ids(n), fam, n, seed=seed)
    ec = dataclasses.replace(ExtractConfig(), seed=seed, widths=expand_widths(fam, asked_widths(widths)), **extract)
    load0, t0 = load_average(), time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        res = run_attack(game, AttackConfig(seed=seed, extract=ec), xp, quiet=True, work_dir=Path(work))
    return game, secrets, res, time.perf_counter() - t0, load0


def patch_means(images: np.ndarray, key, xp, seed: int = 0) -> np.ndarray:
    """(n, D) float64: each image's encoding by ``key``, averaged over its rows (their order does not matter)."""
    from empirical.backend import to_numpy
    from empirical.encoder import encode

    enc, _ = encode(images, key, xp, seed=seed)
    return to_numpy(enc.mean(axis=1)).astype(np.float64)


def one_config(preset: str, kind: str, n: int, hidden: int, seed: int, scales: list, args, work: Path) -> list:
    """Attack one game, then score T' for every extraction step scale and every ``--tprime-widths``; one row each."""
    from empirical.alice import bundled_ids, game_in_memory
    from empirical.backend import get_backend
    from empirical.encoder import expand_widths
    from empirical.encoder import preset as family
    from empirical.evaluate import share_matched, true_matching
    from empirical.extraction import ExtractConfig
    from empirical.fit_budget import fit_steps
    from empirical.pipeline import AttackConfig, run_attack

    xp = get_backend(args.backend)
    fam = family(preset, image_size=args.image_size, hidden=hidden)
    imgs = kind_images(kind, n, args.image_size, seed, held_out=False)
    game, secrets = game_in_memory(imgs, bundled_ids(n), fam, n, seed=seed)
    sets = fresh_sets(kind, game.originals, seed, args.fresh, args.image_size)
    rows = []
    for scale, width, k in ((s, w, k) for s in scales for w in args.tprime_widths for k in args.tprime_members):
        base = ExtractConfig()
        widths = expand_widths(fam, asked_widths(width))
        ec = dataclasses.replace(base, steps=round(base.steps * scale), refine_steps=round(base.refine_steps * scale),
                                 seed=seed, widths=widths, members=k)
        cfg = AttackConfig(seed=seed, extract=ec)
        planned = fit_steps(ec, fam)  # the family's scaled steps (empirical.fit_budget.step_scale)
        load0 = load_average()
        t0 = time.perf_counter()
        res = run_attack(game, cfg, xp, quiet=True, work_dir=work / f"{preset}-{kind}-{n}-{hidden}-{seed}")
        seconds = time.perf_counter() - t0
        # --- Alice's secrets from here on ----------------------------------------------------------
        truth = true_matching(game, secrets)
        st = {s.name: s for s in res.stages}
        row = {"preset": preset, "kind": kind, "n": n, "hidden": hidden, "seed": seed, "steps_scale": scale,
               "tprime_widths": list(widths) or "family",
               "extract_steps": planned[0], "refine_steps": planned[1],
               "final_share_matched": share_matched(res.matching, truth),
               "extract_seconds": st["extract"].seconds, "extract_info": st["extract"].info,
               "attack_seconds": seconds, "resumed": [s.name for s in res.stages if s.info.get("resumed")],
               "tprime_members": k,
               "fresh": score_sets(secrets.key, res.encoder, sets, xp),
               "load": load_record(load0)}
        rows.append(row)
        print(f"{preset:<14}{kind:<10}{n:>6}{hidden:>6}{seed:>5}{scale:>6.1f}{width:>8}{row['final_share_matched']:>8.1%}"
              + score_columns(row["fresh"]) + f"{held_out_estimate(row['extract_info']):>14}"
              + f"{row['extract_seconds']:>8.0f}" + (f"  ({k} members)" if k > 1 else ""), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["neuracrypt-7", "neuracrypt-2"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--n-list", nargs="+", type=int, default=[600, 1000])
    ap.add_argument("--hidden-list", nargs="+", type=int, default=[256])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps-scale", nargs="+", type=float, default=[1.0, 2.0],
                    help="multiply the extraction's fit and refit steps by each (default: %(default)s)")
    ap.add_argument("--tprime-widths", nargs="+", default=["family"],
                    help="T''s layer widths for the extraction, one run each: 'family' (its own), one width for "
                         "every layer, or one per layer separated by commas (default: %(default)s)")
    ap.add_argument("--tprime-members", nargs="+", type=int, default=[1],
                    help="fits of T' averaged into one (ExtractConfig.members), one run each; the extraction's "
                         "report lists each fit's own figures (default: %(default)s)")
    ap.add_argument("--fresh", type=int, default=500, help="images in each fresh set (default 500)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    ap.add_argument("--json", help="write the results here (after every configuration)")
    args = ap.parse_args(argv)
    if min(args.steps_scale) <= 0 or args.fresh < 2 or min(args.tprime_members) < 1:
        ap.error("--steps-scale must be positive, --fresh at least 2 and --tprime-members at least 1")
    from empirical.encoder import expand_widths
    from empirical.encoder import preset as family

    try:  # every variant checked against every family before any attack runs
        for w in args.tprime_widths:
            for name in args.presets:
                expand_widths(family(name), asked_widths(w))
    except ValueError as err:  # a UserError is a ValueError
        ap.error(f"--tprime-widths {w}: {err}")

    started, mach = now_utc(), machine()
    print(f"{'family':<14}{'kind':<10}{'N':>6}{'D':>6}{'seed':>5}{'steps':>6}{'widths':>8}{'match':>8}" + score_header()
          + f"{'held back':>14}{'ext s':>8}")
    print("(each set: T'(x) to the nearest T(x'), T(x) to the nearest T'(x'), relative error of the patch means;"
          " held back: the attack's own estimate on the pairs it held back)")
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for kind in args.kinds:
                for hidden in args.hidden_list:
                    for n in args.n_list:
                        for seed in args.seeds:
                            rows += one_config(preset, kind, n, hidden, seed, sorted(args.steps_scale), args,
                                               Path(tmp))
                            if args.json:
                                write_json(args.json, {
                                    "benchmark": "tprime_fresh", "date": now_utc(), "started": started,
                                    "machine": mach, "source_fingerprint": sources(__file__, "games.py"),
                                    "settings": {k: v for k, v in vars(args).items() if k != "json"},
                                    "sets": SETS,
                                    "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
