"""EarlyExp/Sokoban-v0: push boxes onto goals in a walled room with hidden rules, as text."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from earlyexp.envs.control.grid import MOVE_NAMES, MOVES, GridEnv
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
_WALL_BITS = str.maketrans("#.", "10")
_ROOM_BYTES = bytes.maketrans(b"\x00\x01", b".#")  # numpy bools -> floor, wall
_FLOOR_PLAN = {name: str.maketrans({"#": s["#"], ".": s["."]}) for name, s in SYMBOLS.items()}


@dataclass(frozen=True)
class SokobanTask:
    """One puzzle: ``walls`` rows of ``#``/``.``, goal/box cells, the player's cell.

    ``solution`` is a shortest move list from the start, kept from the generator's check so
    the expert need not search again (None when unknown; not part of the canonical JSON).
    Cell sets are bit masks: bit ``c`` stands for cell ``c``.
    """

    walls: tuple[str, ...]
    goals: tuple[int, ...]
    boxes: tuple[int, ...]
    player: int
    budget: int
    optimal: int
    solution: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Side length of the square room."""
        return len(self.walls)

    @cached_property
    def wall_mask(self) -> int:
        """The wall cells."""
        return _room_masks(self.walls)[0]

    @cached_property
    def dead_mask(self) -> int:
        """Cells where a box is stuck for good: corners that are not goals."""
        return _room_masks(self.walls)[1] & ~cell_mask(self.goals)

    def is_wall(self, cell: int) -> bool:
        """True when ``cell`` is a wall."""
        return bool(self.wall_mask >> cell & 1)

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes (the compared constructor fields only)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.compare}


def cell_mask(cells: tuple[int, ...]) -> int:
    """The bit mask of ``cells``."""
    mask = 0
    for c in cells:
        mask |= 1 << c
    return mask


@lru_cache(maxsize=4096)
def _room_masks(walls: tuple[str, ...]) -> tuple[int, int]:
    """Masks of a room's walls and corners (floor with a wall above/below and left/right)."""
    n = len(walls)
    w = int("".join(walls)[::-1].translate(_WALL_BITS), 2)  # reversed: cell c is bit c
    inner = (1 << (n * n - n)) - (1 << n)  # cells n .. n*n-n-1
    return w, (w << n | w >> n) & (w << 1 | w >> 1) & inner & ~w


def move(task: SokobanTask, state: State, name: str) -> tuple[State, str]:
    """Apply move ``name``; return the new state and what happened (``moved|pushed|wall|blocked``)."""
    n = task.size
    dr, dc = MOVES[name]
    d = dr * n + dc
    player, boxes = state
    nxt = player + d
    walls = task.wall_mask
    if walls >> nxt & 1:
        return state, "wall"
    if nxt not in boxes:
        return (nxt, boxes), "moved"
    beyond = nxt + d
    if walls >> beyond & 1 or beyond in boxes:
        return state, "blocked"
    moved = tuple(sorted(beyond if b == nxt else b for b in boxes))
    return (nxt, moved), "pushed"


def solve(task: SokobanTask, state: State, max_depth: int | None = None) -> list[str] | None:
    """Return a shortest move list that puts every box on a goal, or None.

    Breadth-first over (player, boxes) states, moves tried in ``MOVE_NAMES`` order, the first
    plan found is returned; pushes into a dead corner are skipped; ``max_depth`` bounds the
    plan's length.
    """
    goals = cell_mask(task.goals)
    return _search(task.size, task.wall_mask, task.dead_mask, goals, state, max_depth)


def _search(
    n: int, walls: int, dead: int, goals: int, state: State, max_depth: int | None
) -> list[str] | None:
    """:func:`solve` on masks (the hot path). A state is one int: box mask above player cell."""
    player, boxes = state
    if cell_mask(boxes) & ~goals == 0:
        return []
    shift = (n * n).bit_length()
    low = (1 << shift) - 1  # the player bits of a state
    moves = tuple(enumerate((-n, n, -1, 1)))
    start = cell_mask(boxes) << shift | player
    parent: dict[int, tuple[int, int] | None] = {start: None}  # state -> (previous, move)
    frontier, depth = [start], 0
    while frontier and (max_depth is None or depth < max_depth):
        depth, layer, frontier = depth + 1, frontier, []
        for s in layer:
            p, m = s & low, s >> shift
            for i, d in moves:
                q = p + d
                if walls >> q & 1:
                    continue
                if not m >> q & 1:  # a plain step
                    t = s - p + q
                    if t not in parent:
                        parent[t] = (s, i)
                        frontier.append(t)
                    continue
                b = q + d  # a push: the box goes from q to b
                if (walls | dead | m) >> b & 1:
                    continue
                m2 = m ^ (1 << q) ^ (1 << b)
                t = m2 << shift | q
                if t in parent:
                    continue
                parent[t] = (s, i)
                if m2 & ~goals == 0:
                    return _unwind(parent, t)
                frontier.append(t)
    return None


