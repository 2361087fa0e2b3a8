"""What an LLM agent is shown each turn, and how its action is read back.

A conversation for one episode is::

    system     intro, the task (``info["task"]``), the action grammar (``env.action_help()``)
               and the reply format
    user       the observation (plus the available actions, and a format error if any)
    assistant  <action>...</action>
    user       ...

Only the last ``window`` (user, assistant) pairs are kept before the current user turn.

**The action rule** (one rule, used by every method): the action is the text after the
*last* ``<action>`` tag of the completion, up to the next ``</action>`` or the end of the
completion (a server may cut the closing tag as a stop string), stripped of surrounding
whitespace. A completion with no ``<action>`` tag is a *parse failure*: the rollout engine
counts it, sends :data:`NO_ACTION` to the env (an invalid step that counts toward the budget)
and shows :data:`FORMAT_ERROR` to the agent in its next user turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ACTION_OPEN, ACTION_CLOSE = "<action>", "</action>"
NO_ACTION = ""
"""What the env receives after a parse failure (every env rejects it as invalid)."""
FORMAT_ERROR = (
    "Format error: your last reply had no <action> tag. "
    "Reply with exactly one action as <action>ACTION</action>."
)
INTRO = "You are an agent acting in a text environment. Reach the goal of the task."
REPLY_FORMAT = "Reply with one action in this form: <action>ACTION</action>"

Message = dict[str, str]


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are built.

    Attributes:
        window: previous (observation, action) turns kept in the conversation.
        max_observation_chars: observations longer than this are cut (with a marker).
        max_actions_shown: at most this many available actions are listed.
        show_available_actions: list ``info["available_actions"]`` in each user turn.
        action_help: describe the action grammar (``env.action_help()``) in the system prompt.
    """

    window: int = 2
    max_observation_chars: int = 2000
    max_actions_shown: int = 30
    show_available_actions: bool = True
    action_help: bool = True

    def __post_init__(self) -> None:
        if self.window < 0:
            raise ValueError(f"Expect window >= 0, actually: {self.window}")
        if self.max_observation_chars < 1:
            raise ValueError(
                f"Expect max_observation_chars >= 1, actually: {self.max_observation_chars}"
            )


def parse_action(completion: str) -> str | None:
    """Return the action of ``completion`` by the module's rule, or None (parse failure)."""
    start = completion.rfind(ACTION_OPEN)
    if start < 0:
        return None
    body = completion[start + len(ACTION_OPEN) :]
    end = body.find(ACTION_CLOSE)
    return (body if end < 0 else body[:end]).strip()


def format_action(action: str) -> str:
    """Return the assistant reply that carries ``action`` (the inverse of :func:`parse_action`)."""
    return f"{ACTION_OPEN}{action}{ACTION_CLOSE}"


@dataclass(frozen=True)
class ContextBlock:
    """Context a method adds to an episode's system prompt: a memory, a reflection, a guide.

    Attributes:
        kind: one of :data:`CONTEXT_TITLES` (``memory``, ``reflection``, ``guide``, ``note``).
        text: the block's text.
    """

    kind: str
    text: str

    def __post_init__(self) -> None:
        if self.kind not in CONTEXT_TITLES:
            raise ValueError(
                f"Expect a context kind in {sorted(CONTEXT_TITLES)}, actually: {self.kind!r}"
            )


CONTEXT_TITLES = {
    "memory": "What worked before",
    "reflection": "Reflection on your previous attempt",
    "guide": "Revise your previous attempt",
    "note": "Note",
}
"""The heading each kind of context block is rendered under."""


def system_prompt(
    task: str, grammar: str = "", context: Sequence[ContextBlock] = (), base: str | None = None
) -> str:
    """Return the system message: intro, task, action grammar, reply format, then context.

    Args:
        task: ``info["task"]``, the instruction.
        grammar: the env's action grammar (``env.unwrapped.action_help()``; ``""``: none).
        context: blocks rendered after the reply format, each under its heading.
        base: a system prompt that replaces the built one (the context still follows it).
    """
    if base is None:
        parts = [INTRO, f"Task: {task}"]
        if grammar and grammar not in task:  # some tasks already list their actions
            parts.append(f"Actions:\n{grammar}")
        parts.append(REPLY_FORMAT)
        base = "\n".join(parts)
    blocks = [f"{CONTEXT_TITLES[b.kind]}:\n{b.text}" for b in context]
    return "\n\n".join([base, *blocks])


def user_message(
    observation: str, info: dict[str, Any], config: PromptConfig, format_error: bool = False
) -> str:
    """Return one user turn: a format error (if any), the observation and the actions."""
    obs = observation
    if len(obs) > config.max_observation_chars:
        obs = obs[: config.max_observation_chars] + "\n[...observation cut...]"
    lines = [FORMAT_ERROR] if format_error else []
    lines.append(f"Observation:\n{obs}")
    actions = list(info.get("available_actions") or [])
    if config.show_available_actions and actions:
        shown = actions[: config.max_actions_shown]
        more = f" (+{len(actions) - len(shown)} more)" if len(actions) > len(shown) else ""
        lines.append("Available actions: " + ", ".join(shown) + more)
    return "\n".join(lines)


def observation_of(user: str) -> str:
    """The observation inside a user turn of :func:`user_message` (its inverse)."""
    head, start = "Observation:\n", user.find("Observation:\n")
    body = user[start + len(head) :] if start >= 0 else user
    end = body.rfind("\nAvailable actions: ")
    return body if end < 0 else body[:end]


def conversation(
    system: str, turns: Sequence[tuple[str, str]], current: str, window: int
) -> list[Message]:
    """Return the messages for one decision: system, the last ``window`` turns, ``current``.

    Args:
        system: the system message.
        turns: earlier (user text, assistant text) pairs, oldest first.
        current: the user text of this turn.
        window: how many of the latest ``turns`` to keep.
    """
    kept = list(turns)[-window:] if window > 0 else []
    messages: list[Message] = [{"role": "system", "content": system}]
    for user, assistant in kept:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": current})
    return messages
