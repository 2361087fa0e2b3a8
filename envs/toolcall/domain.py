"""What a simulated API domain provides, and the task drafts its templates return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earlyexp.envs.toolcall.calls import ToolSpec

VARIANTS = ("base", "long_context", "missing_function", "missing_parameter")


@dataclass(frozen=True)
class Turn:
    """One user message and what answering it takes.

    Attributes:
        user: what the user says.
        plan: the expert's actions for this turn, one call each; the last is ``respond(...)``.
        answers: strings a ``respond`` message of this turn must contain.
        ask: for a request missing a parameter: keywords, one of which the ``respond``
            message must contain (the question), with no state change before it.
        ask_label: what is missing ("amount"), for the rubric.
        refuse: the request cannot be done with the available functions: the ``respond``
            message must say so (and nothing may change).
    """

    user: str
    plan: tuple[str, ...]
    answers: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()
    ask_label: str = ""
    refuse: bool = False


@dataclass
class Draft:
    """A template's output: the initial simulator state, the turns, the hidden functions."""

    state: dict[str, Any]
    turns: list[Turn]
    hidden: tuple[str, ...] = ()


Template = Callable[[np.random.Generator, str], Draft]
"""``template(rng, variant) -> Draft`` for a variant in the template's ``variants``."""


@dataclass(frozen=True)
class TemplateEntry:
    """A task template and the variants it can produce."""

    make: Template
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    """A stateful API simulator: its functions, how its state is scored, its task templates.

    Attributes:
        name: ``filesystem``, ``bank`` or ``travel``.
        intro: one line telling the agent what the API is.
        functions: the function table (validation, docs and implementation).
        flatten: state -> {key: value}; the scored view of the state (two states that
            flatten equal count as the same outcome).
        describe: (key, value) -> a rubric line ("file /docs/a.txt exists").
        templates: task templates by name.
    """

    name: str
    intro: str
    functions: tuple[ToolSpec, ...]
    flatten: Callable[[dict[str, Any]], dict[str, Any]]
    describe: Callable[[str, Any], str]
    templates: dict[str, TemplateEntry] = field(default_factory=dict)


def pick(rng: np.random.Generator, items: list[Any] | tuple[Any, ...]) -> Any:
    """A uniformly drawn element of ``items``."""
    return items[int(rng.integers(len(items)))]


def respond(message: str) -> str:
    """The expert's reply call."""
    return f"respond(message={message!r})"


REFUSAL = "I'm sorry, I can't do that: none of the available functions can {what}."


def ask_first(
    state: dict[str, Any],
    request: str,
    question: str,
    keywords: tuple[str, ...],
    label: str,
    answer: str,
    plan: tuple[str, ...],
) -> Draft:
    """A missing-parameter task: the expert asks, the user answers, then ``plan`` runs.

    ``request`` lacks ``label``; the expert's ``question`` (the reply must contain one of
    ``keywords``) comes first, the user then gives ``answer``.
    """
    ask = Turn(request, (respond(question),), ask=keywords, ask_label=label)
    return Draft(state, [ask, Turn(answer, plan)])
