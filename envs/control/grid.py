"""Grid helpers shared by the control envs: moves, symbol sets and the base env."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec
from earlyexp.envs.core.base import TaskT, TextEnv

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


def check_symbols(symbols: str) -> str:
    """Return ``symbols`` if it names a symbol set, else raise a ValueError listing them."""
    if symbols not in SYMBOL_SETS:
        raise ValueError(f"Expect symbols in {SYMBOL_SETS}, actually: {symbols!r}")
    return symbols


class GridEnv(TextEnv[TaskT]):
    """What FrozenLake and Sokoban share: moves, symbol sets, budgets, immutable tuple state.

    Subclasses set :attr:`FAMILY` and :attr:`generate` (``(rng, split) -> task``); their tasks
    carry a ``budget`` field and their ``self.state`` is an immutable tuple.
    """

    grammar = MOVE_GRAMMAR
    FAMILY: ClassVar[str]
    generate: ClassVar[Callable[[np.random.Generator, str], Any]]

    def __init__(
        self,
        symbols: str = "abstract",
        render_mode: str | None = None,
        max_steps: int | None = None,
    ) -> None:
        self.symbols = check_symbols(symbols)
        super().__init__(render_mode=render_mode, max_steps=max_steps)

    @property
    def family(self) -> str:
        """Task distribution name (symbols do not change the tasks)."""
        return self.FAMILY

    def make_task(self, rng: np.random.Generator, split: str) -> TaskT:
        """Draw a task of ``split`` (see the module's ``generate_task``)."""
        return type(self).generate(rng, split)

    def _budget(self, task: TaskT) -> int:
        return int(task.budget)

    def available_actions(self) -> list[str]:
        """The four moves."""
        return list(MOVE_NAMES)

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """The observation as is: the feedback line and the board are short already."""
        return obs

    def _get_state(self) -> Any:
        return self.state  # an immutable tuple: no copy needed

    def _set_state(self, state: Any) -> None:
        self.state = state
