"""Contracts of the control envs' tasks and experts (FrozenLake, Sokoban).

The tasks are pinned: the panels and the train stream must not change without a new ``-vN``
(speed-ups must draw the same numbers in the same order). The expert must take a shortest
way from every state an episode can reach, not only from the start: after random moves,
invalid actions and ``restore()``.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest

import earlyexp.envs  # noqa: F401  (registers the ids)
from earlyexp.envs.control.frozenlake import goal_distances
from earlyexp.envs.control.sokoban import solve
from earlyexp.envs.core.panels import canonical_json

PANEL_HASHES = {
    ("EarlyExp/FrozenLake-v0", "test"): "e1feb4f5ab6c6559",
    ("EarlyExp/FrozenLake-v0", "ood"): "afbfeaf145471e17",
    ("EarlyExp/Sokoban-v0", "test"): "74ce29d2b7f3d6e0",
    ("EarlyExp/Sokoban-v0", "ood"): "786e07e6c5f11030",
}
TRAIN_STREAM_HASHES = {  # the first 100 tasks of reset(seed=0), reset(), ...
    "EarlyExp/FrozenLake-v0": "215fb165280dd8ef",
    "EarlyExp/Sokoban-v0": "f37f688b10757653",
}
ACTIONS = ["Up", "Down", "Left", "Right", "Jump"]  # the last one is invalid


@pytest.mark.parametrize(("env_id", "split"), PANEL_HASHES)
def test_panels_are_pinned(env_id, split):
    assert gym.make(env_id).unwrapped.panel_hash(split) == PANEL_HASHES[(env_id, split)]


@pytest.mark.parametrize("env_id", TRAIN_STREAM_HASHES)
def test_train_stream_is_pinned(env_id):
    env = gym.make(env_id).unwrapped
    h = hashlib.sha256()
    env.reset(seed=0)
    for i in range(100):
        if i:
            env.reset()
        h.update(canonical_json(env.task).encode() + b"\n")
    assert h.hexdigest()[:16] == TRAIN_STREAM_HASHES[env_id]


def moves_left(raw) -> int | None:
    """Length of a shortest solution from the env's current state (None: none exists)."""
    if raw.family == "FrozenLake-v0":
        (r, c), _ = raw.state
        d = goal_distances(raw.task.rows)[r * raw.task.size + c]
        return None if d < 0 else d
    plan = solve(raw.task, raw.state)
    return None if plan is None else len(plan)


def wander(env, rng: np.random.Generator) -> bool:
    """Take 0-3 random actions, some of them invalid, one undone by restore(); True if done."""
    raw = env.unwrapped
    for _ in range(int(rng.integers(4))):
        snap = raw.snapshot()
        _, _, term, trunc, _ = env.step(ACTIONS[int(rng.integers(len(ACTIONS)))])
        if rng.random() < 0.3:
            raw.restore(snap)
        elif term or trunc:
            return True
    return False


@pytest.mark.parametrize("env_id", list(TRAIN_STREAM_HASHES))
def test_expert_takes_a_shortest_way_from_reachable_states(env_id):
    env = gym.make(env_id, max_steps=40)
    raw = env.unwrapped
    rng = np.random.default_rng(0)
    checked = 0
    for index in range(0, 500, 5):
        env.reset(options={"split": "test", "task": index})
        if wander(env, rng):
            continue
        left = moves_left(raw)
        while left:  # None (no way) and 0 (solved) end the walk
            _, _, term, trunc, info = env.step(raw.expert_action())
            checked += 1
            if term:
                assert left == 1 and info["success"], (index, left)
                break
            assert not trunc
            assert moves_left(raw) == left - 1, (index, raw.state)
            left -= 1
    assert checked > 100
