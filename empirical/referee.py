"""The referee (paper §1.2): scores a submission against Alice's answer key.

Challenge 1 asks which encoding file holds each encoded original; the score is the share of the
answer key's ids that a submission maps to the right file. Challenge 2 (an extracted encoder on
fresh images) is scored by :func:`empirical.evaluate.challenge2_score`.
"""
from __future__ import annotations

from .game import GameError


def score_submission(answer: dict, submission: dict) -> dict:
    """Share and count of the answer key's ids that the submission maps to the right file.

    A submission naming an id or a file that the game does not have is rejected.
    """
    if not isinstance(submission, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in submission.items()):
        raise GameError("submission must be a JSON object {id: \"<k>.npy\"}")
    unknown_ids = sorted(set(submission) - set(answer))
    if unknown_ids:
        raise GameError(f"submission names {len(unknown_ids)} id(s) not in the game, e.g. {unknown_ids[0]!r}")
    files = set(answer.values())
    unknown_files = sorted(set(submission.values()) - files)
    if unknown_files:
        raise GameError(f"submission names {len(unknown_files)} file(s) not in the game, "
                        f"e.g. {unknown_files[0]!r}")
    correct = sum(submission.get(i) == f for i, f in answer.items())
    return {"correct": correct, "total": len(answer), "share": correct / len(answer)}
