"""The one policy protocol every backend implements: prompts in, completions out, batched.

A :class:`Prompt` carries the chat messages of one decision and, for backends that own a
tokenizer (:attr:`Policy.tokenizer` is not None), the exact token ids of that context as the
rollout engine assembled them. Such a backend must generate from ``token_ids`` when given
(never re-tokenizing the conversation), and return the sampled ids and their log-probs.
Backends without a tokenizer (an HTTP server, the scripted expert and random policies) read
``messages`` and return text; their ``token_ids`` / ``logprobs`` may be empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from earlyexp.agents.prompting import ACTION_CLOSE, Message


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions.

    Attributes:
        max_new_tokens: generated tokens per completion at most.
        temperature: softmax temperature; 0 means greedy decoding.
        top_p: nucleus sampling mass (1.0 = off).
        stop: strings that end a completion (kept in the text and the ids).
        seed: seeds the sampler for reproducible batches (None: not seeded).
        no_repeat_ngram: n > 1 forbids a completion to repeat one of its own n-grams of
            tokens (the prompt's are not counted, so copying from it stays free); 0: off.
            It changes which token is picked, not the recorded log pi.
    """

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = (ACTION_CLOSE,)
    seed: int | None = None
    no_repeat_ngram: int = 0

    def __post_init__(self) -> None:
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            raise ValueError(f"Expect no_repeat_ngram 0 (off) or >= 2, actually: "
                             f"{self.no_repeat_ngram}")  # fmt: skip
        if self.max_new_tokens < 1:
            raise ValueError(f"Expect max_new_tokens >= 1, actually: {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"Expect temperature >= 0, actually: {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Expect top_p in (0, 1], actually: {self.top_p}")


@dataclass
class Prompt:
    """One decision to make.

    Attributes:
        messages: the chat so far (system, user, assistant, ..., user).
        token_ids: the context as token ids, for backends with a tokenizer (None: render
            ``messages`` with the chat template).
        available_actions: ``info["available_actions"]`` of the current step.
        expert_action: the env oracle's action from this state, computed where the env runs,
            for policies that declare ``needs_expert = True`` (else None).
        observation: the raw observation (for policies that act on it, not on ``messages``).
        info: the raw step info (the ``StepInfo`` TypedDict).
    """

    messages: list[Message]
    token_ids: list[int] | None = None
    available_actions: list[str] = field(default_factory=list)
    expert_action: str | None = None
    observation: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """One generated reply.

    Attributes:
        text: the decoded reply.
        token_ids: the sampled ids, exactly as sampled (empty for text-only backends).
        logprobs: log pi(token) of each sampled id under the model (temperature 1), aligned
            with ``token_ids``; text-only backends fill what the server reports.
        finish_reason: ``stop`` (an end-of-turn token or a stop string) or ``length``.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "stop"


@runtime_checkable
class Policy(Protocol):
    """Anything that turns a batch of prompts into completions."""

    tokenizer: Any | None
    """A Hugging Face tokenizer when the policy works on token ids, else None."""

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """Return one completion per prompt, in order."""
        ...
