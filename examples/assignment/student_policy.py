"""Your policy for the FrozenLake assignment: write ``act``.

``act(obs, info)`` gets the observation text (the board as rows of symbols and a feedback line)
and the ``info`` dict of the env (``info["task"]`` is the instruction,
``info["available_actions"]`` the valid moves) and returns one action (``"Up"``, ``"Down"``,
``"Left"`` or ``"Right"``). The rules are hidden: which symbol is you, the goal or a hole is
for you to find out by playing (``earlyexp play EarlyExp/FrozenLake-v0``).

Grade it as the course will::

    earlyexp eval --policy student_policy:act --env EarlyExp/FrozenLake-v0 --split test
"""

from __future__ import annotations


def board(obs: str) -> list[str]:
    """The rows of the board in ``obs`` (the lines of equal length after the feedback line)."""
    rows = obs.splitlines()[1:]
    width = len(rows[0]) if rows else 0
    return [r for r in rows if len(r) == width and " " not in r]


def act(obs: str, info: dict) -> str:
    """Return the next action. This baseline always tries the first valid move.

    TODO: find yourself and the goal on ``board(obs)`` and walk there, around the holes.
    """
    return info["available_actions"][0]
