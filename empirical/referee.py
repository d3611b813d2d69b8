"""The referee (paper §1.2): scores a submission against Alice's answer key.

Challenge 1 asks which encoding file holds each encoded original; the score is the share of the
answer key's ids that a submission maps to the right file. Challenge 2 (an extracted encoder on
fresh images) is scored by :func:`empirical.evaluate.challenge2_score`.
"""
from __future__ import annotations

from .game import GameError


def score_submission(answer: dict[str, str], submission: object, source: str = "submission") -> dict:
    """Share and count of the answer key's ids that the submission maps to the right file.

    A submission that is not ``{id: "<k>.npy"}``, names an id or a file that the game does not
    have, or maps two ids to the same file (each encoding holds one image) is rejected, as is an
    empty answer key; ``source`` names the submission in the message.
    """
    if not answer:
        raise GameError("the answer key is empty: there is nothing to score")
    if not isinstance(submission, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in submission.items()):
        raise GameError(f"{source} must be a JSON object {{id: \"<k>.npy\"}}")
    unknown_ids = sorted(set(submission) - set(answer))
    if unknown_ids:
        raise GameError(f"{source} names {len(unknown_ids)} id(s) not in the game, e.g. {unknown_ids[0]!r}")
    files = set(answer.values())
    unknown_files = sorted(set(submission.values()) - files)
    if unknown_files:
        raise GameError(f"{source} names {len(unknown_files)} file(s) not in the game, "
                        f"e.g. {unknown_files[0]!r}")
    claimed: dict[str, str] = {}
    for i in sorted(submission):
        f = submission[i]
        if f in claimed:
            raise GameError(f"{source} maps both {claimed[f]!r} and {i!r} to {f!r}; each encoding holds one image")
        claimed[f] = i
    correct = sum(submission.get(i) == f for i, f in answer.items())
    return {"correct": correct, "total": len(answer), "share": correct / len(answer)}
