"""Scripted policies that share the protocol: the env's expert and a uniform random policy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from earlyexp.agents.policy import Completion, Prompt, SamplingParams
from earlyexp.agents.prompting import format_action


class ExpertPolicy:
    """Replies ``<action>{env.unwrapped.expert_action()}</action>`` (needs ``Prompt.env``)."""

    tokenizer = None

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """One expert action per prompt."""
        out = []
        for p in prompts:
            if p.env is None:
                raise ValueError(
                    "Expect Prompt.env to be set for the expert policy, actually: None"
                )
            out.append(Completion(format_action(p.env.unwrapped.expert_action())))
        return out


class RandomPolicy:
    """Replies with an action drawn uniformly from ``Prompt.available_actions``.

    Args:
        seed: seeds the draws.
    """

    tokenizer = None

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """One random available action per prompt (an empty action when none are listed)."""
        out = []
        for p in prompts:
            acts = p.available_actions or [""]
            out.append(Completion(format_action(acts[int(self.rng.integers(len(acts)))])))
        return out
