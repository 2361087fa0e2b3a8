"""WebShop's reward (Yao et al., 2022, section 3.2), every component reported.

R = r_type * (N_att + N_opt + 1[price <= bound]) / (|attributes| + |options| + 1)

- An attribute counts when a product attribute matches it with rapidfuzz ``token_set_ratio``
  rounded to an integer > 85 (with the default processor: lower case, punctuation to spaces;
  rounded as the original's ``thefuzz``), or when it occurs in the title, the features or the
  description.
- An option counts when a chosen option matches it with that rounded score > 85 after colour
  normalization (a value naming a base colour becomes that colour). This is the original's
  lenient matcher: it counts ``large`` vs ``x-large`` and ``2 pound`` vs ``3 pound`` as
  matches. ``reward_mode="strict"`` counts an option only when the chosen value is exactly
  the wanted one.
- r_type compares the nouns of the bought and target titles (title_score = shared nouns /
  target nouns): 1 if the same query (here: the same product type, the query the product was
  listed under), at least two shared category levels, or title_score > 0.2; else 0.5; then
  title_score < 0.1 gives 0.1 and title_score == 0 gives 0. Nouns are the title words found in
  the vocabulary's noun lexicon (type-name nouns and brand names) instead of a spaCy tagger;
  a type name made only of modifier words (``sparkling water``, ``dog bed``, ``cat bed``) is
  one compound noun, found in a title as the whole phrase.
  ``strict`` also requires the target product type: another type caps r_type at 0.5.

Success is R = 1. The benchmark score is mean R x 100 (:func:`webshop_score`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, utils

from earlyexp.envs.core.base import Evaluation
from earlyexp.envs.core.types import RubricItem
from earlyexp.envs.webshop.goals import Goal
from earlyexp.envs.webshop.products import Product
from earlyexp.envs.webshop.vocab import Nouns, Vocab, words

REWARD_MODES = ("webshop", "strict")
FUZZY_THRESHOLD = 85


def check_reward_mode(mode: object) -> str:
    """Return ``mode`` if it names a reward mode, else raise a ValueError listing them."""
    if mode not in REWARD_MODES:
        raise ValueError(f"Expect reward_mode in {REWARD_MODES}, actually: {mode!r}")
    return str(mode)


def fuzzy(a: str, b: str) -> int:
    """``token_set_ratio`` with the default processor, rounded to an integer.

    As the original's ``thefuzz.fuzz.token_set_ratio``: it returns ``int(round(score))``
    (Python's round, half to even), and the original compares that integer with ``> 85``, so
    a raw score in (85, 85.5) is not a match.
    """
    return int(round(fuzz.token_set_ratio(a, b, processor=utils.default_process)))


@dataclass(frozen=True)
class TypeMatch:
    """The parts of r_type."""

    r_type: float
    title_score: float
    query_match: bool
    category_match: bool


def type_reward(bought: Product, goal: Goal, nouns: Nouns, strict: bool = False) -> TypeMatch:
    """r_type of buying ``bought`` for ``goal`` (see the module docstring)."""
    query_match = bought.type_name == goal.type_name
    category_match = len(set(bought.category) & set(goal.category)) >= 2
    want, have = nouns.of(goal.title), nouns.of(bought.title)
    title_score = 0.2 if not want else len(want & have) / len(want)
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    if strict and not query_match:
        r_type = min(r_type, 0.5)
    return TypeMatch(r_type, title_score, query_match, category_match)


def attribute_matches(bought: Product, wanted: Iterable[str]) -> dict[str, bool]:
    """For each wanted attribute: does the bought product have it (fuzzy or in its text)?"""
    text = None
    out = {}
    for attr in wanted:
        met = any(fuzzy(have, attr) > FUZZY_THRESHOLD for have in bought.attributes)
        if not met:
            if text is None:
                text = " ".join(
                    (bought.title, " ".join(bought.features), bought.description)
                ).lower()
            met = attr in text
        out[attr] = met
    return out


def normalize_color(value: str, colors: Sequence[str]) -> str:
    """Return the first base colour named in ``value`` (word match), else ``value``."""
    tokens = set(words(value))
    for color in colors:
        if color in tokens:
            return color
    return value


def option_matches(
    chosen: Mapping[str, str],
    wanted: Sequence[tuple[str, str]],
    colors: Sequence[str],
    strict: bool,
) -> dict[str, bool]:
    """For each wanted ``(name, value)``: did a chosen option match it?"""
    out = {}
    if strict:
        picked = {name: " ".join(value.lower().split()) for name, value in chosen.items()}
        for name, value in wanted:
            out[name] = picked.get(name) == " ".join(value.lower().split())
        return out
    picked_norm = [normalize_color(v, colors) for v in chosen.values()]
    for name, value in wanted:
        g = normalize_color(value, colors)
        out[name] = any(fuzzy(p, g) > FUZZY_THRESHOLD for p in picked_norm)
    return out


def _rubric(
    goal: Goal, bought: bool, tm: TypeMatch | None, attrs, opts, price_ok
) -> list[RubricItem]:
    items: list[RubricItem] = [{"criterion": "buy a product", "met": bought}]
    items.append(
        {"criterion": f"product type: {goal.type_name}", "met": bool(tm and tm.r_type == 1.0)}
    )
    items += [{"criterion": f"attribute: {a}", "met": attrs.get(a, False)} for a in goal.attributes]
    items += [{"criterion": f"{n}: {v}", "met": opts.get(n, False)} for n, v in goal.options]
    items.append({"criterion": f"price lower than {goal.price_bound:.2f} dollars", "met": price_ok})
    return items


def score_purchase(
    bought: Product | None,
    chosen: Mapping[str, str],
    goal: Goal,
    vocab: Vocab,
    mode: str = "webshop",
) -> Evaluation:
    """Score buying ``bought`` with ``chosen`` options (None: nothing bought, score 0)."""
    strict = check_reward_mode(mode) == "strict"
    denominator = len(goal.attributes) + len(goal.options) + 1
    details: dict[str, Any] = {
        "reward_mode": mode,
        "target_asin": goal.asin,
        "denominator": denominator,
    }
    if bought is None:
        details.update(
            purchased_asin=None, r_type=0.0, r_att=0.0, r_option=0.0, r_price=0.0, reward=0.0
        )
        return Evaluation(0.0, _rubric(goal, False, None, {}, {}, False), details)
    tm = type_reward(bought, goal, vocab.nouns, strict)
    attrs = attribute_matches(bought, goal.attributes)
    opts = option_matches(chosen, goal.options, vocab.colors, strict)
    price_ok = bought.price <= goal.price_bound
    n_att, n_opt = sum(attrs.values()), sum(opts.values())
    reward = tm.r_type * (n_att + n_opt + int(price_ok)) / denominator
    details.update(
        purchased_asin=bought.asin, purchased_title=bought.title, chosen_options=dict(chosen),
        r_type=tm.r_type, title_score=round(tm.title_score, 4), query_match=tm.query_match,
        category_match=tm.category_match, attributes=attrs, options=opts,
        r_att=n_att / len(goal.attributes) if goal.attributes else 1.0,
        r_option=n_opt / len(goal.options) if goal.options else 1.0,
        r_price=float(price_ok), price=bought.price, price_bound=goal.price_bound,
        n_att=n_att, n_opt=n_opt, reward=reward,
    )  # fmt: skip
    return Evaluation(
        reward, _rubric(goal, True, tm, attrs, opts, price_ok), details, success=reward >= 1.0
    )


def webshop_score(rewards: Iterable[float]) -> float:
    """The WebShop benchmark score: mean R x 100."""
    values = list(rewards)
    return 100.0 * sum(values) / len(values) if values else 0.0
