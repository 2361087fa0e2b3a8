"""The bargaining game both Bargain views play: tasks, the action table, moves, text and scores.

Everything here is pure: a :class:`Bargain` is an immutable record of one negotiation (its task,
round limit and moves so far), :meth:`Bargain.play` returns a new one, and the text each side
reads is a function of the public facts, that side's own private value and the moves. Prices
are whole cents (``int``) throughout, shown as dollars.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec, ParseError, echo, lone_surrogate
from earlyexp.envs.core.base import Evaluation
from earlyexp.envs.core.types import RubricItem
from earlyexp.envs.webshop.products import generate_product, product_type_id
from earlyexp.envs.webshop.vocab import load_vocab

ROLES = ("buyer", "seller")
"""The two sides, in turn order: the buyer moves first (the list price is the opening ask)."""
ROUNDS = 10
"""Moves per side before the negotiation expires without a deal."""
MAX_SAY = 200
"""Longest message ``say[...]`` accepts (characters, after collapsing whitespace)."""
FAIR_SHARE = 0.25
"""Success needs at least this share of the gains from trade (budget - cost)."""
CATALOG_SIZE, CATALOG_SEED = 10_000, 0
"""Products come from WebShop-v0's default catalog (products are pure functions of the index)."""
MIN_LIST_CENTS = 1_000
"""Products listed under $10 are skipped: the zone of agreement would be a few cents wide."""
ID_COST, OOD_COST = (0.40, 0.65), (0.25, 0.45)
"""The seller's cost as a share of the list price."""
ID_GAP, OOD_GAP = (0.10, 0.30), (0.35, 0.55)
"""Budget minus cost (the gains from trade) as a share of the list price."""
MAX_BUDGET = 0.97
"""The budget is at most this share of the list price: there is always something to bargain."""

GRAMMAR = ActionGrammar(
    (
        ActionSpec("offer", ("price",), "propose a price in dollars (at most the list price)",
                   ("offer[42.50]", "offer[$40]")),
        ActionSpec("accept", (), "accept the other side's offer on the table: the deal is made",
                   ("accept",)),
        ActionSpec("walk away", (), "end the negotiation without a deal", ("walk away",)),
        ActionSpec("say", ("message",),
                   f"send a message of at most {MAX_SAY} characters (it uses your move)",
                   ("say[Is that your best price?]",)),
    )
)  # fmt: skip
"""The one action table: it parses actions and :meth:`ActionGrammar.describe` tells them."""
_PRICE = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")


def dollars(cents: int) -> str:
    """``4250`` -> ``$42.50``."""
    return f"${cents // 100}.{cents % 100:02d}"


def parse_price(text: str) -> int | None:
    """``42.5``, ``$42.50``, ``1,042`` -> cents; None when ``text`` is not such a price."""
    m = _PRICE.fullmatch(text.strip())
    if m is None:
        return None
    return int(m.group(1).replace(",", "")) * 100 + int((m.group(2) or "0").ljust(2, "0"))


