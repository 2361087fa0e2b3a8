"""EarlyExp/Bargain-v0: one side of a two-party price negotiation, against a scripted opponent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from earlyexp.envs.bargain.game import (
    GRAMMAR,
    ROLES,
    ROUNDS,
    Bargain,
    BargainTask,
    available_actions,
    evaluate,
    generate_task,
    instruction,
    news,
    observation,
    other,
)
from earlyexp.envs.bargain.negotiator import scripted_action
from earlyexp.envs.core.base import Evaluation, Outcome, TextEnv, clip, fit_lines

FAMILY = "Bargain-v0"
"""Task distribution name, shared with the PettingZoo ``bargain_v0``: the same panels."""


def check_role(role: Any) -> str:
    """Return ``role`` if it names a side, else raise a ValueError listing them."""
    if role not in ROLES:
        raise ValueError(f"Expect role in {ROLES}, actually: {role!r}")
    return str(role)


def reply(game: Bargain, role: str) -> Bargain:
    """The game after the scripted ``role`` answers, if the negotiation is open and its turn."""
    if game.turn != role:
        return game
    new, why = game.play(role, scripted_action(game, role))
    return new if why is None else game.forfeit(role, why)


class BargainEnv(TextEnv[BargainTask]):
    """Bargain over the price of a WebShop product, as the buyer or the seller.

    ## Description
    A seller lists a product from WebShop-v0's catalog (title, type, attributes, the options on
    sale and a list price). The buyer privately holds a budget and the attributes it needs;
    the seller privately holds its cost, below the budget. The agent plays one side
    (``role``, default ``buyer``); the other side is the scripted negotiator of
    :mod:`earlyexp.envs.bargain.negotiator` (a Boulware concession with reciprocity that
    never goes beyond its own limit). Moves alternate, the buyer first; the list price is the
    seller's opening ask. ``info["task"]`` holds the listing, the agent's own private value
    and how it is scored; the opponent's value is never shown. Both sides of the same game,
    with two agents, are the PettingZoo env :mod:`earlyexp.envs.bargain_v0`.

    ## Observation
    The news since the agent's last move (its own move echoed, then the opponent's answer:
    ``You offered $30.00. The seller offered $41.20.``), the offer on the table, every offer
    of both sides so far and the moves left, e.g.::

        You offered $30.00. The seller offered $41.20.
        Offer on the table: $41.20 from the seller.
        Your offers: $30.00. The seller's offers: $59.99, $41.20.
        Moves left: you 9, the seller 9.

    After an invalid action the first line is the error instead. ``summarize`` (the IWM
    next-state text, at most 400 characters) keeps the first line (cut at 200), the table and
    the moves left, then as much of the offers line as fits.

    ## Action
    Generated from one table (``action_help()``): ``offer[<price>]`` (dollars, ``offer[42.50]``,
    ``offer[$40]``; at most the list price), ``accept`` (the opponent's offer on the table),
    ``walk away``, ``say[<message>]`` (1 to 200 characters; the opponent reads it, the scripted
    one ignores it). Names are case-insensitive. ``info["available_actions"]`` lists concrete
    ones: an offer halfway between the agent's last offer and the table, its last offer again,
    ``accept`` when the opponent's offer is on the table, ``walk away`` and a message. Anything
    else is invalid, and so is an *out-of-turn* ``accept`` while the offer on the table is the
    agent's own: the state is unchanged, the opponent waits, ``info["action_valid"]`` is False
    and the step counts toward the budget.

    ## Reward
    Sparse: 0 until the end, then the agent's normalized surplus floored at 0: a deal at price
    p gives the buyer (budget - p) / budget and the seller (p - cost) / (list - cost); no deal
    gives 0. Rubric: ``reach a deal``, ``pay at most your budget`` (seller: ``sell at or above
    your cost``; met when no deal was made), ``get at least a quarter of the gains from
    trade`` (the share of budget - cost the deal gives the agent). Success (not score == 1,
    which no deal reaches) is all three. ``score_details``: ``role``, ``end`` (``deal``,
    ``walked``, ``expired``), ``price``, ``surplus`` (unfloored), ``moves``.

    ## Episode end
    Terminated by a deal (``accept`` by either side) or ``walk away`` by either side.
    Truncated when the agent has taken 10 steps (valid or not) without either; after 10 valid
    moves of each side the negotiation has expired (the scripted opponent, on the last move of
    the game, accepts or walks away).

    ## Splits
    ``train``: a procedural stream over products of the 166 in-distribution WebShop types
    (listed at $10 or more), the seller's cost 40-65% of the list price, the gains from trade
    (budget - cost) 10-30% of it. ``test``: 500 fixed tasks from the same distribution.
    ``ood``: 500 fixed tasks over the 69 held-out product types, with wider gaps: cost
    25-45% and gains from trade 35-55% of the list price (budget at most 97% of it).

    ## Arguments
    ``gym.make("EarlyExp/Bargain-v0", role="buyer", max_steps=None)``; ``role="seller"`` plays
    the other side; ``max_steps`` sets the moves per side (default 10), which is also the
    agent's step budget. ``reset(options={"split": "test", "task": 3})`` picks panel task 3.

    ## Version history
    * v0: initial version.
    """

    grammar = GRAMMAR

    def __init__(
        self, role: str = "buyer", render_mode: str | None = None, max_steps: int | None = None
    ) -> None:
        self.role = check_role(role)
        super().__init__(render_mode=render_mode, max_steps=max_steps)

    @property
    def family(self) -> str:
        """Task distribution name (the role does not change the tasks)."""
        return FAMILY

    def make_task(self, rng: np.random.Generator, split: str) -> BargainTask:
        """See :func:`earlyexp.envs.bargain.game.generate_task`."""
        return generate_task(rng, split)

    def _budget(self, task: BargainTask) -> int:
        return ROUNDS

    def _begin(self, task: BargainTask) -> str:
        self.state = reply(Bargain(task, self.max_steps), other(self.role))
        return news(self.state, self.role)

    def _apply(self, action: str) -> Outcome:
        game, why = self.state.play(self.role, action)
        if why is not None:
            return Outcome(False, why)
        self.state = reply(game, other(self.role))
        return Outcome(True, news(self.state, self.role), self.state.status in ("deal", "walked"))

    def _observation(self, feedback: str) -> str:
        return observation(self.state, self.role, feedback)

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """The first line (cut at 200), the table, the moves left, then the offers as they fit."""
        lines = obs.split("\n")
        if len(lines) < 3:
            return super().summarize(obs, info)
        head, table, offers, *rest = lines
        return fit_lines([clip(head, 200), table, *rest, offers], self.SUMMARY_CHARS)

    def _evaluate(self) -> Evaluation:
        return evaluate(self.state, self.role)

    def instruction(self) -> str:
        """The listing, the agent's private value, how it is scored."""
        assert self.task is not None
        return instruction(self.task, self.role, self.max_steps)

    def available_actions(self) -> list[str]:
        """Concrete valid actions now (see the env card)."""
        return available_actions(self.state, self.role)

    def expert_action(self) -> str:
        """The scripted negotiator's move for the agent's side (it knows only that side's value)."""
        return scripted_action(self.state, self.role)

    def _get_state(self) -> Any:
        return self.state  # an immutable Bargain: no copy needed

    def _set_state(self, state: Any) -> None:
        self.state = state
