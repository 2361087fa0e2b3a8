"""EarlyExp/ToolCall-v0: multi-turn function calling against stateful API simulators."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec
from earlyexp.envs.core.base import Evaluation, Outcome, TextEnv, clip, fit_lines
from earlyexp.envs.core.types import RubricItem
from earlyexp.envs.toolcall.calls import CallError, ToolError, ToolTable
from earlyexp.envs.toolcall.domain import Turn
from earlyexp.envs.toolcall.tasks import (
    DOMAINS,
    ToolTask,
    bind_all,
    clone,
    generate_task,
    mentions,
    refuses,
    run_calls,
    table_for,
)

CALL_EXAMPLES = ('ls(path="/home/user")', 'mkdir(path="/docs"); cd(path="/docs")',
                 '[get_balance(account="checking"), list_accounts()]',
                 'respond(message="Your balance is $120.00.")')  # fmt: skip
GRAMMAR = ActionGrammar(
    (
        ActionSpec(
            "calls",
            (),
            "one or more function calls in Python syntax, separated by ';' or new lines, or a "
            "list [f(...), g(...)]; literal arguments only; respond(message=...) replies to the "
            "user and ends your turn",
            CALL_EXAMPLES,
        ),
    )
)
"""Describes the action form for ``action_space`` examples; parsing is :mod:`.calls`."""
USER_REPLIED, CONVERSATION_OVER = "The user replied.", "The conversation is over."
"""The last feedback line of an action whose ``respond`` ended a turn."""


def _call_result(block: list[str], limit: int) -> str:
    """``> call`` and the whole output lines that fit in ``limit``, then how many are left.

    When no output line fits whole, the first one is cut to the room left.
    """
    if sum(len(line) + 1 for line in block) - 1 <= limit:
        return "\n".join(block)
    room = limit - len(f"\n... (+{len(block)} lines)")
    shown = [clip(block[0], room)]
    used = len(shown[0])
    for line in block[1:]:
        if used + 1 + len(line) > room:
            if len(shown) == 1 and room - used > 10:
                shown.append(clip(line, room - used - 1))
            break
        shown.append(line)
        used += len(line) + 1
    return "\n".join([*shown, f"... (+{len(block) - len(shown)} lines)"])


class ToolCallEnv(TextEnv[ToolTask]):
    """Multi-turn function calling against simulated APIs, in the style of BFCL v3.

    ## Description
    Three stateful simulators: a file system (``ls``, ``cd``, ``mkdir``, ``write_file``,
    ``cat``, ``mv``, ``cp``, ``rm``, ``find``, ``wc``), a bank and brokerage (``get_balance``,
    ``transfer``, ``pay_bill``, ``list_transactions``, ``buy_stock``, ...) and a travel agent
    with a calendar (``search_flights``, ``book_flight``, ``cancel_booking``,
    ``create_event``, ...). A user makes a request, sometimes in two turns (a follow-up once
    the first request is done). The agent calls functions and replies with
    ``respond(message=...)``, which ends its turn: the user then says the next thing, or the
    conversation ends. Every function's documentation in the prompt (``info["task"]``) is
    generated from the same table that checks the calls.

    ## Observation
    The result of each call of the last action (``> call`` then its output), or the error
    that made the action invalid, then ``[Turn t/T] User: ...``: the current request (after a
    ``respond`` that ends a turn, the user's next message). ``summarize`` (the IWM next-state
    text, at most 400 characters) keeps each call with the first lines of its result, the
    end-of-turn line and, when the user replied, the user's next message; an observation
    without call results (the opening request, an error) is kept as is (cut at 400).

    ## Action
    One or more calls in Python syntax: ``mkdir(path="/docs"); cd(path="/docs")``, the same on
    two lines, or a list ``[mkdir(path="/docs"), cd(path="/docs")]``; positional arguments
    follow the documented order. The text is parsed with ``ast`` and never evaluated: only
    calls of documented function names with literal arguments (strings, numbers, booleans,
    None, lists/dicts of those) are accepted; attribute access (``os.system``), names,
    nested calls, lambdas, comprehensions, f-strings and ``*``/``**`` unpacking are rejected,
    and so are strings that are not valid Unicode text (a lone surrogate, U+D800 to U+DFFF,
    raw or as an escape).
    Each call is checked against its signature (no such function, missing required argument
    'path', argument 'amount' must be float, unexpected argument). An action is applied whole
    or not at all: if a call is malformed or fails in the simulator ("No such file"), nothing
    changes, the error is the observation and ``info["action_valid"]`` is False. Bare text is
    not a reply: use ``respond(message="...")`` (last call of an action).

    ## Reward
    Sparse; at the end the fraction of rubric items met, ``success`` when all are. Items: one
    per scored piece of simulator state the task changes (a file, a balance, a transaction,
    a booking, an event: it must end with the expected value), "no other changes", one per
    required answer (a ``respond`` message of that turn must contain it), and in OOD tasks
    the right move: asking for the missing parameter before any state-changing call, or
    saying the request cannot be done. Answers match on word/number tokens (``$1,234.50``
    matches ``1234.50``, not ``11234.50``); a question matches when the reply names the
    missing thing ("how much" / "amount", "date" / "when", ...); a refusal when it says
    "cannot", "unable", "not available" or the like. ``score_details``: ``domain``, ``template``,
    ``category``, ``turn``, ``replies``.

    ## Episode end
    Terminated by the ``respond`` call of the last turn. Truncated after the expert's number
    of actions plus 6.

    ## Splits
    ``train``: a procedural stream over 15 templates (5 per domain). ``test``: 500 fixed tasks
    from the same distribution. ``ood``: 500 fixed tasks, one third each of BFCL's categories:
    long context (an archive of 560 look-alike files, 250-400 transactions, 80-150 flights
    on one route: large tool outputs full of distractors), missing function (the function
    the request needs is absent from the table; the right move is to say so and change
    nothing) and missing parameter (the request omits the amount / date / time / content;
    the right move is to ask; the user gives it in the next turn).

    ## Arguments
    ``gym.make("EarlyExp/ToolCall-v0", max_steps=None)``.

    ## Version history
    * v0: initial version.
    * v0 (same tasks and observations): ``summarize``, the next-state text of IWM.
    * v0 (same tasks and observations): a string argument holding a lone surrogate is an
      invalid action (it made observations that could not be encoded as UTF-8).
    """

    grammar = GRAMMAR

    def __init__(self, render_mode: str | None = None, max_steps: int | None = None) -> None:
        super().__init__(render_mode=render_mode, max_steps=max_steps)
        self._table: ToolTable | None = None
        self._table_key: tuple[str, tuple[str, ...]] | None = None

    @property
    def family(self) -> str:
        """Task distribution name."""
        return "ToolCall-v0"

    def make_task(self, rng: np.random.Generator, split: str) -> ToolTask:
        """See :func:`earlyexp.envs.toolcall.tasks.generate_task`."""
        return generate_task(rng, split)

    def _budget(self, task: ToolTask) -> int:
        return task.budget

    @property
    def table(self) -> ToolTable:
        """This episode's function table."""
        assert self.task is not None
        key = (self.task.domain, self.task.hidden)
        if self._table is None or self._table_key != key:
            self._table = table_for(DOMAINS[self.task.domain], self.task.hidden)
            self._table_key = key
        return self._table

    def _begin(self, task: ToolTask) -> str:
        self.state = {"sim": task.initial, "turn": 0, "replies": [], "calls": []}
        return "Waiting for your calls."

    def instruction(self) -> str:
        """The domain, how to call, the generated function docs and the first request."""
        assert self.task is not None
        domain = DOMAINS[self.task.domain]
        return (
            f"{domain.intro} Act with function calls in Python syntax, e.g. "
            f'{CALL_EXAMPLES[1]}; reply to the user with respond(message="...").\n'
            f"Functions:\n{self.table.describe()}\nUser: {self.task.turns[0].user}"
        )

    def action_help(self) -> str:
        """The episode's function docs (from the validating table), or the action form."""
        return self.table.describe() if self.task is not None else self.grammar.describe()

    def available_actions(self) -> list[str]:
        """One call template per available function."""
        return self.table.templates()

    def _apply(self, action: str) -> Outcome:
        try:
            bound = bind_all(self.table, action)
            sim, outputs = run_calls(self.state["sim"], bound)
        except (CallError, ToolError) as err:
            return Outcome(False, str(err))
        turn = self.state["turn"]
        calls = [[turn, b.canonical(), b.spec.mutates] for b in bound]
        self.state = {**self.state, "sim": sim, "calls": self.state["calls"] + calls}
        lines = [f"> {b.canonical()}\n{out}" for b, out in zip(bound, outputs, strict=True)]
        if bound[-1].spec.name != "respond":
            return Outcome(True, "\n".join(lines))
        assert self.task is not None
        self.state["replies"] = self.state["replies"] + [[turn, bound[-1].kwargs["message"]]]
        if turn + 1 >= len(self.task.turns):
            return Outcome(True, "\n".join([*lines, CONVERSATION_OVER]), terminated=True)
        self.state["turn"] = turn + 1
        return Outcome(True, "\n".join([*lines, USER_REPLIED]))

    def _observation(self, feedback: str) -> str:
        assert self.task is not None
        t = self.state["turn"]
        return f"{feedback}\n[Turn {t + 1}/{len(self.task.turns)}] User: {self.task.turns[t].user}"

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """The calls and their results (long outputs cut to their first lines), not the context.

        The ``[Turn t/T] User:`` line is kept only after ``The user replied.`` (then it is the
        news); an observation without call results is short and kept whole (cut to fit).
        """
        body, sep, turn = obs.rpartition("\n[Turn ")
        lines = body.split("\n")
        if not sep or not lines[0].startswith("> "):
            return super().summarize(obs, info)
        tail = [lines.pop()] if lines[-1] in (USER_REPLIED, CONVERSATION_OVER) else []
        if tail == [USER_REPLIED]:
            tail.append(clip(f"[Turn {turn}", 200))
        blocks: list[list[str]] = []
        for line in lines:
            if line.startswith("> ") or not blocks:
                blocks.append([])
            blocks[-1].append(line)
        sizes = [sum(len(line) + 1 for line in b) for b in blocks]
        fair = (self.SUMMARY_CHARS - sum(len(line) + 1 for line in tail)) // len(blocks)
        big = [n for n in sizes if n > fair]  # the long outputs share what short ones leave
        limit = fair + sum(fair - n for n in sizes if n <= fair) // max(1, len(big)) - 1
        kept = [_call_result(b, max(40, limit)) for b in blocks]
        return fit_lines([*kept, *tail], self.SUMMARY_CHARS)

    def _evaluate(self) -> Evaluation:
        assert self.task is not None
        task, domain = self.task, DOMAINS[self.task.domain]
        final, initial = domain.flatten(self.state["sim"]), domain.flatten(task.initial)
        rubric: list[RubricItem] = [
            {"criterion": f"state: {domain.describe(k, v)}", "met": final.get(k) == v}
            for k, v in task.changes
        ]
        changed = {k for k, _ in task.changes}
        others = (set(final) | set(initial)) - changed
        rubric.append(
            {
                "criterion": "no other changes",
                "met": all(final.get(k) == initial.get(k) for k in others),
            }
        )
        for t, turn in enumerate(task.turns):
            rubric += self._turn_items(t, turn)
        met = sum(item["met"] for item in rubric)
        details = {
            "domain": task.domain, "template": task.template, "category": task.category,
            "turn": self.state["turn"], "replies": [m for _, m in self.state["replies"]],
        }  # fmt: skip
        return Evaluation(met / len(rubric), rubric, details, success=met == len(rubric))

    def _turn_items(self, t: int, turn: Turn) -> list[RubricItem]:
        replies = [m for i, m in self.state["replies"] if i == t]
        items: list[RubricItem] = [
            {
                "criterion": f"turn {t + 1}: told the user {a}",
                "met": any(mentions(m, a) for m in replies),
            }
            for a in turn.answers
        ]
        if turn.ask:
            acted = any(i == t and mutates for i, _, mutates in self.state["calls"])
            asked = any(any(w in m.lower() for w in turn.ask) for m in replies)
            items.append({"criterion": f"turn {t + 1}: asked for {turn.ask_label} before acting",
                          "met": asked and not acted})  # fmt: skip
        if turn.refuse:
            items.append({"criterion": f"turn {t + 1}: told the user the request cannot be done",
                          "met": any(refuses(m) for m in replies)})  # fmt: skip
        return items

    def expert_action(self) -> str:
        """The first step of this turn's plan not yet done (plans end with respond)."""
        assert self.task is not None
        t = self.state["turn"]
        done = {c for i, c, _ in self.state["calls"] if i == t}
        for step in self.task.turns[t].plan:
            if step.startswith("respond(") or step not in done:
                return step
        return self.task.turns[t].plan[-1]

    def _get_state(self) -> Any:
        return clone(self.state)

    def _set_state(self, state: Any) -> None:
        self.state = clone(state)

    def state_fingerprint(self) -> Any:
        """The whole episode state (simulator, turn, replies, calls)."""
        return (repr(self.state), self.task_index, self.split)