@dataclass(frozen=True)
class BargainTask:
    """One negotiation: a catalog product and each side's private value.

    Attributes:
        product, asin, title, category: the WebShop product (catalog index, id, title, levels).
        attributes: what the product is (public: both sides see the listing).
        options: the configuration on sale, ``(option, value)`` pairs (public).
        list_cents: the list price (public; the seller's opening ask).
        needs: the attributes the buyer needs (private to the buyer; the product has them).
        budget_cents: the most the buyer may pay (private to the buyer).
        cost_cents: the least the seller may take (private to the seller); below the budget.
    """

    product: int
    asin: str
    title: str
    category: tuple[str, str, str]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    list_cents: int
    needs: tuple[str, ...]
    budget_cents: int
    cost_cents: int

    def limit(self, role: str) -> int:
        """The private value of ``role``: the budget (buyer) or the cost (seller)."""
        return self.budget_cents if role == "buyer" else self.cost_cents

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes."""
        return asdict(self)


def generate_task(rng: np.random.Generator, split: str) -> BargainTask:
    """Draw a product (``ood``: of a held-out type) and private values with ``split``'s gap."""
    vocab, ood = load_vocab(), split == "ood"
    while True:
        i = int(rng.integers(CATALOG_SIZE))
        if vocab.types[product_type_id(vocab, CATALOG_SEED, i)].ood != ood:
            continue
        p = generate_product(vocab, CATALOG_SEED, i)
        if round(p.price * 100) >= MIN_LIST_CENTS:
            break
    list_cents = round(p.price * 100)
    cost = round(list_cents * float(rng.uniform(*(OOD_COST if ood else ID_COST))))
    gap = round(list_cents * float(rng.uniform(*(OOD_GAP if ood else ID_GAP))))
    budget = min(cost + gap, int(list_cents * MAX_BUDGET))
    n_needs = int(rng.integers(1, min(2, len(p.attributes)) + 1))
    keep = set(rng.choice(len(p.attributes), size=n_needs, replace=False).tolist())
    options = tuple((name, values[int(rng.integers(len(values)))]) for name, values in p.options)
    return BargainTask(
        p.index, p.asin, p.title, p.category, p.attributes, options, list_cents,
        tuple(a for k, a in enumerate(p.attributes) if k in keep), budget, cost,
    )  # fmt: skip


def other(role: str) -> str:
    """The other side."""
    return "seller" if role == "buyer" else "buyer"


@dataclass(frozen=True)
class Move:
    """One turn of one side.

    Attributes:
        role: who moved.
        kind: ``offer``, ``accept``, ``walk away``, ``say`` or ``invalid`` (a malformed or
            out-of-turn action, which used up the turn).
        cents: the price offered or accepted (0 otherwise).
        text: the message said, or why the action was invalid (shown to its author only).
    """

    role: str
    kind: str
    cents: int = 0
    text: str = ""


@dataclass(frozen=True)
class Bargain:
    """A negotiation in progress: immutable, so a snapshot is the object itself."""

    task: BargainTask
    rounds: int = ROUNDS
    moves: tuple[Move, ...] = ()

    @property
    def status(self) -> str:
        """``open``, ``deal``, ``walked`` (someone walked away) or ``expired`` (round limit)."""
        last = self.moves[-1].kind if self.moves else ""
        if last == "accept":
            return "deal"
        if last == "walk away":
            return "walked"
        return "expired" if len(self.moves) >= 2 * self.rounds else "open"

    @property
    def turn(self) -> str | None:
        """The side to move (None once the negotiation is over)."""
        return ROLES[len(self.moves) % 2] if self.status == "open" else None

    @property
    def table(self) -> tuple[str, int]:
        """The offer on the table, ``(role, cents)``: the latest one (first the list price)."""
        for m in reversed(self.moves):
            if m.kind == "offer":
                return m.role, m.cents
        return "seller", self.task.list_cents

    @property
    def price(self) -> int | None:
        """The deal price (None without a deal)."""
        return self.moves[-1].cents if self.status == "deal" else None

    def offers(self, role: str) -> list[int]:
        """The prices ``role`` offered, in order (the seller's start with the list price)."""
        first = [self.task.list_cents] if role == "seller" else []
        return first + [m.cents for m in self.moves if m.role == role and m.kind == "offer"]

    def moves_of(self, role: str) -> int:
        """How many turns ``role`` has taken (invalid ones included)."""
        return sum(m.role == role for m in self.moves)

    def check(self, role: str, action: Any) -> Move | str:
        """The move ``action`` makes for ``role`` now, or why it is invalid (never raises)."""
        if self.status != "open":
            return f"The negotiation is over ({self.status})."
        if role != self.turn:
            return f"Out of turn: it is the {self.turn}'s move."
        if not isinstance(action, str):
            return f"Expected the action as text (str), got {type(action).__name__}."
        bad = lone_surrogate(action)
        if bad is not None:
            return f"The action is not valid Unicode text: {bad}."
        parsed = GRAMMAR.parse(action)
        if isinstance(parsed, ParseError):
            return parsed.message
        if parsed.name == "offer":
            return self._offer(role, parsed.args[0])
        if parsed.name == "say":
            text = " ".join(parsed.args[0].split())
            if not text or len(text) > MAX_SAY:
                return f"A message has 1 to {MAX_SAY} characters, actually: {len(text)}."
            return Move(role, "say", text=text)
        if parsed.name == "accept":
            side, cents = self.table
            if side == role:
                return (
                    f"Out of turn: the offer on the table ({dollars(cents)}) is your own; the "
                    f"{other(role)} has not answered it. Offer, say something or walk away."
                )
            return Move(role, "accept", cents)
        return Move(role, "walk away")

    def _offer(self, role: str, arg: str) -> Move | str:
        cents = parse_price(arg)
        if cents is None:
            return f"Invalid price {echo(arg)}: expected dollars, e.g. offer[42.50]."
        if not 1 <= cents <= self.task.list_cents:
            return (
                f"An offer is between $0.01 and the list price {dollars(self.task.list_cents)}, "
                f"actually: {dollars(cents)}."
            )
        return Move(role, "offer", cents)

    def play(self, role: str, action: Any) -> tuple[Bargain, str | None]:
        """Apply ``action`` of ``role``: ``(new state, None)``, or ``(self, why)`` if invalid."""
        move = self.check(role, action)
        if isinstance(move, str):
            return self, move
        return replace(self, moves=(*self.moves, move)), None

    def forfeit(self, role: str, why: str) -> Bargain:
        """Record an invalid action of ``role``: it used up that side's turn."""
        return replace(self, moves=(*self.moves, Move(role, "invalid", text=why)))


