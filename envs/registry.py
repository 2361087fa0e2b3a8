"""The table of earlyexp env ids: one row per registered variant (a variant is a row, not a subclass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gymnasium.envs.registration import register, registry


@dataclass(frozen=True)
class EnvEntry:
    """One registered id.

    Attributes:
        id: the Gymnasium id, ``EarlyExp/Name-vN``.
        entry_point: ``module:Class``.
        kwargs: default constructor arguments of this variant.
        summary: one line for ``earlyexp envs`` and the README table.
        ood: how the ood panel differs from train/test.
        tags: capabilities, e.g. ``control`` (has a numeric view), ``browser`` (needs Chromium),
            ``dialogue`` (free-text messages to another party).
    """

    id: str
    entry_point: str
    summary: str
    ood: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


ENTRIES: list[EnvEntry] = [
    EnvEntry(
        "EarlyExp/FrozenLake-v0",
        "earlyexp.envs.control.frozenlake:FrozenLakeEnv",
        "reach the goal on a grid, rules hidden, abstract symbols, 8 steps",
        "7x7 to 9x9 grids, budget 20",
        tags=("control",),
    ),
    EnvEntry(
        "EarlyExp/Sokoban-v0",
        "earlyexp.envs.control.sokoban:SokobanEnv",
        "push one box onto its goal in a 6x6 to 8x8 room, rules hidden, 8 steps",
        "two boxes, rooms up to 10x10, budget 20",
        tags=("control",),
    ),
    EnvEntry(
        "EarlyExp/WebShop-v0",
        "earlyexp.envs.webshop.env:WebShopEnv",
        "WebShop clone: search a generated 10k-product catalog (BM25), pick options, buy; "
        "WebShop's reward",
        "held-out product types (pet supplies, sports & outdoors, 2 per top category) and "
        "held-out instruction phrasings",
        tags=("web",),
    ),
    EnvEntry(
        "EarlyExp/FlightBooking-v0",
        "earlyexp.envs.flights.env:FlightBookingEnv",
        "book flights on a real web site (Starlette, SQLite) via Playwright in headless Chromium",
        "unseen airports and airlines, arrival-window and layover limits, a second site layout",
        tags=("browser",),
    ),
    EnvEntry(
        "EarlyExp/SearchQA-v0",
        "earlyexp.envs.searchqa.env:SearchQAEnv",
        "multi-hop questions over a generated encyclopedia; search[query] (BM25), answer[text]",
        "3-4 hop chains, comparisons, relation compositions held out of training",
        tags=("tools",),
    ),
    EnvEntry(
        "EarlyExp/ToolCall-v0",
        "earlyexp.envs.toolcall.env:ToolCallEnv",
        "multi-turn function calling (Python-syntax calls) against file system, bank, travel APIs",
        "BFCL categories: long context, missing function, missing parameter",
        tags=("tools",),
    ),
    EnvEntry(
        "EarlyExp/Bargain-v0",
        "earlyexp.envs.bargain.env:BargainEnv",
        "negotiate the price of a WebShop product as the buyer (role=...) against a scripted "
        "seller; offer / accept / walk away / say, 10 moves each, normalized surplus",
        "held-out product types and wider gaps between budget and cost",
        kwargs={"role": "buyer"},
        tags=("dialogue",),
    ),
]


def register_all() -> None:
    """Register every entry with Gymnasium (idempotent).

    Gymnasium's passive env checker is off (``disable_env_checker=True``): in gymnasium 1.x a
    first ``reset`` that raises (a rejected ``task`` option) leaves the checker without its
    reset data, and every later ``step`` of that env then raises ``TypeError``. The contract
    tests run ``check_env`` on every id instead; ``gym.make(id, disable_env_checker=False)``
    turns the checker back on (with that gymnasium bug).
    """
    for e in ENTRIES:
        if e.id not in registry:
            register(
                id=e.id, entry_point=e.entry_point, kwargs=dict(e.kwargs), disable_env_checker=True
            )


def env_ids(tag: str | None = None) -> list[str]:
    """Return the registered ids, optionally only those carrying ``tag``."""
    return [e.id for e in ENTRIES if tag is None or tag in e.tags]


def entry(env_id: str) -> EnvEntry:
    """Return the registry row of ``env_id``."""
    for e in ENTRIES:
        if e.id == env_id:
            return e
    raise ValueError(f"Expect one of {env_ids()}, actually: {env_id!r}")
