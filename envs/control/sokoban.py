"""EarlyExp/Sokoban-v0: push boxes onto goals in a walled room with hidden rules, as text."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np

from earlyexp.envs.control.grid import MOVE_NAMES, MOVES, GridEnv, bfs_plan
from earlyexp.envs.core.actions import ParseError
from earlyexp.envs.core.base import Evaluation, Outcome
from earlyexp.envs.core.types import RubricItem

# keys: wall, floor, goal, box, box on goal, agent, agent on goal
SYMBOLS: dict[str, dict[str, str]] = {
    "abstract": {"#": "E", ".": "D", "G": "C", "B": "B", "X": "b", "P": "A", "Q": "a"},
    "legend": {"#": "#", ".": "_", "G": ".", "B": "$", "X": "*", "P": "@", "Q": "+"},
    "remapped": {"#": "Z", ".": "Y", "G": "X", "B": "W", "X": "w", "P": "V", "Q": "v"},
}
LEGEND = (
    "Legend: @ = you, + = you on a goal, $ = box, * = box on a goal, . = goal, _ = floor, # = wall."
)

ID_SIZES, OOD_SIZES = (6, 8), (7, 10)
ID_BOXES, OOD_BOXES = 1, 2
ID_BUDGET, OOD_BUDGET = 8, 20

State = tuple[int, tuple[int, ...]]  # (player cell, sorted box cells); cell = r * n + c


@dataclass(frozen=True)
class SokobanTask:
    """One puzzle: ``walls`` rows of ``#``/``.``, goal/box cells, the player's cell."""

    walls: tuple[str, ...]
    goals: tuple[int, ...]
    boxes: tuple[int, ...]
    player: int
    budget: int
    optimal: int

    def __post_init__(self) -> None:
        # derived lookups (not in the canonical JSON): walls, and corners where a box is stuck
        walls = _wall_cells(self.walls)
        object.__setattr__(self, "size", len(self.walls))
        object.__setattr__(self, "wall_cells", walls)
        object.__setattr__(self, "dead_cells", _corners(self.walls, walls) - set(self.goals))

    size: int = field(init=False, repr=False, compare=False)
    wall_cells: frozenset[int] = field(init=False, repr=False, compare=False)
    dead_cells: frozenset[int] = field(init=False, repr=False, compare=False)

    def is_wall(self, cell: int) -> bool:
        """True when ``cell`` is a wall."""
        return cell in self.wall_cells

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes (the constructor fields only)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


@lru_cache(maxsize=4096)
def _wall_cells(walls: tuple[str, ...]) -> frozenset[int]:
    return frozenset(i for i, ch in enumerate("".join(walls)) if ch == "#")


@lru_cache(maxsize=4096)
def _corners(walls: tuple[str, ...], wall_cells: frozenset[int]) -> frozenset[int]:
    """Floor cells with a wall above or below and a wall left or right."""
    n = len(walls)
    return frozenset(
        c
        for c in range(n, n * n - n)
        if c not in wall_cells
        and (c - n in wall_cells or c + n in wall_cells)
        and (c - 1 in wall_cells or c + 1 in wall_cells)
    )


def move(task: SokobanTask, state: State, name: str) -> tuple[State, str]:
    """Apply move ``name``; return the new state and what happened (``moved|pushed|wall|blocked``)."""
    n = task.size
    dr, dc = MOVES[name]
    d = dr * n + dc
    player, boxes = state
    nxt = player + d
    walls = task.wall_cells
    if nxt in walls:
        return state, "wall"
    if nxt not in boxes:
        return (nxt, boxes), "moved"
    beyond = nxt + d
    if beyond in walls or beyond in boxes:
        return state, "blocked"
    moved = tuple(sorted(beyond if b == nxt else b for b in boxes))
    return (nxt, moved), "pushed"


def _successors(task: SokobanTask, state: State):
    """Moves that change the state and leave no box stuck in a non-goal corner (BFS hot path)."""
    walls, dead, n = task.wall_cells, task.dead_cells, task.size
    player, boxes = state
    for name, d in zip(MOVE_NAMES, (-n, n, -1, 1), strict=True):
        p = player + d
        if p in walls:
            continue
        if p not in boxes:
            yield name, (p, boxes)
            continue
        b = p + d
        if b in walls or b in boxes or b in dead:
            continue
        yield name, (p, tuple(sorted(b if x == p else x for x in boxes)))