# ---------------------------------------------------------------------------------- text
def _describe(m: Move, viewer: str) -> str:
    mine = m.role == viewer
    who = "You" if mine else f"The {m.role}"
    if m.kind == "offer":
        return f"{who} offered {dollars(m.cents)}."
    if m.kind == "accept":
        whose = f"the {other(m.role)}'s" if mine else "your"
        return f"{who} accepted {whose} offer of {dollars(m.cents)}."
    if m.kind == "walk away":
        return f"{who} walked away. No deal."
    if m.kind == "say":
        return f'{who} said: "{m.text}"'
    if mine:
        return f"Your action was invalid and used up your turn: {m.text}"
    return f"The {m.role}'s action was invalid; its turn passed."


def news(game: Bargain, viewer: str) -> str:
    """What happened from ``viewer``'s last move on (all moves before its first one)."""
    mine = [i for i, m in enumerate(game.moves) if m.role == viewer]
    start = mine[-1] if mine else 0
    lines = [] if mine else ["The negotiation has started."]
    if not game.moves and viewer == "buyer":
        lines.append(f"The seller asks the list price, {dollars(game.task.list_cents)}.")
    lines += [_describe(m, viewer) for m in game.moves[start:]]
    if game.status == "expired":
        lines.append("The round limit was reached without a deal.")
    return " ".join(lines)


def status_lines(game: Bargain, role: str) -> list[str]:
    """The state of play as ``role`` sees it: the table, the offers so far, the moves left."""
    if game.status == "deal":
        assert game.price is not None
        head = f"Deal at {dollars(game.price)}."
    elif game.status != "open":
        head = "No deal."
    else:
        side, cents = game.table
        head = (
            f"Offer on the table: your {dollars(cents)} (the {other(role)} has not answered it)."
            if side == role
            else f"Offer on the table: {dollars(cents)} from the {side}."
        )
    mine = ", ".join(dollars(c) for c in game.offers(role)) or "none"
    theirs = ", ".join(dollars(c) for c in game.offers(other(role))) or "none"
    lines = [head, f"Your offers: {mine}. The {other(role)}'s offers: {theirs}."]
    if game.status == "open":
        left = game.rounds - game.moves_of(role)
        lines.append(f"Moves left: you {left}, the {other(role)} "
                     f"{game.rounds - game.moves_of(other(role))}.")  # fmt: skip
    return lines


