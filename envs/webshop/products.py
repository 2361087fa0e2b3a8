"""Deterministic product generation: product ``i`` of catalog seed ``s`` is a pure function.

Each product draws from its own ``random.Random`` seeded with the string ``webshop/s/i``
(string seeds are hashed with SHA-512, independent of ``PYTHONHASHSEED``), so a product is
the same in every catalog size that contains it (the 1k catalog is the first 1k products of
the 10k one) and can be regenerated on demand instead of being stored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from earlyexp.envs.webshop.vocab import ProductType, Vocab

ASIN_SPACE = 36**8
_ASIN_MUL = 2_654_435_761  # odd and not a multiple of 3: a bijection modulo 36**8
_ASIN_SHIFT = 1_234_567_890_123
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PAIRS = [x + y for x in _ALPHABET for y in _ALPHABET]  # base-36 digit pairs
RANGE_PRICE_SHARE = 0.25
MODEL_LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"
MODEL_IN_TITLE = 0.6


@dataclass(frozen=True)
class Product:
    """One catalog product (what an item page shows and what the reward reads).

    Attributes:
        index: position in the catalog.
        asin: the product id shown on results pages (``B0`` + 8 characters), clickable.
        type_id: index of its :class:`ProductType` in the vocabulary.
        category: top category, sub-category, product type.
        title, brand, description, features: the product text.
        reviews: ``(rating 1-5, text)`` pairs; ``rating`` is their mean.
        price_range: ``(low, high)``; equal for a single price.
        price: the price paid: ``low`` for a single price, else a fixed point of the range.
        options: ``(option name, values)`` pairs, e.g. ``("size", ("1 pound", "2 pound"))``.
        attributes: e.g. ``("gluten free", "non gmo")``.
    """

    index: int
    asin: str
    type_id: int
    category: tuple[str, str, str]
    brand: str
    title: str
    description: str
    features: tuple[str, ...]
    reviews: tuple[tuple[int, str], ...]
    rating: float
    price_range: tuple[float, float]
    price: float
    options: tuple[tuple[str, tuple[str, ...]], ...]
    attributes: tuple[str, ...]

    @property
    def type_name(self) -> str:
        """The product type, e.g. ``party mix``."""
        return self.category[2]

    def option_values(self, name: str) -> tuple[str, ...]:
        """Return the values of option ``name`` (empty when the product has no such option)."""
        for n, values in self.options:
            if n == name:
                return values
        return ()

    @property
    def search_text(self) -> str:
        """What the search index sees: title, description, features and option values."""
        opts = " ".join(v for _, values in self.options for v in values)
        return " ".join((self.title, self.description, " ".join(self.features), opts))


def asin(seed: int, index: int) -> str:
    """Return the ASIN of product ``index``: unique within a catalog (a bijection)."""
    n = (index * _ASIN_MUL + seed * 7_919 + _ASIN_SHIFT) % ASIN_SPACE
    a, b = divmod(n, 36**4)
    return "B0" + _PAIRS[a // 1296] + _PAIRS[a % 1296] + _PAIRS[b // 1296] + _PAIRS[b % 1296]


def price_text(low: float, high: float) -> str:
    """Format a price or a price range as the pages show it."""
    return f"${low:.2f}" if high <= low else f"${low:.2f} to ${high:.2f}"


def _price(rng: random.Random, t: ProductType) -> tuple[float, float, float]:
    low = max(1.0, round(rng.uniform(*t.price))) - 0.01
    if rng.random() >= RANGE_PRICE_SHARE:
        return low, low, low
    high = round(low * rng.uniform(1.15, 1.8), 2)
    return low, high, round(low + (high - low) * rng.random(), 2)


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def _model(rng: random.Random) -> str:
    """A model code such as ``KX240`` (one search token, rare across the catalog)."""
    return rng.choice(MODEL_LETTERS) + rng.choice(MODEL_LETTERS) + str(rng.randint(100, 999))


def _texts(rng: random.Random, vocab: Vocab, slots: dict[str, str], attrs: list[str], top: str):
    """Description, features and which attributes the text mentions."""
    d, f = vocab.text["descriptions"], vocab.text["features"]
    sentences = [_fill(rng.choice(d["opening"]), slots)]
    sentences += rng.sample(d["category"][top], rng.randint(1, 2))
    bullets = []
    for attr in attrs:
        where = rng.random()
        if where < 0.4:
            sentences.append(_fill(rng.choice(d["attribute"]), {**slots, "attr": attr}))
        elif where < 0.8:
            bullets.append(
                _fill(rng.choice(f["attribute"]), {**slots, "attr": attr, "ATTR": attr.upper()})
            )
    sentences.append(_fill(rng.choice(d["closing"]), slots))
    for template in rng.sample(f["generic"], rng.randint(2, 3)):
        bullets.append(_fill(template, slots))
    return " ".join(sentences), tuple(bullets)


def _reviews(rng: random.Random, vocab: Vocab, slots: dict[str, str]):
    bank = vocab.text["reviews"]
    out = []
    for _ in range(rng.randint(1, 3)):
        stars = min(5, max(1, round(rng.gauss(4.0, 1.0))))
        out.append((stars, _fill(rng.choice(bank[str(stars)]), slots)))
    return tuple(out)


def _title(
    rng: random.Random, vocab: Vocab, slots: dict[str, str], attrs: list[str], t: ProductType
) -> str:
    shown = [a for a in attrs if rng.random() < 0.35]
    name = [slots["brand"], slots["line"]]
    if rng.random() < MODEL_IN_TITLE:
        name.append(slots["model"])
    head = " ".join([*name, slots["adj"].title(), *(a.title() for a in shown), t.name.title()])
    if rng.random() < 0.5:
        return head
    return f"{head}, {rng.choice(vocab.text['title_suffixes'])}"


def _rng(seed: int, index: int) -> random.Random:
    return random.Random(f"webshop/{seed}/{index}")


def product_type_id(vocab: Vocab, seed: int, index: int) -> int:
    """The ``type_id`` of product ``index`` without generating the rest of it (first draw)."""
    return vocab.types[_rng(seed, index).randrange(len(vocab.types))].id


def generate_product(vocab: Vocab, seed: int, index: int) -> Product:
    """Return product ``index`` of the catalog with ``seed`` (deterministic)."""
    rng = _rng(seed, index)
    t = vocab.types[rng.randrange(len(vocab.types))]
    brand, line = rng.choice(vocab.brands[t.top]), rng.choice(vocab.lines)
    adj = rng.choice(vocab.adjectives[t.top])
    attrs = rng.sample(vocab.attributes[t.top], rng.randint(2, 4))
    options = []
    for key in t.options:
        pool = vocab.option_pools[key]
        picked = set(rng.sample(range(len(pool.values)), rng.randint(2, min(5, len(pool.values)))))
        options.append((pool.name, tuple(v for i, v in enumerate(pool.values) if i in picked)))
    low, high, paid = _price(rng, t)
    slots = {"brand": brand, "line": line, "model": _model(rng), "type": t.name}
    slots |= {"adj": adj, "ADJ": adj.upper()}
    description, features = _texts(rng, vocab, slots, attrs, t.top)
    reviews = _reviews(rng, vocab, slots)
    return Product(
        index=index,
        asin=asin(seed, index),
        type_id=t.id,
        category=t.category(vocab),
        brand=brand,
        title=_title(rng, vocab, slots, attrs, t),
        description=description,
        features=features,
        reviews=reviews,
        rating=round(sum(s for s, _ in reviews) / len(reviews), 1),
        price_range=(low, high),
        price=paid,
        options=tuple(options),
        attributes=tuple(attrs),
    )
