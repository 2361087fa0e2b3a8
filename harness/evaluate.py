"""Evaluate a per-step policy on the fixed panels of an env."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from tqdm.auto import tqdm

from earlyexp.envs.core.base import text_env
from earlyexp.harness.records import EpisodeRecord

ActFn = Callable[[Any, str, dict], str]
"""``act(env, obs, info) -> action``: a per-step policy over a text env."""


def run_episode(env: gym.Env, act: ActFn, split: str, task: int) -> EpisodeRecord:
    """Play panel task ``task`` of ``split`` with ``act``; return its record."""
    obs, info = env.reset(options={"split": split, "task": task})
    steps = invalid = 0
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(act(env, obs, info))
        steps += 1
        invalid += not info["action_valid"]
        done = term or trunc
    return EpisodeRecord(split, task, float(info["score"]), bool(info["success"]), steps, invalid)


def evaluate(
    env_id: str,
    act: ActFn,
    n_tasks: int,
    splits: Sequence[str] = ("test", "ood"),
    desc: str = "",
    env_kwargs: dict[str, Any] | None = None,
) -> list[EpisodeRecord]:
    """Run ``act`` on the first ``n_tasks`` tasks of each panel in ``splits``."""
    import earlyexp.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        records = []
        for split in splits:
            size = text_env(env).panel_sizes[split]
            tasks = range(min(n_tasks, size))
            for t in tqdm(tasks, desc=f"{desc} {split}".strip(), leave=False, mininterval=1.0):
                records.append(run_episode(env, act, split, t))
        return records
    finally:
        env.close()
