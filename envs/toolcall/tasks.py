"""ToolCall tasks: drafts from the domain templates, checked by running the expert's plan.

:func:`generate_task` draws a domain, a template and a variant for the split, then runs the
plan through the same parser, signature check and simulator the agent uses. The run gives
the expected final state (what the task is scored against) and fails loudly if any planned
call is invalid, so every task is solvable by construction.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from earlyexp.envs.toolcall.calls import (
    BoundCall,
    CallError,
    Param,
    ToolError,
    ToolSpec,
    ToolTable,
    parse_calls,
)
from earlyexp.envs.toolcall.domain import Domain, Turn, pick
from earlyexp.envs.toolcall.domains import bank, filesystem, travel

DOMAINS: dict[str, Domain] = {d.name: d for d in (filesystem.DOMAIN, bank.DOMAIN, travel.DOMAIN)}
OOD_CATEGORIES = ("long_context", "missing_function", "missing_parameter")
SPARE_STEPS = 6
REFUSAL_WORDS = (
    "cannot", "can't", "can not", "unable", "not able", "not possible", "no function",
    "not available", "not supported", "don't have", "do not have",
)  # fmt: skip
_TOKEN = re.compile(r"[a-z0-9]+(?:[.:/_-][a-z0-9]+)*")


def _respond(state: dict[str, Any], message: str) -> str:
    return f"You replied: {message}"


RESPOND = ToolSpec(
    "respond",
    "Reply to the user in text: give answers, ask for missing information, or say that the "
    "request cannot be done. Ends your turn; must be the last call of an action.",
    (Param("message", "str", "what to tell the user"),),
    _respond,
)


@dataclass(frozen=True)
class ToolTask:
    """A conversation with a simulator: initial state, user turns, hidden functions, target.

    ``changes`` lists the scored keys the task must change, with their expected final value
    (None: must no longer exist); every other scored key must keep its initial value.
    """

    domain: str
    template: str
    category: str
    initial: dict[str, Any]
    turns: tuple[Turn, ...]
    hidden: tuple[str, ...]
    changes: tuple[tuple[str, Any], ...]
    budget: int

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes."""
        return asdict(self)


def table_for(domain: Domain, hidden: tuple[str, ...]) -> ToolTable:
    """The episode's function table: the domain's functions minus the hidden ones, plus respond."""
    return ToolTable(tuple(f for f in domain.functions if f.name not in hidden) + (RESPOND,))


def bind_all(table: ToolTable, text: str) -> list[BoundCall]:
    """Parse and check an action; raise CallError (respond only as the last call)."""
    bound = [table.bind(c) for c in parse_calls(text)]
    if any(b.spec.name == "respond" for b in bound[:-1]):
        raise CallError("respond() must be the last call of an action.")
    return bound


def clone(value: Any) -> Any:
    """Copy JSON-like data (dicts, lists, scalars): several times faster than deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def run_calls(state: dict[str, Any], bound: list[BoundCall]) -> tuple[dict[str, Any], list[str]]:
    """Run calls on a copy of ``state``; return (new state, outputs) or raise ToolError.

    The caller keeps ``state`` when a call fails: an action is applied whole or not at all.
    """
    work = clone(state)
    outputs = []
    for i, b in enumerate(bound, 1):
        try:
            outputs.append(b.spec.fn(work, **b.kwargs))
        except ToolError as err:
            raise ToolError(
                f"Call {i}, {b.canonical()}: {err} No call of this action was applied."
            ) from None
    return work, outputs


def tokens(text: str) -> list[str]:
    """Lower-case word/number tokens, with ``$`` and thousands commas dropped."""
    return _TOKEN.findall(text.lower().replace("$", "").replace(",", ""))


def mentions(message: str, answer: str) -> bool:
    """True when the tokens of ``answer`` appear, contiguous, in ``message``."""
    m, a = tokens(message), tokens(answer)
    return bool(a) and any(m[i : i + len(a)] == a for i in range(len(m) - len(a) + 1))


def refuses(message: str) -> bool:
    """True when ``message`` says the request cannot be done."""
    low = message.lower().replace("\u2019", "'")
    return any(w in low for w in REFUSAL_WORDS)


def _finalize(domain: Domain, template: str, category: str, draft) -> ToolTask:
    table = table_for(domain, draft.hidden)
    state, turns = clone(draft.state), []
    for turn in draft.turns:
        plan = []
        for step in turn.plan:
            bound = bind_all(table, step)  # a broken plan is a bug: let it raise
            state, _ = run_calls(state, bound)
            plan.append("; ".join(b.canonical() for b in bound))
        turns.append(
            Turn(turn.user, tuple(plan), turn.answers, turn.ask, turn.ask_label, turn.refuse)
        )
    before, after = domain.flatten(draft.state), domain.flatten(state)
    changes = tuple(
        (k, after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)
    )
    budget = sum(len(t.plan) for t in turns) + SPARE_STEPS
    return ToolTask(
        domain.name, template, category, draft.state, tuple(turns), draft.hidden, changes, budget
    )


def generate_task(rng: np.random.Generator, split: str) -> ToolTask:
    """Draw a task: the base variant for train/test; an OOD category (uniform) for ood."""
    category = "base" if split != "ood" else str(pick(rng, OOD_CATEGORIES))
    options = [
        (d.name, name)
        for d in DOMAINS.values()
        for name, entry in d.templates.items()
        if category in entry.variants
    ]
    domain_name = pick(rng, sorted({d for d, _ in options}))
    template = pick(rng, [t for d, t in options if d == domain_name])
    domain = DOMAINS[domain_name]
    draft = domain.templates[template].make(rng, category)
    return _finalize(domain, template, category, draft)
