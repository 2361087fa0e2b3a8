"""EarlyExp/FrozenLake-v0: reach the goal on a grid with hidden rules, as text."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np

from earlyexp.envs.control.grid import MOVE_NAMES, MOVES, GridEnv
from earlyexp.envs.core.actions import ParseError
from earlyexp.envs.core.base import Evaluation, Outcome
from earlyexp.envs.core.types import RubricItem

SYMBOLS: dict[str, dict[str, str]] = {
    "abstract": {"agent": "A", "G": "B", "H": "C", "F": "D", "S": "D"},
    "legend": {"agent": "P", "G": "G", "H": "H", "F": "F", "S": "F"},
    "remapped": {"agent": "W", "G": "X", "H": "Y", "F": "Z", "S": "Z"},
}
LEGEND = "Legend: P = you, G = goal, H = hole, F = frozen ice."

ID_SIZES, OOD_SIZES = (2, 6), (7, 9)
CHANNELS = ("agent", "G", "H", "F")  # plane order of grid_channels()
ID_BUDGET, OOD_BUDGET = 8, 20


@dataclass(frozen=True)
class FrozenLakeTask:
    """One layout: rows over ``S`` start, ``F`` frozen, ``H`` hole, ``G`` goal."""

    rows: tuple[str, ...]
    budget: int
    optimal: int

    @property
    def size(self) -> int:
        """Side length of the square grid."""
        return len(self.rows)

    def find(self, ch: str) -> tuple[int, int]:
        """Return the (row, col) of the first cell holding ``ch``."""
        for r, row in enumerate(self.rows):
            c = row.find(ch)
            if c >= 0:
                return r, c
        raise ValueError(f"Expect a {ch!r} cell in the layout, actually: none")

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes."""
        return asdict(self)


@lru_cache(maxsize=4096)
def goal_distances(rows: tuple[str, ...]) -> tuple[int, ...]:
    """Moves from each cell (``r * n + c``) to the goal over hole-free cells; -1: no way.

    One breadth-first search from the goal: moves are reversible between cells that are not
    holes, so this is every cell's shortest-path length at once.
    """
    n, flat = len(rows), "".join(rows)
    around = _around(n)
    goal = flat.index("G")
    dist = [-1] * (n * n)
    dist[goal] = 0
    frontier = [goal]
    while frontier:
        layer, frontier = frontier, []
        for cell in layer:
            for _, nxt in around[cell]:
                if dist[nxt] < 0 and flat[nxt] != "H":
                    dist[nxt] = dist[cell] + 1
                    frontier.append(nxt)
    return tuple(dist)


@cache
def _around(n: int) -> tuple[tuple[tuple[str, int], ...], ...]:
    """For each cell of an ``n`` x ``n`` grid, ``(move, cell)`` of the moves that stay inside."""
    return tuple(
        tuple(
            (name, (r + dr) * n + c + dc)
            for name, (dr, dc) in MOVES.items()
            if 0 <= r + dr < n and 0 <= c + dc < n
        )
        for r in range(n)
        for c in range(n)
    )


def next_move(task: FrozenLakeTask, pos: tuple[int, int]) -> str | None:
    """First move of a shortest hole-free path from ``pos`` to the goal (None: at the goal or no path).

    Of equally short paths, the one whose first move comes first in ``MOVES`` order: the path
    a breadth-first search from ``pos`` that tries moves in that order returns.
    """
    n, dist = task.size, goal_distances(task.rows)
    cell = pos[0] * n + pos[1]
    if dist[cell] == 0:
        return None
    # onto cells with a way on (holes have none); min() keeps the first of equals
    options = [(dist[nxt], name) for name, nxt in _around(n)[cell] if dist[nxt] >= 0]
    return min(options, key=lambda o: o[0])[1] if options else None


def generate_task(rng: np.random.Generator, split: str) -> FrozenLakeTask:
    """Draw a layout: size by split, frozen prob in [0.6, 0.85), solvable within the budget."""
    lo, hi = OOD_SIZES if split == "ood" else ID_SIZES
    budget = OOD_BUDGET if split == "ood" else ID_BUDGET
    while True:
        n = int(rng.integers(lo, hi + 1))
        p = float(rng.uniform(0.6, 0.85))
        cells = ["F" if f else "H" for f in (rng.random(n * n) < p).tolist()]
        start = int(rng.integers(n * n))
        goal = int(rng.integers(n * n - 1))
        goal += goal >= start  # distinct from start
        cells[start], cells[goal] = "S", "G"
        rows = tuple("".join(cells[r * n : (r + 1) * n]) for r in range(n))
        optimal = goal_distances(rows)[start]
        if 0 <= optimal <= budget:
            return FrozenLakeTask(rows, budget, optimal)


