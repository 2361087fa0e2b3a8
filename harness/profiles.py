"""Named budget presets for ``earlyexp bench``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from earlyexp.harness.methods import Budget


@dataclass(frozen=True)
class Profile:
    """A preset: which methods run, on how many seeds, with which budgets.

    Attributes:
        name: the ``--profile`` value.
        description: one line for ``--help``.
        methods: methods run by default.
        seeds: seeds run by default.
        eval_tasks: tasks per panel (first N of ``test`` and of ``ood``).
        train_episodes: demonstrations / collected episodes for learning methods.
        train_steps: training steps by method kind (``sb3``: env steps; ``llm``: optimizer steps).
        env_overrides: per env id, Budget fields that replace the defaults (e.g. fewer eval tasks
            for a browser env); ``eval_tasks_<kind>`` and ``train_steps_<kind>`` apply to one
            method kind only (``scripted``, ``sb3``, ``llm``).
        extra: method-specific knobs passed in ``Budget.extra``.
    """

    name: str
    description: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    eval_tasks: int
    train_episodes: int
    train_steps: dict[str, int]
    env_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def budget(self, kind: str, env_id: str, eval_tasks: int | None = None) -> Budget:
        """Return the budget of a ``kind`` method on ``env_id`` (``eval_tasks`` overrides)."""
        over = self.env_overrides.get(env_id, {})
        return Budget(
            eval_tasks=eval_tasks
            or over.get(f"eval_tasks_{kind}", over.get("eval_tasks", self.eval_tasks)),
            train_episodes=over.get("train_episodes", self.train_episodes),
            train_steps=over.get(f"train_steps_{kind}", self.train_steps.get(kind, 0)),
            extra={**self.extra, **over.get("extra", {})},
        )


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            name="quick",
            description="CPU, tiny model, minutes: the README's main command",
            methods=("random", "expert", "ppo", "prompt", "il"),
            seeds=(0,),
            eval_tasks=100,
            train_episodes=1000,
            # llm: the tiny model trained from scratch first sits on an action-frequency
            # plateau, then learns where things are on the board (after ~600 SFT steps in our
            # runs); the control envs get 3,000 (about 4-5 min each on 2 cores). The text envs
            # get small budgets: within minutes the tiny model learns the action format, not
            # yet the copying from the page that they need.
            train_steps={"sb3": 50_000, "llm": 3000},
            extra={"threads": 2},
            env_overrides={
                "EarlyExp/Sokoban-v0": {"train_episodes": 4000},
                "EarlyExp/WebShop-v0": {
                    "eval_tasks_llm": 10,
                    "train_episodes": 100,
                    "train_steps_llm": 100,
                    "extra": {"window": 0},
                },
                "EarlyExp/SearchQA-v0": {
                    "eval_tasks_llm": 20,
                    "train_episodes": 100,
                    "train_steps_llm": 100,
                    "extra": {"sft_batch_size": 8, "window": 0},
                },
                "EarlyExp/ToolCall-v0": {
                    "eval_tasks_llm": 10,
                    "train_episodes": 100,
                    "train_steps_llm": 100,
                    "extra": {"sft_batch_size": 8, "window": 0},
                },
                "EarlyExp/FlightBooking-v0": {
                    "eval_tasks": 10,
                    "eval_tasks_llm": 3,
                    "train_episodes": 20,
                    "train_steps_llm": 50,
                    "extra": {"window": 0},
                },
            },  # fmt: skip
        ),
        Profile(
            name="smoke",
            description="seconds: a few tasks, tiny budgets (tests and CI smoke runs)",
            methods=("random", "expert"),
            seeds=(0,),
            eval_tasks=3,
            train_episodes=4,
            train_steps={"sb3": 256, "llm": 4},
        ),
        Profile(
            name="standard",
            description="CPU or GPU, hours: full panels, 3 seeds",
            methods=("random", "expert", "ppo", "dqn", "prompt", "il"),
            seeds=(0, 1, 2),
            eval_tasks=500,
            train_episodes=2000,
            train_steps={"sb3": 500_000, "llm": 3000},
        ),
        Profile(
            name="gpu",
            description="GPU: a real checkpoint (--model PATH), bf16, batched generation",
            methods=("random", "expert", "prompt", "il"),
            seeds=(0, 1, 2),
            eval_tasks=500,
            train_episodes=5000,
            train_steps={"sb3": 1_000_000, "llm": 5000},
            extra={"batch_size": 64},
        ),
    ]
}


def get_profile(name: str) -> Profile:
    """Return the profile ``name``."""
    if name not in PROFILES:
        raise ValueError(f"Expect a profile in {sorted(PROFILES)}, actually: {name!r}")
    return PROFILES[name]
