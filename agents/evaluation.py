"""Evaluate a policy on an env's fixed panels: the one evaluation path of the project.

Every method (random, expert, prompt, il and the learning methods) is evaluated here,
through the rollout engine. :func:`evaluate` is the public call for your own policy::

    from earlyexp.agents import evaluate

    result = evaluate("EarlyExp/FrozenLake-v0", lambda obs, info: "Right", split="test", n=50)
    print(result.success_rate, result.mean_score)

``policy`` is any :class:`~earlyexp.agents.policy.Policy` (an HF model, an HTTP server, the
scripted expert) or a plain function ``act(obs, info) -> action``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earlyexp.agents.envpool import PoolConfig
from earlyexp.agents.policy import Completion, Policy, Prompt, SamplingParams
from earlyexp.agents.prompting import PromptConfig, format_action
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory, write_jsonl

EVAL_SPLITS = ("test", "ood")
ActFn = Callable[[str, dict], str]
"""``act(obs, info) -> action``: a per-step policy over a text env."""


class FunctionPolicy:
    """A plain function ``act(obs, info) -> action`` as a :class:`Policy`."""

    tokenizer = None

    def __init__(self, act: ActFn) -> None:
        self.act = act

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """One action per prompt, from the function."""
        return [Completion(format_action(str(self.act(p.observation, p.info)))) for p in prompts]


def as_policy(policy: Policy | ActFn) -> Policy:
    """``policy`` itself, or a function wrapped as :class:`FunctionPolicy`."""
    if hasattr(policy, "complete"):
        return policy
    if callable(policy):
        return FunctionPolicy(policy)
    raise ValueError(f"Expect a Policy or a function act(obs, info), actually: {policy!r}")


def panel_size(env_id: str, split: str) -> int:
    """Tasks in the ``split`` panel of ``env_id`` (read off the env class, no env is made)."""
    import earlyexp.envs as envs

    module, _, name = envs.entry(env_id).entry_point.partition(":")
    sizes = getattr(importlib.import_module(module), name).panel_sizes
    if split not in sizes:
        raise ValueError(f"Expect a panel split in {sorted(sizes)}, actually: {split!r}")
    return int(sizes[split])


def to_record(traj: Trajectory) -> EpisodeRecord:
    """The bench's view of one evaluated episode."""
    return EpisodeRecord(
        traj.split, int(traj.task or 0), traj.score, traj.success,
        len(traj.steps), traj.invalid, traj.tokens,
    )  # fmt: skip


def play_panels(
    engine: RolloutEngine,
    env_id: str,
    n: int,
    seed: int,
    num_envs: int,
    splits: Sequence[str] = EVAL_SPLITS,
    run_dir: Path | None = None,
) -> list[Trajectory]:
    """Play the first ``n`` tasks of each panel; write ``trajectories_<split>.jsonl``."""
    out = []
    for split in splits:
        count = min(n, panel_size(env_id, split))
        specs = [EpisodeSpec(split, i, seed) for i in range(count)]
        trajs = engine.run(env_id, specs, num_envs, progress=f"eval {split}")
        if run_dir is not None:
            write_jsonl(trajs, Path(run_dir) / f"trajectories_{split}.jsonl")
        out += trajs
    return out


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        records: one per episode.
        trajectories: the episodes as played (the rollout engine's records).
    """

    records: list[EpisodeRecord]
    trajectories: list[Trajectory] = field(repr=False)

    @property
    def success_rate(self) -> float:
        """Share of episodes with ``success``."""
        return sum(r.success for r in self.records) / max(len(self.records), 1)

    @property
    def mean_score(self) -> float:
        """Mean final score."""
        return sum(r.score for r in self.records) / max(len(self.records), 1)


def evaluate(
    env_id: str,
    policy: Policy | ActFn,
    split: str = "test",
    n: int = 100,
    *,
    seed: int = 0,
    num_envs: int = 8,
    prompt: PromptConfig | None = None,
    sampling: SamplingParams | None = None,
    workers: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Play the first ``n`` tasks of panel ``split`` of ``env_id`` with ``policy``.

    Args:
        env_id: a registered id (``EarlyExp/WebShop-v0``).
        policy: a :class:`Policy`, or a function ``act(obs, info) -> action``.
        split: ``test`` (in distribution) or ``ood``.
        n: tasks (capped at the panel's size).
        seed: reset seed of every episode.
        num_envs: envs stepped together.
        prompt: how prompts are built (LLM policies).
        sampling: how completions are sampled (default: greedy, 32 new tokens).
        workers: Ray actors for the envs (0: in this process).
        env_kwargs: ``gym.make`` arguments.
    """
    if n < 1:
        raise ValueError(f"Expect n >= 1, actually: {n}")
    sampling = sampling or SamplingParams(temperature=0.0, seed=seed)
    engine = RolloutEngine(as_policy(policy), prompt, sampling, PoolConfig(workers))
    count = min(n, panel_size(env_id, split))
    specs = [EpisodeSpec(split, i, seed) for i in range(count)]
    trajs = engine.run(env_id, specs, num_envs, progress=f"{split} panel", **(env_kwargs or {}))
    return EvalResult([to_record(t) for t in trajs], trajs)
