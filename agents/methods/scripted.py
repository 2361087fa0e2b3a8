"""Scripted reference methods: ``random`` (a floor) and ``expert`` (the env's oracle, a ceiling).

Both are evaluated through the rollout engine like every other method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.backends.scripted import ExpertPolicy, RandomPolicy
from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import MethodConfig, evaluate_policy
from earlyexp.agents.records import EpisodeRecord


@dataclass
class RandomConfig(MethodConfig):
    """``random``: one seeded stream of draws, so episodes are played one at a time."""

    batch_size: int = 1
    """Envs stepped together (1 keeps the draws in episode order, whatever the pool)."""


@register("random", config=RandomConfig, kind="scripted")
def run_random(
    *, env_id: str, seed: int, config: RandomConfig, run_dir: Path, **kwargs: Any
) -> list[EpisodeRecord]:
    """Uniform over info['available_actions'] at every step."""
    policy = RandomPolicy(seed)
    return evaluate_policy(policy, env_id, config, seed, run_dir, pool=kwargs.get("pool"))


@register("expert", config=MethodConfig, kind="scripted")
def run_expert(
    *, env_id: str, seed: int, config: MethodConfig, run_dir: Path, **kwargs: Any
) -> list[EpisodeRecord]:
    """The env's scripted oracle (an upper bound, not a learner)."""
    return evaluate_policy(ExpertPolicy(), env_id, config, seed, run_dir, pool=kwargs.get("pool"))
