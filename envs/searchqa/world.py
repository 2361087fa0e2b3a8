"""A seeded encyclopedia: entities with typed relations and attributes, rendered as articles.

Everything is a pure function of ``(seed, n_articles)``: the same arguments give the same world
and the same passages in every process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from earlyexp import assets
from earlyexp.envs.searchqa.articles import render_articles
from earlyexp.envs.searchqa.schema import KINDS, RELATIONS
from earlyexp.envs.searchqa.text import normalize_answer

SHARES: dict[str, float] = {
    "person": 0.33, "city": 0.14, "country": 0.02, "university": 0.06,
    "company": 0.12, "film": 0.12, "book": 0.13, "river": 0.08,
}  # fmt: skip
MIN_COUNT: dict[str, int] = {"country": 6, "city": 12, "river": 4, "university": 4}
SENTENCES_PER_PASSAGE = 3


@dataclass
class Entity:
    """One article's subject."""

    id: int
    kind: str
    name: str
    attrs: dict[str, int] = field(default_factory=dict)
    rels: dict[str, int] = field(default_factory=dict)
    flavor: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Passage:
    """A few sentences of one article; ``facts`` lists the ``(subject id, relation)`` it states."""

    id: int
    entity: int
    title: str
    text: str
    facts: tuple[tuple[int, str], ...]


@dataclass
class World:
    """The entities, their articles cut into passages, and the facts each passage states."""

    entities: list[Entity]
    passages: list[Passage]

    def __post_init__(self) -> None:
        self.by_kind: dict[str, list[int]] = {k: [] for k in KINDS}
        self.by_name: dict[str, list[int]] = {}
        for e in self.entities:
            self.by_kind[e.kind].append(e.id)
            self.by_name.setdefault(normalize_answer(e.name), []).append(e.id)
        self.stated: dict[tuple[int, str], list[int]] = {}
        for p in self.passages:
            for fact in p.facts:
                self.stated.setdefault(fact, []).append(p.id)

    def value(self, entity_id: int, relation: str) -> str:
        """The answer string of ``relation`` of an entity (a name or a formatted number)."""
        e = self.entities[entity_id]
        if RELATIONS[relation].is_attribute:
            return format_attr(relation, e.attrs[relation])
        return self.entities[e.rels[relation]].name


def format_attr(relation: str, value: int) -> str:
    """How an attribute reads in articles and answers (populations with thousands commas)."""
    return f"{value:,}" if relation == "population" else str(value)


def plural(noun: str) -> str:
    """English plural of a title noun (Sanctuary -> Sanctuaries, Compass -> Compasses)."""
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("f"):
        return noun[:-1] + "ves"
    return noun + "s"


class _Vocab:
    def __init__(self, rng: np.random.Generator) -> None:
        self.v = json.loads(assets.read_text("searchqa", "vocab.json"))
        self.templates: dict[str, list[str]] = json.loads(
            assets.read_text("searchqa", "templates.json")
        )
        self.rng = rng
        self.used: set[str] = set()

    def pick(self, key: str) -> str:
        items = self.v[key]
        return items[int(self.rng.integers(len(items)))]

    def root(self, syllables: int | None = None) -> str:
        n = syllables or (2 if self.rng.random() < 0.75 else 3)
        word = "".join(
            self.pick("onsets") + self.pick("vowels") + self.pick("codas") for _ in range(n)
        )
        return word.capitalize()

    def unique(self, make) -> str:
        for _ in range(1000):
            name = make()
            key = normalize_answer(name)
            if key and key not in self.used:
                self.used.add(key)
                return name
        raise RuntimeError("Expect a unique name within 1000 draws, actually: vocabulary exhausted")

    def fill(self, pattern: str) -> str:
        return pattern.format(
            root=self.root(), root2=self.root(2), kind=self.pick("company_kinds"),
            tail=self.pick("company_tails"), adj=self.pick("adjectives"),
            noun=self.pick("nouns"), noun2=self.pick("nouns"), first=self.pick("first_names"),
            nouns=plural(self.pick("nouns")),
        )  # fmt: skip

    def name(self, kind: str) -> str:
        makers = {
            "person": lambda: f"{self.pick('first_names')} {self.root()}",
            "city": lambda: self.pick("city_prefixes") + self.root() + self.pick("city_suffixes"),
            "country": lambda: self.root(2) + self.pick("country_suffixes"),
            "university": lambda: self.fill(self.pick("university_patterns")),
            "company": lambda: self.fill(self.pick("company_patterns")),
            "film": lambda: self.fill(self.pick("film_patterns")),
            "book": lambda: self.fill(self.pick("book_patterns")),
            "river": lambda: f"{self.root(2)} River",
        }
        return self.unique(makers[kind])


