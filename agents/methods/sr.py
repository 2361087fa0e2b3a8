"""``sr``: Early Experience's self-reflection: learn the reasoning behind the expert action.

Agent Learning via Early Experience (arXiv 2510.08558), section 4.3:

1. Expert episodes and K alternatives per expert state with their outcomes, as for IWM
   (:mod:`earlyexp.agents.branching`).
2. A reflection provider writes, for each state, a first-person reasoning why the expert
   action is better, grounded in the outcomes (:mod:`earlyexp.agents.reflect`: the policy
   itself, an HTTP model, or the grounded writer; ``reflector``). Texts that leak the label,
   narrate the chosen action's outcome as seen, repeat themselves, run too long or conclude
   with another action are dropped and counted (``sr_stats.json``).
3. Train on ``reflection_sft.jsonl`` (reflection then the expert action, conditioned on s_i
   only) mixed with ``expert_sft.jsonl``, for the same epochs as IL (``budget``): IL's
   ``steps`` times the mixed data's size over D_expert's, so D_expert is seen as often as IL
   sees it and the reflections come on top.
4. Evaluate as IL, with more tokens per turn (``reasoning_tokens``; by default as many as the
   longest kept reflection takes): the policy now writes its reasoning before the action.

Which provider wrote the reflections is in ``sr_stats.json`` and the cell's log: a model
trained from scratch cannot write them (the paper's 3B model did), so the quick profile uses
the grounded writer, and says so.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    EarlyExperienceConfig,
    early_experience,
    finish_learner,
    sft_stage,
    torch_threads,
)
from earlyexp.agents.models import require_local
from earlyexp.agents.records import EpisodeRecord


@dataclass
class SRConfig(EarlyExperienceConfig):
    """``sr``: reflections on branched alternatives, mixed with expert data."""

    K: int = 3
    """Alternative actions per expert state (the paper: up to 3; best at 2-4)."""
    reflector: str = "grounded"
    """Who writes the reflections: grounded (from the env's feedback), policy (the initial
    model itself) or http (reflector_url)."""
    reflector_url: str = ""
    """The reflection model, http://HOST:PORT/v1#MODEL (reflector http)."""
    max_reflection_chars: int = 400
    """Reflections longer than this are dropped (short ones for small models)."""
    reasoning_tokens: int = 0
    """Extra tokens per turn at evaluation, for the reasoning before the action; 0: as many
    as the longest kept reflection reply needs (so no reply is cut before its action)."""
    expert_mix: bool = True
    """Train on the reflections mixed with D_expert (the paper); False: on the reflections
    alone (D_expert only where none was kept), so the policy always reasons before it acts
    (mixed, a greedy small policy may take the bare-action branch at every step)."""
    budget: str = "epochs"
    """epochs: as many passes over the training data as IL makes over D_expert in ``steps``
    (the paper's "same epochs as IL": mixed 1:1, twice IL's steps); steps: IL's ``steps``
    (the mixed data then gets half IL's passes over D_expert)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.budget not in BUDGETS:
            raise ValueError(f"Expect budget in {BUDGETS}, actually: {self.budget!r}")


BUDGETS = ("epochs", "steps")


def sr_steps(config: SRConfig, n_examples: int, n_expert: int) -> int:
    """Optimizer steps of SR's SFT on ``n_examples`` conversations, ``n_expert`` of D_expert.

    ``budget`` steps: IL's ``steps``. epochs: ``steps * n_examples / n_expert``, the epochs IL
    makes over its ``n_expert`` examples, over the larger set.
    """
    if config.budget == "steps" or n_expert < 1:
        return config.steps
    return max(1, round(config.steps * n_examples / n_expert))


def training_data(config: SRConfig, sr: list[dict], expert: list[dict]) -> list[Any]:
    """The SFT conversations: reflections, then D_expert unless ``expert_mix`` is off."""
    chosen = sr + expert if config.expert_mix or not sr else sr
    return [r["messages"] for r in chosen]


def reasoning_budget(config: SRConfig, sr: list[dict], tokenizer: Any) -> int:
    """Extra tokens per turn at evaluation.

    ``reasoning_tokens``, or, when it is 0, the token length of the longest kept reflection
    reply (reflection and action) plus 8.
    """
    if config.reasoning_tokens:
        return config.reasoning_tokens
    replies = [r["messages"][-1]["content"] for r in sr]
    return max((len(tokenizer.encode(t)) for t in replies), default=0) + 8


def warn_none_kept(n: int, counts: Any, max_chars: int) -> None:
    """Warn that every reflection was filtered out: the cell trains as IL would."""
    warnings.warn(
        f"SR kept none of the {n} reflections (filters: {dict(counts)}), so this cell trains "
        "on the expert's actions only, as IL does; with 'over length' drops, raise "
        f"max_reflection_chars (now {max_chars})",
        RuntimeWarning,
        stacklevel=3,
    )


@register("sr", config=SRConfig, kind="llm", trains=True)
def run(
    *, env_id: str, seed: int, config: SRConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """Early Experience SR: train on grounded reflections then the expert action."""
    from earlyexp.agents.data import write_chat_jsonl
    from earlyexp.agents.early_experience import REFLECTION_FILE, sr_records
    from earlyexp.agents.reflect import make_reflector

    require_local(model, "sr")
    run_dir, pool = Path(run_dir), kwargs.get("pool")
    with torch_threads(config, model):
        ee = early_experience(env_id, seed, config, run_dir, device, model, pool)
        reflector = make_reflector(config.reflector, policy=ee.initial,
                                   url=config.reflector_url or None)  # fmt: skip
        sr, counts = sr_records(ee.states, reflector, config.max_reflection_chars)
        write_chat_jsonl(sr, run_dir / REFLECTION_FILE)
        if ee.states and not sr:
            warn_none_kept(len(ee.states), counts, config.max_reflection_chars)
        extra = reasoning_budget(config, sr, ee.tokenizer)
        data = training_data(config, sr, ee.expert)
        steps = sr_steps(config, len(data), len(ee.expert))
        summary = {"provider": reflector.name, "filters": {"kept": 0, **counts},
                   "reasoning_tokens": extra, "examples": len(data),
                   "expert_examples": len(data) - len(sr), "budget": config.budget,
                   "steps": steps, "branch": ee.stats.to_json(),
                   "proposer": config.proposer or "initial"}  # fmt: skip
        (run_dir / "sr_stats.json").write_text(json.dumps(summary, indent=1))
        net, log = sft_stage(ee.net, ee.tokenizer, data, steps, config, seed,
                             run_dir / "train_state")  # fmt: skip
        return finish_learner(net, ee.tokenizer, {"sr": log, "sr_stats": summary}, env_id,
                              config, seed, run_dir, ee.prompt, pool,
                              extra_tokens=extra)  # fmt: skip
