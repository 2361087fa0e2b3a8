"""The shipped WebShop vocabulary (``assets/webshop/vocab.json``) as typed, read-only tables.

The vocabulary holds the category tree (WebShop's five top categories plus two held out for
OOD), product types (each entry names a type and its variants, e.g. ``party mix`` and
``trail mix``: same sub-category, options and price range, distinct types), attribute and
option pools, brands, product lines, text templates for titles, descriptions (shared and per
top category), features and reviews, and the instruction phrasing templates. The fixed words
of the text templates share no stem with any attribute, option value or type name, so goal
queries match what a product is, not the shop's boilerplate.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from earlyexp import assets

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Return the lower-cased alphanumeric words of ``text``."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class OptionPool:
    """A kind of option (``size``, ``color``, ...) with its values and instruction phrase."""

    key: str
    name: str
    phrase: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class ProductType:
    """A leaf of the category tree: what a product is (``party mix``)."""

    id: int
    name: str
    top: str
    sub: str
    options: tuple[str, ...]
    price: tuple[float, float]
    ood: bool

    def category(self, vocab: Vocab) -> tuple[str, str, str]:
        """The three category levels: top category, sub-category, product type."""
        return (vocab.top_categories[self.top], self.sub, self.name)


@dataclass(frozen=True, eq=False)
class Vocab:
    """Every table of ``vocab.json``; see the file for the contents."""

    top_categories: dict[str, str]
    colors: tuple[str, ...]
    modifiers: frozenset[str]
    option_pools: dict[str, OptionPool]
    attributes: dict[str, tuple[str, ...]]
    brands: dict[str, tuple[str, ...]]
    adjectives: dict[str, tuple[str, ...]]
    lines: tuple[str, ...]
    types: tuple[ProductType, ...]
    text: dict[str, Any]
    templates: dict[str, tuple[str, ...]]
    nouns: Nouns
    """The noun lexicon of the type reward: the nouns of type names, and brand names."""
    digest: str

    def types_of(self, ood: bool) -> tuple[ProductType, ...]:
        """Return the product types of the held-out (``ood=True``) or in-distribution set."""
        return tuple(t for t in self.types if t.ood == ood)


@dataclass(frozen=True)
class Nouns:
    """The noun lexicon of the type reward, in place of the original's spaCy tagger.

    Attributes:
        words: the nouns of type names (their words that are not modifiers) and brand names.
        compounds: type names all of whose words are modifiers (``sparkling water``,
            ``dog bed``): each is one noun, found in a title as the whole phrase, so the type
            has a noun without making ``water`` a noun of every "water resistant" title.
    """

    words: frozenset[str]
    compounds: tuple[str, ...]

    def of(self, title: str) -> set[str]:
        """Return the nouns of ``title``: its noun words and the compounds it contains."""
        ws = words(title)
        found = {w for w in ws if w in self.words}
        if self.compounds:
            padded = f" {' '.join(ws)} "
            found |= {c for c in self.compounds if f" {c} " in padded}
        return found


def _nouns(raw: dict[str, Any]) -> Nouns:
    modifiers = set(raw["modifiers"])
    names = [n for t in raw["types"] for n in (t["name"], *t.get("variants", ()))]
    found = {w for n in names for w in words(n) if w not in modifiers}
    found |= {w for names in raw["brands"].values() for n in names for w in words(n)}
    compounds = [" ".join(words(n)) for n in names if all(w in modifiers for w in words(n))]
    return Nouns(frozenset(found), tuple(sorted(set(compounds))))


def _parse(raw: dict[str, Any], digest: str) -> Vocab:
    pools = {
        k: OptionPool(k, p["name"], p["phrase"], tuple(p["values"]))
        for k, p in raw["option_pools"].items()
    }
    rows = [(name, t) for t in raw["types"] for name in (t["name"], *t.get("variants", ()))]
    types = tuple(
        ProductType(
            i,
            name,
            t["top"],
            t["sub"],
            tuple(t["options"]),
            (float(t["price"][0]), float(t["price"][1])),
            bool(t.get("ood", False)),
        )  # fmt: skip
        for i, (name, t) in enumerate(rows)
    )
    return Vocab(
        top_categories=dict(raw["top_categories"]),
        colors=tuple(raw["colors"]),
        modifiers=frozenset(raw["modifiers"]),
        option_pools=pools,
        attributes={k: tuple(v) for k, v in raw["attributes"].items()},
        brands={k: tuple(v) for k, v in raw["brands"].items()},
        adjectives={k: tuple(v) for k, v in raw["adjectives"].items()},
        lines=tuple(raw["lines"]),
        types=types,
        text={
            "descriptions": raw["descriptions"],
            "features": raw["features"],
            "reviews": raw["reviews"],
            "title_suffixes": tuple(raw["title_suffixes"]),
        },
        templates={k: tuple(v) for k, v in raw["templates"].items()},
        nouns=_nouns(raw),
        digest=digest,
    )


@lru_cache(maxsize=1)
def load_vocab() -> Vocab:
    """Return the packaged vocabulary (parsed once per process)."""
    text = assets.read_text("webshop", "vocab.json")
    return _parse(json.loads(text), hashlib.sha256(text.encode()).hexdigest()[:8])
