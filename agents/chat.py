"""Chat conversations as token ids, built segment by segment, with a policy-token mask.

The rollout engine and the SFT data path both use :class:`ChatEncoder`, so a conversation is
turned into ids the same way whether it comes from a JSONL file or from live play. Each
message is encoded *once*, as its own segment, and segments are concatenated; the
assistant segments of a rollout are the sampled ids themselves. Nothing is ever decoded and
re-tokenized between turns.

Segment texts come from the tokenizer's own chat template by prefix differences::

    system segment    render([system])
    user segment      render([system, user], add_generation_prompt=True) - render([system])
    assistant         content, then the closing text render([.., assistant]) - content

Trainable tokens (mask 1) are an assistant message's content and its closing text up to
and including the first end-of-turn (eos) token; everything else is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from earlyexp.agents.prompting import Message

DEFAULT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant: {% endif %}"
)
"""Chat template given to tokenizers that have none (the README documents it)."""

_PROBE = "0"


@dataclass(frozen=True)
class Segment:
    """A run of token ids of one role; ``policy`` marks tokens the policy produced/trains on."""

    role: str
    ids: list[int]
    policy: bool


class ChatEncoder:
    """Encode chat messages into token ids segment by segment (see the module docstring)."""

    def __init__(self, tokenizer: Any) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = DEFAULT_TEMPLATE
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids(tokenizer)
        user = self._render([_msg("system", _PROBE), _msg("user", _PROBE)], True)
        full = self._render(
            [_msg("system", _PROBE), _msg("user", _PROBE), _msg("assistant", _PROBE)], False
        )
        if not full.startswith(user + _PROBE):
            raise ValueError(
                "Expect a chat template whose assistant turn starts with its content, "
                f"actually it renders {full[len(user) :]!r}"
            )
        closing = full[len(user) + len(_PROBE) :]
        self.closing_ids = self._ids(closing)
        self.closing_trainable = _through_eos(self.closing_ids, self.eos_ids)

    def _render(self, messages: list[Message], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation
        )

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def system(self, content: str) -> Segment:
        """The system segment (includes any BOS the template writes)."""
        return Segment("system", self._ids(self._render([_msg("system", content)], False)), False)

    def user(self, system: str, content: str) -> Segment:
        """A user turn, including the generation prompt that opens the assistant reply."""
        head = self._render([_msg("system", system)], False)
        both = self._render([_msg("system", system), _msg("user", content)], True)
        if not both.startswith(head):
            raise ValueError("Expect the chat template to render the system turn as a prefix")
        return Segment("user", self._ids(both[len(head) :]), False)

    def assistant(self, content: str) -> list[Segment]:
        """An assistant turn from text (expert data): content + closing, trainable through eos."""
        ids = self._ids(content) + self.closing_trainable
        rest = self.closing_ids[len(self.closing_trainable) :]
        return [Segment("assistant", ids, True)] + (
            [Segment("template", rest, False)] if rest else []
        )

    def closing_after(self, sampled: Sequence[int]) -> Segment | None:
        """Template ids that close a sampled reply (None when the sample closed it itself)."""
        if sampled and sampled[-1] in self.eos_ids:
            rest = self.closing_ids[len(self.closing_trainable) :]
        else:
            rest = self.closing_ids
        return Segment("template", list(rest), False) if rest else None

    def encode(
        self, messages: Sequence[Message], train_on: str = "last"
    ) -> tuple[list[int], list[int]]:
        """Return (ids, mask) of a whole conversation.

        Args:
            messages: system first, then alternating user / assistant.
            train_on: ``last`` (mask only the final assistant message: one (s, a) pair per
                example) or ``all`` (every assistant message).
        """
        if train_on not in ("last", "all"):
            raise ValueError(f"Expect train_on in ('last', 'all'), actually: {train_on!r}")
        if not messages or messages[0]["role"] != "system":
            raise ValueError("Expect the conversation to start with a system message")
        system = messages[0]["content"]
        segments = [self.system(system)]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        for i, m in enumerate(messages[1:], start=1):
            if m["role"] == "user":
                segments.append(self.user(system, m["content"]))
            elif m["role"] == "assistant":
                for seg in self.assistant(m["content"]):
                    keep = seg.policy and (train_on == "all" or i == last)
                    segments.append(Segment(seg.role, seg.ids, keep))
            else:
                raise ValueError(
                    f"Expect roles user/assistant after system, actually: {m['role']!r}"
                )
        return flatten(segments)


def flatten(segments: Sequence[Segment]) -> tuple[list[int], list[int]]:
    """Concatenate segments into (ids, mask); mask is 1 on policy tokens."""
    ids: list[int] = []
    mask: list[int] = []
    for seg in segments:
        ids += seg.ids
        mask += [int(seg.policy)] * len(seg.ids)
    return ids, mask


def eos_ids(tokenizer: Any) -> set[int]:
    """The end-of-turn ids of ``tokenizer`` (its eos token, and ``<|im_end|>``/``<|eot_id|>``)."""
    found = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for name in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            found.add(tid)
    return found


def _through_eos(ids: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1]
    return list(ids)


def _msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}
