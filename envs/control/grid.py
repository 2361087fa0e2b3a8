"""Grid helpers shared by the control envs: moves, symbol sets and breadth-first search."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec

MOVES: dict[str, tuple[int, int]] = {
    "Up": (-1, 0),
    "Down": (1, 0),
    "Left": (0, -1),
    "Right": (0, 1),
}
"""Action name -> (row delta, column delta). The order is also the action index (Discrete(4))."""

MOVE_NAMES: tuple[str, ...] = tuple(MOVES)

MOVE_GRAMMAR = ActionGrammar(
    tuple(
        ActionSpec(name, (), f"move the agent one cell {name.lower()}", (name,))
        for name in MOVE_NAMES
    )
)

SYMBOL_SETS = ("abstract", "legend", "remapped")

S = TypeVar("S", bound=Hashable)


def check_symbols(symbols: str) -> str:
    """Return ``symbols`` if it names a symbol set, else raise a ValueError listing them."""
    if symbols not in SYMBOL_SETS:
        raise ValueError(f"Expect symbols in {SYMBOL_SETS}, actually: {symbols!r}")
    return symbols


def bfs_plan(
    start: S,
    successors: Callable[[S], Iterable[tuple[str, S]]],
    is_goal: Callable[[S], bool],
    max_depth: int | None = None,
) -> list[str] | None:
    """Return a shortest list of moves from ``start`` to a goal state, or None.

    ``successors(state)`` yields ``(move, next_state)``; search stops at ``max_depth`` moves.
    """
    if is_goal(start):
        return []
    parent: dict[S, tuple[S, str] | None] = {start: None}
    frontier: deque[tuple[S, int]] = deque([(start, 0)])
    while frontier:
        state, depth = frontier.popleft()
        if max_depth is not None and depth >= max_depth:
            continue
        for move, nxt in successors(state):
            if nxt in parent:
                continue
            parent[nxt] = (state, move)
            if is_goal(nxt):
                return _unwind(parent, nxt)
            frontier.append((nxt, depth + 1))
    return None


def _unwind(parent: dict, state: Hashable) -> list[str]:
    moves = []
    while parent[state] is not None:
        state, move = parent[state]
        moves.append(move)
    return moves[::-1]