def solve(task: SokobanTask, state: State, max_depth: int | None = None) -> list[str] | None:
    """Return a shortest move list that puts every box on a goal, or None."""
    goals = set(task.goals)
    return bfs_plan(
        state, lambda s: _successors(task, s), lambda s: goals.issuperset(s[1]), max_depth
    )


def _room(rng: np.random.Generator, n: int) -> list[list[str]]:
    inner = rng.random((n, n)) < 0.12
    return [
        ["#" if r in (0, n - 1) or c in (0, n - 1) or inner[r, c] else "." for c in range(n)]
        for r in range(n)
    ]


def _reverse_play(rng: np.random.Generator, task: SokobanTask, steps: int) -> State:
    """Walk backwards from the solved state: the player moves and sometimes pulls a box."""
    n = task.size
    deltas = [dr * n + dc for dr, dc in MOVES.values()]
    player, boxes = task.player, tuple(sorted(task.goals))
    for k, pull in zip(
        rng.integers(4, size=steps).tolist(), (rng.random(steps) < 0.8).tolist(), strict=True
    ):
        d = deltas[k]
        nxt = player + d
        if nxt in task.wall_cells or nxt in boxes:
            continue
        behind = player - d
        if behind in boxes and pull:
            boxes = tuple(sorted(player if b == behind else b for b in boxes))
        player = nxt
    return player, boxes


def generate_task(rng: np.random.Generator, split: str) -> SokobanTask:
    """Draw a room by reverse play from the solved state; keep it if BFS solves it in budget."""
    ood = split == "ood"
    lo, hi = OOD_SIZES if ood else ID_SIZES
    k, budget = (OOD_BOXES, OOD_BUDGET) if ood else (ID_BOXES, ID_BUDGET)
    while True:
        n = int(rng.integers(lo, hi + 1))
        walls = tuple("".join(row) for row in _room(rng, n))
        floor = [i for i, ch in enumerate("".join(walls)) if ch == "."]
        if len(floor) < k + 4:
            continue
        for _ in range(4):  # a few placements per room
            task = _place(rng, walls, floor, k, budget)
            if task is not None:
                return task


def _place(
    rng: np.random.Generator, walls: tuple[str, ...], floor: list[int], k: int, budget: int
) -> SokobanTask | None:
    """Put ``k`` boxes on goals and the player beside one, pull backwards, verify by BFS."""
    n = len(walls)
    goals = tuple(sorted({floor[int(i)] for i in rng.integers(len(floor), size=k)}))
    free = set(floor) - set(goals)
    beside = [goals[0] + d for d in (-n, n, -1, 1) if goals[0] + d in free]
    if len(goals) < k or not beside:
        return None
    solved = SokobanTask(walls, goals, goals, beside[int(rng.integers(len(beside)))], budget, 0)
    player, boxes = _reverse_play(rng, solved, int(rng.integers(4, 4 * budget)))
    if set(boxes) == set(goals):
        return None
    probe = SokobanTask(walls, goals, boxes, player, budget, 0)
    plan = solve(probe, (player, boxes), max_depth=budget)
    return SokobanTask(walls, goals, boxes, player, budget, len(plan)) if plan else None


