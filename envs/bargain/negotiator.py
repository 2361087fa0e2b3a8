"""Scripted negotiators for both sides: the Bargain expert, opponent and demonstrator.

A time-dependent *Boulware* concession (Faratin, Sierra and Jennings, 1998): at its k-th of R
moves a side concedes the share ``f = (k / (R - 1)) ** beta`` of the way from its opening price
to its reserve, slowly at first and fast near the deadline, with ``beta > 1``. Three rules make
it hard to exploit:

- **Limits.** The reserve lies a margin inside the private limit: it never offers or accepts a
  price beyond its budget (or below its cost), and never names the limit itself.
- **Reciprocity.** Its concession so far is at most the other side's concession so far (in
  dollars, from the other's first offer: the list price does not count) plus a goodwill share
  of its own range. A side that stonewalls, or drops its price once and then holds, gets a
  small concession, then nothing; a concession taken back is taken back here too.
- **Acceptance.** It accepts an offer only when it is at least as good as the offer it would
  make now (AC-next), on the last move of the game too (then it walks away otherwise): a side
  that holds out for the deadline meets the same reciprocity.

The opening span and ``beta`` of a side vary from task to task (drawn from a hash of the task
and the role, the same in every process), so its offers do not spell out its limit.
Everything is a pure function of the game, so experts need no state of their own.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from earlyexp.envs.bargain.game import Bargain, BargainTask, dollars, other

BETA = (1.2, 1.8)
"""Range of the Boulware exponent (1: linear concession; larger: firmer until late)."""
SPAN = (0.2, 0.3)
"""A side's range, from its opening to its limit, as a share of the list price: the buyer opens
that far below its budget, the seller's first counter-offer is that far above its cost."""
GOODWILL = 0.4
"""Share of its own range a side may concede beyond the other side's concession."""
MARGIN = 0.02
"""Share of its own range a side keeps back from its limit (at least one cent)."""


@dataclass(frozen=True)
class Stance:
    """A side's plan for one task: where it opens, how far it may go, how firm it is."""

    opening: int
    reserve: int
    beta: float

    @property
    def span(self) -> int:
        """Cents from the opening to the reserve (positive for both sides)."""
        return abs(self.reserve - self.opening)


def _unit(task: BargainTask, role: str, what: str) -> float:
    """A number in [0, 1) fixed by the task, the role and ``what`` (same in every process)."""
    key = f"bargain/{what}/{role}/{task.asin}/{task.budget_cents}/{task.cost_cents}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") / 2**64


def stance(task: BargainTask, role: str) -> Stance:
    """The opening price, the reserve and the firmness of ``role`` on ``task``."""
    beta = BETA[0] + (BETA[1] - BETA[0]) * _unit(task, role, "beta")
    reach = round((SPAN[0] + (SPAN[1] - SPAN[0]) * _unit(task, role, "span")) * task.list_cents)
    if role == "seller":
        opening = min(task.list_cents, task.cost_cents + reach)
        margin = max(1, round(MARGIN * (opening - task.cost_cents)))
        return Stance(opening, min(task.cost_cents + margin, opening), beta)
    opening = max(round(0.05 * task.list_cents), task.budget_cents - reach)
    margin = max(1, round(MARGIN * (task.budget_cents - opening)))
    return Stance(opening, max(opening, task.budget_cents - margin), beta)


def planned_offer(game: Bargain, role: str) -> int:
    """The price of ``role``'s next move: its Boulware target, capped by reciprocity."""
    s = stance(game.task, role)
    k, last = game.moves_of(role), max(1, game.rounds - 1)
    conceded = (min(k, last) / last) ** s.beta * s.span
    theirs = game.offers(other(role))[1 if role == "buyer" else 0 :]  # not the list price
    their_concession = abs(theirs[-1] - theirs[0]) if len(theirs) > 1 else 0
    conceded = min(conceded, their_concession + GOODWILL * s.span)
    if role == "buyer":
        return min(s.reserve, s.opening + math.floor(conceded))
    return max(s.reserve, s.opening - math.floor(conceded))


def scripted_action(game: Bargain, role: str) -> str:
    """The scripted negotiator's next action for ``role`` (its planned move even off turn).

    Accept the offer on the table when it is at least as good as the planned offer, else
    offer that; on the last move of the game (nobody would answer an offer) walk away.
    """
    side, table = game.table
    plan = planned_offer(game, role)
    if side != role and (table <= plan if role == "buyer" else table >= plan):
        return "accept"
    if len(game.moves) >= 2 * game.rounds - 1:
        return "walk away"
    return f"offer[{dollars(plan)[1:]}]"
