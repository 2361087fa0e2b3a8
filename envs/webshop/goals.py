"""Shopping goals: a target product, some of its attributes, one value per option, a price bound.

A goal is drawn from a seeded generator and the catalog only, so it is the same in every
process. The price bound is part of the goal (fixed), unlike the original, where it was
re-drawn at every load. ``train`` and ``test`` goals target the in-distribution product types
and use the ``id`` phrasing templates; ``ood`` goals target the held-out types (two whole top
categories, pets and sports, plus two held-out type families in each of the five others) and
use the held-out ``ood`` templates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from earlyexp.envs.webshop.catalog import Catalog
from earlyexp.envs.webshop.products import Product
from earlyexp.envs.webshop.vocab import ProductType, Vocab

MAX_ATTRIBUTES = 3
PRICE_SLACK = (1.1, 2.0)


@dataclass(frozen=True)
class Goal:
    """What the shopper wants.

    Attributes:
        product: catalog index of the product the goal was drawn from (one of maybe several
            products that satisfy it).
        asin, title, category: the target's id, title and category levels (the type reward
            compares titles and categories with the bought product's).
        attributes: wanted attributes (a subset of the target's).
        options: ``(option name, value)`` pairs, one per option of the target.
        price_bound: the price must be at most this many dollars.
        instruction: the goal in words, shown to the agent.
        template: index of the phrasing template in its set (``id`` or ``ood``).
        query: a keyword query (attributes, type, option values): the expert's first search.
    """

    product: int
    asin: str
    title: str
    category: tuple[str, str, str]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_bound: float
    instruction: str
    template: int
    query: str

    @property
    def type_name(self) -> str:
        """The wanted product type."""
        return self.category[2]

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes."""
        return asdict(self)


def _article(type_name: str, phrase: str) -> str:
    """``a``/``an`` before ``phrase`` (none when the type is plural)."""
    if type_name.endswith("s") and not type_name.endswith("ss"):
        return ""
    return "an " if phrase[0] in "aeiou" else "a "


def phrase(vocab: Vocab, t: ProductType, template: str, goal_parts: dict[str, Any]) -> str:
    """Fill an instruction template from the goal's type, attributes, options and bound."""
    attrs: tuple[str, ...] = goal_parts["attributes"]
    attr_text = attrs[0] if len(attrs) == 1 else ", ".join(attrs[:-1]) + " and " + attrs[-1]
    options = [
        vocab.option_pools[key].phrase.format(v=value)
        for key, (_, value) in zip(t.options, goal_parts["options"], strict=True)
    ]
    slots = {
        "type": t.name,
        "a_type": _article(t.name, t.name) + t.name,
        "attrs": attr_text,
        "a_attrs": _article(t.name, attr_text) + attr_text,
        "options": " and ".join(options),
        "price": f"{goal_parts['price_bound']:.2f}",
    }
    return " ".join(template.format(**slots).split())


def _pick_product(catalog: Catalog, rng: np.random.Generator, types: tuple[ProductType, ...]):
    for _ in range(1000):
        t = types[int(rng.integers(len(types)))]
        ids = catalog.of_type(t.id)
        if len(ids):
            return t, catalog.product(int(ids[int(rng.integers(len(ids)))]))
    raise ValueError(
        f"Expect products of the goal types in the catalog, actually: none in {len(catalog)}"
    )


def _parts(rng: np.random.Generator, p: Product) -> dict[str, Any]:
    n_attr = int(rng.integers(1, min(MAX_ATTRIBUTES, len(p.attributes)) + 1))
    keep = set(rng.choice(len(p.attributes), size=n_attr, replace=False).tolist())
    attributes = tuple(a for i, a in enumerate(p.attributes) if i in keep)
    options = tuple((name, values[int(rng.integers(len(values)))]) for name, values in p.options)
    bound = float(math.ceil(p.price * float(rng.uniform(*PRICE_SLACK))))
    return {"attributes": attributes, "options": options, "price_bound": bound}


def make_goal(catalog: Catalog, rng: np.random.Generator, split: str) -> Goal:
    """Draw a goal of ``split`` (``ood``: held-out types and phrasings) from ``rng``."""
    vocab = catalog.vocab
    t, p = _pick_product(catalog, rng, vocab.types_of(ood=split == "ood"))
    parts = _parts(rng, p)
    templates = vocab.templates["ood" if split == "ood" else "id"]
    k = int(rng.integers(len(templates)))
    words = [*parts["attributes"], t.name, *(v for _, v in parts["options"])]
    return Goal(
        product=p.index,
        asin=p.asin,
        title=p.title,
        category=p.category,
        instruction=phrase(vocab, t, templates[k], parts),
        template=k,
        query=" ".join(words),
        **parts,
    )
