"""Scripted policies that share the protocol: the env's expert and a uniform random policy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from earlyexp.agents.policy import Completion, Prompt, SamplingParams
from earlyexp.agents.prompting import format_action


def random_action(available: Sequence[str], rng: np.random.Generator) -> str:
    """An action drawn uniformly from ``available`` (``""``, an invalid step, when empty).

    The one random action of the project: the random policy, the tiny preset's tokenizer
    corpus and ``earlyexp play --policy random`` all draw with it.
    """
    choices = list(available) or [""]
    return str(choices[int(rng.integers(len(choices)))])


class ExpertPolicy:
    """Replies ``<action>{expert action}</action>``, the oracle's action at each state.

    The rollout engine computes the action where the env runs (``needs_expert``) and hands it
    over in :attr:`Prompt.expert_action`.
    """

    tokenizer = None
    needs_expert = True

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """One expert action per prompt."""
        out = []
        for p in prompts:
            if p.expert_action is None:
                raise ValueError(
                    "Expect Prompt.expert_action (the rollout engine fills it for policies "
                    "with needs_expert = True), actually: None"
                )
            out.append(Completion(format_action(p.expert_action)))
        return out


class RandomPolicy:
    """Replies with an action drawn uniformly from ``Prompt.available_actions``.

    Args:
        seed: seeds the draws (one stream, in prompt order).
    """

    tokenizer = None

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """One random available action per prompt."""
        return [
            Completion(format_action(random_action(p.available_actions, self.rng))) for p in prompts
        ]
