"""Private panels: a salt draws other fixed test/ood panels from the same task distribution."""

from __future__ import annotations

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.envs.core import task_seed, text_env
from earlyexp.envs.core.panels import panels_salted, salted_panels

IDS = ["EarlyExp/FrozenLake-v0", "EarlyExp/Sokoban-v0", "EarlyExp/ToolCall-v0"]


def _solve(env, split: str, task: int) -> dict:
    obs, info = env.reset(seed=0, options={"split": split, "task": task})
    while True:
        obs, _, term, trunc, info = env.step(env.unwrapped.expert_action())
        if term or trunc:
            return info


@pytest.mark.parametrize("env_id", IDS)
def test_a_salt_gives_other_fixed_tasks_that_the_expert_still_solves(env_id):
    env = gym.make(env_id)
    raw = text_env(env)
    public = raw.panel("test")[:5]
    with salted_panels("s3cret"):
        salted = raw.panel("test")[:5]
        assert raw.panel("test")[:5] == salted  # fixed: the same salt, the same panel
        assert all(_solve(env, "test", i)["success"] for i in range(3))
        assert all(_solve(env, "ood", i)["success"] for i in range(3))
    assert salted != public and raw.panel("test")[:5] == public  # the block ended
    env.close()


def test_the_hash_names_the_panel_without_the_salt():
    raw = text_env(gym.make("EarlyExp/FrozenLake-v0"))
    public = raw.panel_hash("test")
    with salted_panels("a"):
        a = raw.panel_hash("test")
    with salted_panels("b"):
        b = raw.panel_hash("test")
    with salted_panels(""):  # empty: the public panel
        assert raw.panel_hash("test") == public and not panels_salted()
    assert len({public, a, b}) == 3


def test_the_train_stream_and_sizes_do_not_change():
    before = [task_seed("fam", "train", i) for i in range(5)]
    with salted_panels("s3cret"):
        assert panels_salted()
        assert [task_seed("fam", "train", i) for i in range(5)] == before
        assert task_seed("fam", "test", 0) != task_seed("fam", "ood", 0)
        inner = task_seed("fam", "test", 0)
    assert task_seed("fam", "test", 0) != inner and not panels_salted()


def test_salted_panels_restore_on_error():
    with pytest.raises(RuntimeError), salted_panels("x"):
        raise RuntimeError
    assert not panels_salted()