def _counts(n: int) -> dict[str, int]:
    counts = {k: max(MIN_COUNT.get(k, 2), int(n * SHARES[k])) for k in KINDS}
    counts["person"] += max(0, n - sum(counts.values()))
    return counts


def _entities(voc: _Vocab, n: int) -> list[Entity]:
    ents: list[Entity] = []
    for kind, count in _counts(n).items():
        for _ in range(count):
            ents.append(Entity(len(ents), kind, voc.name(kind)))
    return ents


def _link(ents: list[Entity], rng: np.random.Generator, voc: _Vocab) -> None:
    ids = {k: [e.id for e in ents if e.kind == k] for k in KINDS}

    def any_of(kind: str) -> int:
        return ids[kind][int(rng.integers(len(ids[kind])))]

    countries = ids["country"]
    for i, c in enumerate(ids["city"]):
        country = countries[i] if i < len(countries) else any_of("country")
        ents[c].rels.update(in_country=country, river=any_of("river"))
        ents[c].attrs["population"] = int(rng.integers(5, 5000)) * 1000 + int(rng.integers(1000))
    for country in countries:
        cities = [c for c in ids["city"] if ents[c].rels["in_country"] == country]
        ents[country].rels["capital"] = cities[int(rng.integers(len(cities)))]
        ents[country].flavor["landscape"] = voc.pick("landscapes")
    for r in ids["river"]:
        ents[r].rels["rises_in"] = any_of("country")
        ents[r].attrs["length_km"] = int(rng.integers(40, 3500))
    for u in ids["university"]:
        ents[u].rels["located_in"] = any_of("city")
        ents[u].attrs["univ_founded_year"] = int(rng.integers(1400, 1990))
    for p in ids["person"]:
        ents[p].rels.update(born_in=any_of("city"), studied_at=any_of("university"))
        ents[p].attrs["birth_year"] = int(rng.integers(1850, 2000))
        ents[p].flavor["profession"] = voc.pick("professions")
    for co in ids["company"]:
        founder = any_of("person")
        year = min(2022, ents[founder].attrs["birth_year"] + int(rng.integers(22, 60)))
        ents[co].rels.update(founded_by=founder, headquartered_in=any_of("city"))
        ents[co].attrs["founded_year"] = year
        ents[co].flavor["industry"] = voc.pick("industries")
    for p in ids["person"]:
        ents[p].rels["works_for"] = any_of("company")
    for kind, rel, attr, flavor in (
        ("film", "directed_by", "release_year", "genres"),
        ("book", "written_by", "published_year", "book_genres"),
    ):
        for w in ids[kind]:
            author = any_of("person")
            year = min(2024, ents[author].attrs["birth_year"] + int(rng.integers(20, 70)))
            ents[w].rels[rel] = author
            ents[w].attrs[attr] = year
            ents[w].flavor["genre"] = voc.pick(flavor)


def generate_world(seed: int, n_articles: int) -> World:
    """Build the world of ``n_articles`` articles (one per entity) from ``seed``."""
    if n_articles < 60:
        raise ValueError(f"Expect n_articles >= 60, actually: {n_articles}")
    rng = np.random.default_rng([seed, n_articles, 7])
    voc = _Vocab(rng)
    ents = _entities(voc, n_articles)
    _link(ents, rng, voc)
    passages: list[Passage] = []
    for entity_id, title, sentences in render_articles(ents, voc.templates, voc.v["fillers"], rng):
        for start in range(0, len(sentences), SENTENCES_PER_PASSAGE):
            chunk = sentences[start : start + SENTENCES_PER_PASSAGE]
            text = " ".join(t for t, _ in chunk)
            facts = tuple(f for _, fs in chunk for f in fs)
            passages.append(Passage(len(passages), entity_id, title, text, facts))
    return World(ents, passages)
