"""LLM methods for ``earlyexp bench``: ``prompt`` (zero-shot) and ``il`` (imitation learning).

Each is called once per (method, env, seed) cell by keyword (see
:mod:`earlyexp.harness.methods`) and returns the episodes of the first ``budget.eval_tasks``
tasks of the ``test`` and ``ood`` panels. ``model`` is ``tiny`` (the built-in preset, built
and cached on first use; ``tiny:test`` names the unit tests' smaller preset) or a local
checkpoint folder. Knobs read from ``budget.extra`` (defaults in :class:`LLMKnobs`):
``batch_size``, ``max_new_tokens``, ``window``, ``temperature``, ``lr``, ``sft_batch_size``.

Files written under ``run_dir``: ``expert_sft.jsonl`` (il), ``checkpoint/`` (il, a
``save_pretrained`` folder), ``sft_log.json`` (il), ``trajectories_{test,ood}.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from earlyexp.agents.models import resolve_model
from earlyexp.agents.policy import SamplingParams
from earlyexp.agents.prompting import PromptConfig
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory, write_jsonl
from earlyexp.harness.methods import Budget, register_method
from earlyexp.harness.records import EpisodeRecord

EVAL_SPLITS = ("test", "ood")


@dataclass(frozen=True)
class LLMKnobs:
    """Per-method knobs read from ``budget.extra`` (unknown keys are left to other methods).

    Attributes:
        batch_size: envs stepped together (the generation batch).
        max_new_tokens: tokens generated per turn at most.
        window: previous turns kept in the prompt.
        temperature: sampling temperature at evaluation (0: greedy).
        lr: SFT peak learning rate.
        sft_batch_size: SFT examples per optimizer step.
        threads: torch CPU threads while the method runs (0: torch's default).
        action_help: describe the action grammar in the system prompt (None: off for the
            tiny preset, whose tokens the grammar text only dilutes, on for real models).
    """

    batch_size: int = 32
    max_new_tokens: int = 16
    window: int = 2
    temperature: float = 0.0
    lr: float = 2e-3
    sft_batch_size: int = 16
    threads: int = 1
    action_help: bool | None = None

    @classmethod
    def from_extra(cls, extra: dict[str, Any], env_id: str | None = None) -> LLMKnobs:
        """Defaults, then the env's tag defaults (:data:`TAG_DEFAULTS`), then ``extra``."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        if env_id is not None:
            from earlyexp.envs import entry

            for tag in entry(env_id).tags:
                values.update(TAG_DEFAULTS.get(tag, {}))
        values.update({k: v for k, v in extra.items() if k in names})
        return cls(**values)


TAG_DEFAULTS: dict[str, dict[str, Any]] = {
    # Control boards are the whole state and actions are one word: no history, short replies.
    "control": {"window": 0, "max_new_tokens": 8},
    # Tool calls and queries are longer.
    "tools": {"max_new_tokens": 48},
    # Search queries, clicks and typed form values.
    "web": {"max_new_tokens": 32},
    "browser": {"max_new_tokens": 32},
}
"""Knob defaults by registry tag (``earlyexp.envs.registry``), below ``budget.extra``."""


def prompt_config(knobs: LLMKnobs, model: str) -> PromptConfig:
    """The prompt settings of a method run."""
    help_on = knobs.action_help if knobs.action_help is not None else not model.startswith("tiny")
    return PromptConfig(window=knobs.window, action_help=help_on)


def evaluate(
    policy: Any,
    env_id: str,
    budget: Budget,
    knobs: LLMKnobs,
    seed: int,
    run_dir: Path,
    prompt: PromptConfig,
) -> list[EpisodeRecord]:
    """Play the first ``budget.eval_tasks`` tasks of each eval panel; write trajectories."""
    engine = RolloutEngine(
        policy,
        prompt,
        SamplingParams(
            max_new_tokens=knobs.max_new_tokens, temperature=knobs.temperature, seed=seed
        ),
    )
    records = []
    for split in EVAL_SPLITS:
        specs = [EpisodeSpec(split, i, seed) for i in range(budget.eval_tasks)]
        trajs = engine.run(env_id, specs, knobs.batch_size)
        write_jsonl(trajs, run_dir / f"trajectories_{split}.jsonl")
        records += [to_record(t) for t in trajs]
    return records


def to_record(traj: Trajectory) -> EpisodeRecord:
    """The bench's view of one evaluated episode."""
    return EpisodeRecord(
        traj.split,
        int(traj.task or 0),
        traj.score,
        traj.success,
        len(traj.steps),
        traj.invalid,
        traj.tokens,
    )


@register_method("prompt", kind="llm")
def run_prompt(
    *, env_id: str, seed: int, budget: Budget, run_dir: Path, device: str, model: str, **kwargs: Any
) -> list[EpisodeRecord]:
    """The LLM policy zero-shot: the prompt alone, no training."""
    from earlyexp.agents.backends.hf import HFPolicy, cpu_threads

    knobs = LLMKnobs.from_extra(budget.extra, env_id)
    with cpu_threads(knobs.threads):
        policy = HFPolicy.from_pretrained(resolve_model(model), device, batch_size=knobs.batch_size)
        return evaluate(
            policy, env_id, budget, knobs, seed, Path(run_dir), prompt_config(knobs, model)
        )


@register_method("il", kind="llm")
def run_il(
    *, env_id: str, seed: int, budget: Budget, run_dir: Path, device: str, model: str, **kwargs: Any
) -> list[EpisodeRecord]:
    """Imitation learning: SFT on expert demonstrations of the train stream, then evaluate."""
    from earlyexp.agents.backends.hf import cpu_threads

    knobs = LLMKnobs.from_extra(budget.extra, env_id)
    with cpu_threads(knobs.threads):
        return _il(env_id, seed, budget, Path(run_dir), device, model, knobs)


def _il(
    env_id: str, seed: int, budget: Budget, run_dir: Path, device: str, model: str, knobs: LLMKnobs
) -> list[EpisodeRecord]:
    from earlyexp.agents.backends.hf import HFPolicy, load_model, resolve_device
    from earlyexp.agents.data import (
        EXPERT_FILE,
        collect_expert,
        expert_records,
        read_chat_jsonl,
        write_chat_jsonl,
    )
    from earlyexp.agents.sft import SFTConfig, save_checkpoint, sft_on_conversations

    prompt = prompt_config(knobs, model)
    demos = collect_expert(env_id, budget.train_episodes, seed, prompt, knobs.batch_size)
    data = write_chat_jsonl(expert_records(demos, prompt.window), run_dir / EXPERT_FILE)
    net, tokenizer = load_model(resolve_model(model), resolve_device(device), training=True)
    config = SFTConfig(
        steps=budget.train_steps, batch_size=knobs.sft_batch_size, lr=knobs.lr, seed=seed
    )
    net, log = sft_on_conversations(net, tokenizer, read_chat_jsonl(data), config)
    (run_dir / "sft_log.json").write_text(json.dumps(log, indent=1))
    save_checkpoint(net, tokenizer, run_dir / "checkpoint")
    policy = HFPolicy(net, tokenizer, batch_size=knobs.batch_size)
    return evaluate(policy, env_id, budget, knobs, seed, run_dir, prompt)
