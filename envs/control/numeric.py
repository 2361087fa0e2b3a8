"""Numeric views of the control envs for stable-baselines3 (one-hot grid ``Box``, ``Discrete(4)``).

The view wraps the text env and reads its structured state, so the task, dynamics, splits and
reward are exactly those of the text env. Grids smaller than the largest one of the env (OOD
included) are placed in the top-left corner of a fixed canvas with an extra "outside" plane, so
one policy network handles every size.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from earlyexp.envs.control.grid import MOVE_NAMES

CANVAS = {"FrozenLake-v0": 9, "Sokoban-v0": 10}


class NumericView(gym.Env[np.ndarray, np.int64]):
    """A one-hot, fixed-size, flattened view of a FrozenLake or Sokoban text env.

    ## Observation
    ``Box(0, 1, (C * P * P,), float32)``: the env's one-hot planes (``grid_channels()``) plus an
    "outside the grid" plane, on a ``P x P`` canvas (P = 9 for FrozenLake, 10 for Sokoban).

    ## Action
    ``Discrete(4)``: 0 Up, 1 Down, 2 Left, 3 Right.

    ## Reward, episode end, splits
    Those of the wrapped text env. ``reset(options={"split": ..., "task": ...})`` is passed on.

    ## Arguments
    ``NumericView(gym.make("EarlyExp/Sokoban-v0"))`` or ``make_numeric("EarlyExp/Sokoban-v0")``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env: gym.Env, split: str = "train") -> None:
        raw: Any = env.unwrapped
        if not hasattr(raw, "grid_channels") or getattr(raw, "family", None) not in CANVAS:
            raise ValueError(
                f"Expect a control env ({', '.join(CANVAS)}), actually: {type(raw).__name__}"
            )
        self.env = env
        self.split = split
        self.canvas = CANVAS[raw.family]
        env.reset(seed=0)
        self.planes = raw.grid_channels().shape[0] + 1
        size = self.planes * self.canvas * self.canvas
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVE_NAMES))

    def _obs(self) -> np.ndarray:
        grid = self.env.unwrapped.grid_channels()  # type: ignore[attr-defined]
        c, n, _ = grid.shape
        out = np.zeros((self.planes, self.canvas, self.canvas), dtype=np.float32)
        out[:c, :n, :n] = grid
        out[c] = 1.0
        out[c, :n, :n] = 0.0
        return out.reshape(-1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the text env (default split: the view's ``split``) and return the planes."""
        super().reset(seed=seed)
        opts = {"split": self.split, **(options or {})}
        _, info = self.env.reset(seed=seed, options=opts)
        return self._obs(), dict(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Take move ``action`` (0-3) in the text env."""
        if not self.action_space.contains(action):
            raise ValueError(f"Expect an action in Discrete(4), actually: {action!r}")
        _, reward, term, trunc, info = self.env.step(MOVE_NAMES[int(action)])
        return self._obs(), float(reward), bool(term), bool(trunc), dict(info)

    def close(self) -> None:
        """Close the wrapped env."""
        self.env.close()


def make_numeric(env_id: str, split: str = "train", **kwargs: Any) -> NumericView:
    """Return the numeric view of the control env ``env_id``."""
    import earlyexp.envs  # noqa: F401  (registers the ids)

    return NumericView(gym.make(env_id, **kwargs), split=split)
