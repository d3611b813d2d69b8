"""A game on disk and its attack resumed up to the first matching: where the large-N oracles start.

``boost_solvers.py``, ``graph_coverage.py``, ``first_stage_split.py``, ``balance_oracle.py`` and
``balance_threads.py`` each take a game, the work dir of an attack run on it (``python -m
empirical.attack --game G --work-dir W --stop-after first``), the memory budget and the attack's
seed, and most of them Alice's answer key to score what they compute. :func:`add_arguments` adds
those options, :func:`resume` reads the game and runs the attack up to its first matching (the
stages W holds are resumed, the others computed there once), and :func:`game_record` is the game's
entry in a result's JSON.
"""
from __future__ import annotations

import argparse
from typing import NamedTuple

import numpy as np

from empirical.evaluate import true_matching
from empirical.game import Game, read_game
from empirical.pipeline import AttackConfig, AttackResult, run_attack
from empirical.secret_files import load_secrets

SEED_HELP = "the attack's seed (as in the run of --work-dir)"


class Resumed(NamedTuple):
    game: Game
    cfg: AttackConfig
    run: AttackResult  # up to the first matching: run.matching, run.patch_emb, run.row_emb
    truth: np.ndarray | None  # (N,) the original behind each encoding, when an answer key was given


def add_arguments(ap: argparse.ArgumentParser, *, answer_key: str | None, seed_help: str = SEED_HELP) -> None:
    """``--game``, ``--work-dir``, ``--memory-budget``, ``--seed``; ``--answer-key`` (required, with
    ``answer_key`` as its help) unless ``answer_key`` is None."""
    ap.add_argument("--game", required=True, help="the game folder")
    if answer_key is not None:
        ap.add_argument("--answer-key", required=True, help=answer_key)
    ap.add_argument("--work-dir", required=True, help="work dir of an attack run on the game (stages resumed)")
    ap.add_argument("--memory-budget", type=float, default=1.0, help="GiB of encodings held at once (default 1)")
    ap.add_argument("--seed", type=int, default=0, help=seed_help)


def resume(args: argparse.Namespace) -> Resumed:
    """The game of ``args`` and the attack on it up to the first matching, with the truth if asked for."""
    budget = int(args.memory_budget * 2**30)
    game = read_game(args.game, memory_budget=budget)
    cfg = AttackConfig(seed=args.seed)
    run = run_attack(game, cfg, np, quiet=True, work_dir=args.work_dir, stop_after="first", memory_budget=budget)
    key = getattr(args, "answer_key", None)
    truth = None if key is None else true_matching(game, load_secrets(key))
    return Resumed(game, cfg, run, truth)


def game_record(args: argparse.Namespace, game: Game) -> dict:
    """The game's entry in a result's JSON."""
    return {"path": str(args.game), "n_encoded": len(game.files), "n_originals": len(game.originals),
            "family": game.config.to_json()}
