"""The typed relations and attributes of the SearchQA encyclopedia, and how questions name them.

One table: world generation, article rendering, question composition and the expert's search
queries all read :data:`RELATIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS: tuple[str, ...] = (
    "person", "city", "country", "university", "company", "film", "book", "river",
)  # fmt: skip


@dataclass(frozen=True)
class Relation:
    """A functional relation (``target`` is a kind) or an attribute (``target`` is None).

    Attributes:
        name: the relation's name, e.g. ``born_in``.
        label: what its object is called ("birthplace"), for rubric lines.
        subject: the kind of entity it applies to.
        target: the kind of entity it points to, or None for a numeric attribute.
        phrases: noun phrases naming the object of ``{x}``'s relation ("the director of {x}").
        questions: questions asking for it ("Who directed {x}?").
        keywords: words the expert adds to the subject's name when it searches for the fact.
    """

    name: str
    label: str
    subject: str
    target: str | None
    phrases: tuple[str, ...]
    questions: tuple[str, ...]
    keywords: str

    @property
    def is_attribute(self) -> bool:
        """True for numeric attributes (years, populations, lengths)."""
        return self.target is None


def _r(name, label, subject, target, phrases, questions, keywords) -> Relation:
    return Relation(name, label, subject, target, tuple(phrases), tuple(questions), keywords)


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        _r(
            "directed_by",
            "director",
            "film",
            "person",
            ["the director of {x}", "the person who directed {x}"],
            ["Who directed {x}?", "Who was the director of {x}?"],
            "directed director",
        ),
        _r(
            "written_by",
            "author",
            "book",
            "person",
            ["the author of {x}", "the writer of {x}"],
            ["Who wrote {x}?", "Who is the author of {x}?"],
            "written wrote author",
        ),
        _r(
            "founded_by",
            "founder",
            "company",
            "person",
            ["the founder of {x}", "the person who founded {x}"],
            ["Who founded {x}?", "Who is the founder of {x}?"],
            "founded founder",
        ),
        _r(
            "born_in",
            "birthplace",
            "person",
            "city",
            ["the birthplace of {x}", "the city where {x} was born"],
            ["In which city was {x} born?", "Where was {x} born?"],
            "born birthplace",
        ),
        _r(
            "studied_at",
            "university",
            "person",
            "university",
            ["the university {x} attended", "the school where {x} studied"],
            ["Where did {x} study?", "Which university did {x} attend?"],
            "studied graduated attended",
        ),
        _r(
            "works_for",
            "employer",
            "person",
            "company",
            ["the employer of {x}", "the company {x} worked for"],
            ["Which company did {x} work for?", "Who employed {x}?"],
            "worked employed joined",
        ),
        _r(
            "located_in",
            "city",
            "university",
            "city",
            ["the city where {x} is located", "the home city of {x}"],
            ["In which city is {x} located?", "Where is {x}?"],
            "located campus city",
        ),
        _r(
            "headquartered_in",
            "headquarters city",
            "company",
            "city",
            ["the city where {x} is headquartered", "the headquarters city of {x}"],
            ["Where is {x} headquartered?", "In which city are the headquarters of {x}?"],
            "headquartered headquarters",
        ),
        _r(
            "in_country",
            "country",
            "city",
            "country",
            ["the country {x} is in", "the country of {x}"],
            ["In which country is {x}?", "Which country is {x} located in?"],
            "located country",
        ),
        _r(
            "river",
            "river",
            "city",
            "river",
            ["the river that flows through {x}", "the river of {x}"],
            ["Which river flows through {x}?", "On which river does {x} lie?"],
            "river flows banks",
        ),
        _r(
            "rises_in",
            "source country",
            "river",
            "country",
            ["the country where {x} rises", "the country of the source of {x}"],
            ["In which country does {x} rise?", "Where is the source of {x}?"],
            "rises source",
        ),
        _r(
            "capital",
            "capital",
            "country",
            "city",
            ["the capital of {x}", "the capital city of {x}"],
            ["What is the capital of {x}?", "Which city is the capital of {x}?"],
            "capital",
        ),
        _r(
            "birth_year",
            "birth year",
            "person",
            None,
            [],
            ["In what year was {x} born?", "When was {x} born?"],
            "born",
        ),
        _r(
            "founded_year",
            "founding year",
            "company",
            None,
            [],
            ["In what year was {x} founded?", "When was {x} founded?"],
            "founded",
        ),
        _r(
            "univ_founded_year",
            "founding year",
            "university",
            None,
            [],
            ["In what year was {x} founded?", "When was {x} established?"],
            "founded established",
        ),
        _r(
            "release_year",
            "release year",
            "film",
            None,
            [],
            ["In what year was {x} released?", "When did {x} come out?"],
            "released",
        ),
        _r(
            "published_year",
            "publication year",
            "book",
            None,
            [],
            ["In what year was {x} published?", "When was {x} first published?"],
            "published",
        ),
        _r(
            "population",
            "population",
            "city",
            None,
            [],
            ["What is the population of {x}?", "How many people live in {x}?"],
            "population inhabitants",
        ),
        _r(
            "length_km",
            "length in km",
            "river",
            None,
            [],
            ["How long is {x}, in kilometres?", "What is the length of {x} in km?"],
            "km long kilometres length",
        ),
    )
}

ATTRIBUTE_OF: dict[str, str] = {
    "person": "birth_year",
    "company": "founded_year",
    "university": "univ_founded_year",
    "film": "release_year",
    "book": "published_year",
    "city": "population",
    "river": "length_km",
}
"""The numeric attribute of each kind (countries have none)."""

HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {
        ("directed_by", "studied_at"),
        ("founded_by", "born_in"),
        ("written_by", "birth_year"),
        ("headquartered_in", "river"),
        ("born_in", "in_country"),
        ("located_in", "population"),
        ("capital", "river"),
    }
)
"""Two-relation compositions never asked in train/test; the ood panel asks them."""

COMPARISONS: dict[str, tuple[str, bool]] = {
    "person": ("Who was born first, {a} or {b}?", False),
    "company": ("Which was founded earlier, {a} or {b}?", False),
    "university": ("Which is older, {a} or {b}?", False),
    "film": ("Which film came out first, {a} or {b}?", False),
    "book": ("Which book was published first, {a} or {b}?", False),
    "city": ("Which city has more inhabitants, {a} or {b}?", True),
    "river": ("Which river is longer, {a} or {b}?", True),
}
"""Kind -> (question template, True when the larger value wins)."""


def relations_from(kind: str) -> list[Relation]:
    """Return the relations whose subject is ``kind``, in table order."""
    return [r for r in RELATIONS.values() if r.subject == kind]


def relations_into(kind: str) -> list[Relation]:
    """Return the entity relations that point to ``kind``, in table order."""
    return [r for r in RELATIONS.values() if r.target == kind]