class SokobanEnv(GridEnv[SokobanTask]):
    """Sokoban as text, in the setting of Experiential RL (arXiv 2602.13949).

    ## Description
    A walled square room with floor, boxes and goal cells. The agent pushes boxes (never
    pulls) by walking into them; a box moves when the cell beyond it is free. Rules are hidden:
    abstract letters by default, and the agent is told only the moves. Every puzzle is
    verified by breadth-first search over (player, boxes) states to be solvable within the
    step budget.

    ## Observation
    A feedback line, then the board, one row per line. Abstract symbols (default): ``A``
    agent, ``a`` agent on a goal, ``B`` box, ``b`` box on a goal, ``C`` goal, ``D`` floor,
    ``E`` wall. ``symbols="legend"`` uses Sokoban's ``@ + $ * . _ #`` with a legend line;
    ``symbols="remapped"`` uses ``V v W w X Y Z``.

    ## Action
    ``Up``, ``Down``, ``Left``, ``Right`` (case-insensitive). Anything else is invalid: the
    board is unchanged, ``info["action_valid"]`` is False, and the step counts.

    ## Reward
    Sparse: 0 on every step; at the end 1 if every box is on a goal, else 0. Rubric: one item
    per goal (``a box on the goal at row r, column c``). ``score_details``: ``boxes_on_goals``,
    ``optimal_steps``.

    ## Episode end
    Terminated when every box is on a goal. Truncated when the budget runs out (8 in
    distribution, 20 out of distribution). A deadlocked board is not ended early.

    ## Splits
    ``train``: procedural rooms 6x6 to 8x8 (border walls, ~12% inner walls), one box, solvable
    in at most 8 moves. ``test``: 500 fixed rooms from the same distribution. ``ood``: 500
    fixed rooms 7x7 to 10x10 with two boxes, solvable in at most 20 moves, budget 20.

    ## Arguments
    ``gym.make("EarlyExp/Sokoban-v0", symbols="abstract", max_steps=None)``.

    ## Version history
    * v0: initial version.
    """

    FAMILY = "Sokoban-v0"
    generate = staticmethod(generate_task)
    _static: tuple[SokobanTask | None, list[str]] = (None, [])  # replaced, never mutated

    def _begin(self, task: SokobanTask) -> str:
        self.state = (task.player, task.boxes)
        self._plan: dict[State, str] = {}
        return "The game has started."

    def instruction(self) -> str:
        """The task as told to the agent (rules hidden)."""
        return (
            f"Solve the puzzle within {self.max_steps} steps. Valid actions: Up, Down, Left, Right."
        )

    def _apply(self, action: str) -> Outcome:
        parsed = self.grammar.parse(action)
        if isinstance(parsed, ParseError):
            return Outcome(False, parsed.message)
        assert self.task is not None
        self.state, what = move(self.task, self.state, parsed.name)
        if what == "wall":
            return Outcome(True, "The agent did not move.")
        if what == "blocked":
            return Outcome(True, "The box did not move.")
        if set(self.state[1]) == set(self.task.goals):
            return Outcome(True, "The agent pushed the last box onto a goal.", terminated=True)
        verb = "pushed a box" if what == "pushed" else "moved"
        return Outcome(True, f"The agent {verb} {parsed.name}.")

    def _static_board(self) -> list[str]:
        """Symbols of walls, floor and goals of the current task (cached per task)."""
        task = self.task
        assert task is not None
        if self._static[0] is not task:
            sym = SYMBOLS[self.symbols]
            chars = [sym[ch] for ch in "".join(task.walls)]
            for g in task.goals:
                chars[g] = sym["G"]
            self._static = (task, chars)
        return self._static[1]

    def _observation(self, feedback: str) -> str:
        assert self.task is not None
        sym = SYMBOLS[self.symbols]
        n, (player, boxes), goals = self.task.size, self.state, self.task.goals
        chars = list(self._static_board())
        for b in boxes:
            chars[b] = sym["X" if b in goals else "B"]
        chars[player] = sym["Q" if player in goals else "P"]
        board = "\n".join("".join(chars[r * n : (r + 1) * n]) for r in range(n))
        legend = f"\n{LEGEND}" if self.symbols == "legend" else ""
        return f"{feedback}\n{board}{legend}"

    def _evaluate(self) -> Evaluation:
        assert self.task is not None
        n, boxes = self.task.size, set(self.state[1])
        rubric: list[RubricItem] = [
            {"criterion": f"a box on the goal at row {g // n}, column {g % n}", "met": g in boxes}
            for g in self.task.goals
        ]
        on = sum(item["met"] for item in rubric)
        details = {"boxes_on_goals": on, "optimal_steps": self.task.optimal}
        return Evaluation(float(on == len(rubric)), rubric, details)

    def expert_action(self) -> str:
        """Next move of a shortest solution from the current state (replans when off-plan)."""
        assert self.task is not None
        if self.state not in self._plan:
            self._plan = self._make_plan()
        return self._plan.get(self.state, MOVE_NAMES[0])

    def _make_plan(self) -> dict[State, str]:
        """Map each state on a shortest solution from here to its next move."""
        assert self.task is not None
        plan, state = {}, self.state
        for name in solve(self.task, self.state) or []:
            plan[state] = name
            state, _ = move(self.task, state, name)
        return plan

    def grid_channels(self) -> np.ndarray:
        """One-hot planes (agent, box, goal, wall, floor) of shape (5, n, n), for numeric views."""
        assert self.task is not None
        n = self.task.size
        planes = np.zeros((5, n, n), dtype=np.float32)
        for r, row in enumerate(self.task.walls):
            for c, ch in enumerate(row):
                planes[3 if ch == "#" else 4, r, c] = 1.0
        player, boxes = self.state
        planes[0].flat[player] = 1.0
        for b in boxes:
            planes[1].flat[b] = 1.0
        for g in self.task.goals:
            planes[2].flat[g] = 1.0
        return planes

    def _set_state(self, state: Any) -> None:
        self.state = state
        self._plan = {}