def instruction(task: BargainTask, role: str, rounds: int = ROUNDS) -> str:
    """The role's brief: the listing, its private value and how it is scored."""
    opts = "; ".join(f"{k}: {v}" for k, v in task.options) or "no options"
    listing = (
        f"Product: {task.title} ({task.category[2]}; {opts}). Listed as: "
        f"{', '.join(task.attributes)}. List price: {dollars(task.list_cents)}."
    )
    if role == "buyer":
        private = (
            f"Your budget is {dollars(task.budget_cents)} (private: the seller does not know "
            f"it); never pay more. You need it to be {' and '.join(task.needs)}, as it is. "
            "Pay as little as you can: a deal at price p scores (budget - p) / budget."
        )
    else:
        private = (
            f"Your cost is {dollars(task.cost_cents)} (private: the buyer does not know it); "
            "never sell for less. Sell as high as you can: a deal at price p scores "
            "(p - cost) / (list price - cost)."
        )
    first = "you move first" if role == "buyer" else "the buyer moves first"
    return (
        f"You are the {role} in a negotiation over one product. {listing} {private} "
        f"No deal scores 0. Moves alternate ({first}), {rounds} each; success is a deal "
        f"within your limit that gets you at least a quarter of the gains from trade."
    )


def available_actions(game: Bargain, role: str) -> list[str]:
    """Concrete valid actions for ``role`` now (from public facts only; empty off turn)."""
    if game.turn != role:
        return []
    side, table = game.table
    own = game.offers(role)
    start = own[-1] if own else game.task.list_cents // 2
    acts = [f"offer[{dollars((start + table) // 2)[1:]}]"]
    if own and own[-1] != table:
        acts.append(f"offer[{dollars(own[-1])[1:]}]")
    if side != role:
        acts.append("accept")
    message = "Can you do better on the price?" if role == "buyer" else "That is below my price."
    return [*acts, "walk away", f"say[{message}]"]


def observation(game: Bargain, role: str, feedback: str | None = None) -> str:
    """What ``role`` reads: ``feedback`` (default: the news since its last move), then the state."""
    head = news(game, role) if feedback is None else feedback
    return "\n".join([head, *status_lines(game, role)])


# ---------------------------------------------------------------------------------- scores
def surplus(task: BargainTask, role: str, cents: int) -> float:
    """Normalized surplus of a deal at ``cents``.

    Buyer: (budget - p) / budget; seller: (p - cost) / (list - cost).
    """
    if role == "buyer":
        return (task.budget_cents - cents) / task.budget_cents
    return (cents - task.cost_cents) / (task.list_cents - task.cost_cents)


def gains_share(task: BargainTask, role: str, cents: int) -> float:
    """The share of the gains from trade (budget - cost) that a deal at ``cents`` gives ``role``."""
    gains = task.budget_cents - task.cost_cents
    mine = task.budget_cents - cents if role == "buyer" else cents - task.cost_cents
    return mine / gains


def evaluate(game: Bargain, role: str) -> Evaluation:
    """Score ``role``'s side: the surplus floored at 0, the rubric, success when all is met."""
    task, price = game.task, game.price
    deal = price is not None
    within = price is None or (
        price <= task.budget_cents if role == "buyer" else price >= task.cost_cents
    )
    fair = price is not None and gains_share(task, role, price) >= FAIR_SHARE
    limit = "pay at most your budget" if role == "buyer" else "sell at or above your cost"
    rubric: list[RubricItem] = [
        {"criterion": "reach a deal", "met": deal},
        {"criterion": limit, "met": within},
        {"criterion": "get at least a quarter of the gains from trade", "met": fair},
    ]
    raw = surplus(task, role, price) if price is not None else 0.0
    details = {
        "role": role, "end": game.status, "price": None if price is None else price / 100,
        "surplus": round(raw, 6), "moves": len(game.moves),
    }  # fmt: skip
    return Evaluation(min(max(raw, 0.0), 1.0), rubric, details, success=deal and within and fair)