class FrozenLakeEnv(GridEnv[FrozenLakeTask]):
    """FrozenLake as text, in the setting of Experiential RL (arXiv 2602.13949).

    ## Description
    The agent walks on a square grid of frozen cells and holes toward a goal. The rules are
    hidden: by default the board uses abstract letters and the agent is told only the moves.
    Moves are deterministic (no slipping). A path from start to goal always exists and its
    shortest length fits the step budget.

    ## Observation
    A feedback line, then the board, one row per line. Abstract symbols (default):
    ``A`` agent, ``B`` goal, ``C`` hole, ``D`` frozen. ``symbols="legend"`` uses ``P G H F``
    and adds a legend line; ``symbols="remapped"`` uses ``W X Y Z`` (no legend).
    ``summarize`` (the IWM next-state text) returns the observation as is: it is short.

    ## Action
    ``Up``, ``Down``, ``Left``, ``Right`` (case-insensitive, surrounding spaces ignored).
    Anything else (``UP!``, ``Left;Right``, ``""``) is invalid: the board is unchanged,
    ``info["action_valid"]`` is False and the step counts toward the budget.

    ## Reward
    Sparse: 0 on every step; at the end 1 if the agent reached the goal, else 0.
    Rubric: ``avoid the holes``, ``reach the goal``. ``score_details``: ``optimal_steps``.

    ## Episode end
    Terminated when the agent reaches the goal or falls into a hole. Truncated when the step
    budget runs out (8 in distribution, 20 out of distribution).

    ## Splits
    ``train``: a procedural stream of layouts on 2x2 to 6x6 grids, frozen probability drawn
    from [0.6, 0.85), start and goal distinct. ``test``: 500 fixed layouts from the same
    distribution. ``ood``: 500 fixed layouts on 7x7 to 9x9 grids, budget 20.

    ## Arguments
    ``gym.make("EarlyExp/FrozenLake-v0", symbols="abstract", max_steps=None)``;
    ``reset(options={"split": "test", "task": 3})`` picks panel task 3.

    ## Version history
    * v0: initial version.
    * v0 (same tasks and observations): ``summarize``, the next-state text of IWM.
    """

    FAMILY = "FrozenLake-v0"
    generate = staticmethod(generate_task)
    _board_task: FrozenLakeTask | None = None  # the task self._board was drawn for

    def _begin(self, task: FrozenLakeTask) -> str:
        self.state = (task.find("S"), "playing")
        return "The game has started."

    def instruction(self) -> str:
        """The task as told to the agent (rules hidden)."""
        assert self.task is not None
        return (
            f"Move the agent to the goal within {self.max_steps} steps. "
            "Valid actions: Up, Down, Left, Right."
        )

    def _apply(self, action: str) -> Outcome:
        parsed = self.grammar.parse(action)
        if isinstance(parsed, ParseError):
            return Outcome(False, parsed.message)
        assert self.task is not None
        (r, c), _ = self.state
        dr, dc = MOVES[parsed.name]
        nr, nc = r + dr, c + dc
        n = self.task.size
        if not (0 <= nr < n and 0 <= nc < n):
            return Outcome(True, "The agent did not move.")
        cell = self.task.rows[nr][nc]
        if cell == "H":
            self.state = ((nr, nc), "hole")
            return Outcome(True, "The agent fell into the hole.", terminated=True)
        if cell == "G":
            self.state = ((nr, nc), "goal")
            return Outcome(True, "The agent reached the goal.", terminated=True)
        self.state = ((nr, nc), "playing")
        return Outcome(True, f"The agent moved {parsed.name}.")

    def _observation(self, feedback: str) -> str:
        if self._board_task is not self.task:  # new episode, or restored from another one
            assert self.task is not None
            sym = SYMBOLS[self.symbols]
            self._board = [[sym[ch] for ch in row] for row in self.task.rows]
            self._board_task = self.task
        (r, c), _ = self.state
        row = self._board[r]
        saved, row[c] = row[c], SYMBOLS[self.symbols]["agent"]
        board = "\n".join("".join(line) for line in self._board)
        row[c] = saved
        legend = f"\n{LEGEND}" if self.symbols == "legend" else ""
        return f"{feedback}\n{board}{legend}"

    def _evaluate(self) -> Evaluation:
        assert self.task is not None
        _, status = self.state
        rubric: list[RubricItem] = [
            {"criterion": "avoid the holes", "met": status != "hole"},
            {"criterion": "reach the goal", "met": status == "goal"},
        ]
        return Evaluation(float(status == "goal"), rubric, {"optimal_steps": self.task.optimal})

    def expert_action(self) -> str:
        """First move of a shortest hole-free path to the goal (``Up`` when none exists)."""
        assert self.task is not None
        return next_move(self.task, self.state[0]) or MOVE_NAMES[0]

    def grid_channels(self) -> np.ndarray:
        """One-hot planes (agent, goal, hole, frozen) of shape (4, n, n), for numeric views."""
        assert self.task is not None
        n = self.task.size
        planes = np.zeros((len(CHANNELS), n, n), dtype=np.float32)
        for r, row in enumerate(self.task.rows):
            for c, ch in enumerate(row):
                planes[CHANNELS.index({"S": "F"}.get(ch, ch)), r, c] = 1.0
        (r, c), _ = self.state
        planes[0, r, c] = 1.0
        return planes