def _unwind(parent: dict[int, tuple[int, int] | None], state: int) -> list[str]:
    """The moves that led from the search's start to ``state``."""
    moves = []
    while (link := parent[state]) is not None:
        state, i = link
        moves.append(MOVE_NAMES[i])
    return moves[::-1]


def _room(rng: np.random.Generator, n: int) -> tuple[str, ...]:
    """Rows of an ``n`` x ``n`` room: border walls, each inner cell a wall with p = 0.12."""
    wall = rng.random((n, n)) < 0.12
    wall[0] = wall[-1] = wall[:, 0] = wall[:, -1] = True
    flat = wall.tobytes().translate(_ROOM_BYTES).decode()
    return tuple([flat[i : i + n] for i in range(0, n * n, n)])


def _reverse_play(
    rng: np.random.Generator, n: int, walls: int, player: int, goals: tuple[int, ...], steps: int
) -> State:
    """Walk backwards from the solved state: the player moves and sometimes pulls a box."""
    deltas = (-n, n, -1, 1)  # MOVES order
    boxes = goals
    for k, pull in zip(
        rng.integers(4, size=steps).tolist(), (rng.random(steps) < 0.8).tolist(), strict=True
    ):
        d = deltas[k]
        nxt = player + d
        if walls >> nxt & 1 or nxt in boxes:
            continue
        behind = player - d
        if pull and behind in boxes:
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
        walls = _room(rng, n)
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
    wall_mask, corners = _room_masks(walls)
    # k == 1: a scalar draw is the same number as size=1 (numpy fills both alike), 3 us cheaper
    drawn = rng.integers(len(floor), size=k).tolist() if k > 1 else [int(rng.integers(len(floor)))]
    goals = tuple(sorted({floor[i] for i in drawn}))
    g = goals[0]  # the free floor around it: not a wall, not a goal
    beside = [c for c in (g - n, g + n, g - 1, g + 1) if not wall_mask >> c & 1 and c not in goals]
    if len(goals) < k or not beside:
        return None
    start = beside[int(rng.integers(len(beside)))]
    steps = int(rng.integers(4, 4 * budget))
    player, boxes = _reverse_play(rng, n, wall_mask, start, goals, steps)
    if boxes == goals:
        return None
    goal_mask = cell_mask(goals)
    dead = corners & ~goal_mask  # as SokobanTask.dead_mask, without building a task per try
    plan = _search(n, wall_mask, dead, goal_mask, (player, boxes), budget)
    if not plan:
        return None
    return SokobanTask(walls, goals, boxes, player, budget, len(plan), tuple(plan))


def _put(rows: list[str], cell: int, symbol: str) -> None:
    """Write ``symbol`` at ``cell`` of a square board given as rows."""
    r, c = divmod(cell, len(rows))
    rows[r] = rows[r][:c] + symbol + rows[r][c + 1 :]


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
    ``symbols="remapped"`` uses ``V v W w X Y Z``. ``summarize`` (the IWM next-state text)
    returns the observation as is: it is short.

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
    * v0 (same tasks and observations): ``summarize``, the next-state text of IWM.
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

    def _static_rows(self) -> list[str]:
        """Rows of walls, floor and goals in the current symbols (cached per task)."""
        task = self.task
        assert task is not None
        if self._static[0] is not task:
            sym = SYMBOLS[self.symbols]
            rows = [row.translate(_FLOOR_PLAN[self.symbols]) for row in task.walls]
            for g in task.goals:
                _put(rows, g, sym["G"])
            self._static = (task, rows)
        return self._static[1]

    def _observation(self, feedback: str) -> str:
        assert self.task is not None
        sym = SYMBOLS[self.symbols]
        (player, boxes), goals = self.state, self.task.goals
        rows = list(self._static_rows())
        for b in boxes:
            _put(rows, b, sym["X" if b in goals else "B"])
        _put(rows, player, sym["Q" if player in goals else "P"])
        board = "\n".join(rows)
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
        """Map each state on a shortest solution from here to its next move.

        From the start the task's own ``solution`` is used; elsewhere a new search runs.
        """
        task = self.task
        assert task is not None
        at_start = self.state == (task.player, task.boxes)
        moves = task.solution if at_start and task.solution is not None else solve(task, self.state)
        plan, state = {}, self.state
        for name in moves or []:
            plan[state] = name
            state, _ = move(task, state, name)
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
