"""Render each entity as a short article in varied prose, sentence by sentence.

Every sentence carries the facts it states as ``(subject id, relation)`` pairs, so the env
knows which passages support which hop of a question.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

Sentence = tuple[str, tuple[tuple[int, str], ...]]
MAX_BACKLINKS = 2
MAX_NOTABLE = 3

_INTRO_FACT = {
    "person": "birth_year", "city": "population", "university": "univ_founded_year",
    "company": "founded_year", "film": "release_year", "book": "published_year",
    "river": "length_km",
}  # fmt: skip


class _EntityLike(Protocol):
    id: int
    kind: str
    name: str
    attrs: dict[str, int]
    rels: dict[str, int]
    flavor: dict[str, str]


def _choose(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _fields(e: _EntityLike) -> dict[str, Any]:
    out: dict[str, Any] = {"name": e.name, **e.flavor}
    out["book_genre"] = e.flavor.get("genre", "")
    for key, value in e.attrs.items():
        out[key] = f"{value:,}" if key == "population" else value
    out["founded_year"] = e.attrs.get("founded_year", e.attrs.get("univ_founded_year"))
    for key in ("profession", "industry", "genre", "book_genre"):
        word = str(out.get(key, ""))
        out[f"a_{key}"] = ("an " if word[:1] in "aeiou" else "a ") + word
    return out


def _backlinks(ents: Sequence[_EntityLike]) -> dict[tuple[int, str], list[int]]:
    """(object id, relation) -> subjects, for the 'directed', 'wrote' and 'notable' sentences."""
    back: dict[tuple[int, str], list[int]] = {}
    for e in ents:
        for rel in ("directed_by", "written_by", "born_in"):
            if rel in e.rels:
                back.setdefault((e.rels[rel], rel), []).append(e.id)
    return back


def _sentences(
    e: _EntityLike,
    ents: Sequence[_EntityLike],
    templates: dict[str, list[str]],
    back: dict[tuple[int, str], list[int]],
    rng: np.random.Generator,
) -> list[Sentence]:
    f = _fields(e)
    intro_fact = _INTRO_FACT.get(e.kind)
    intro = _choose(rng, templates[f"{e.kind}.intro"]).format(**f)
    body: list[Sentence] = []
    for rel, obj in e.rels.items():
        text = _choose(rng, templates[f"{e.kind}.{rel}"]).format(**f, obj=ents[obj].name)
        body.append((text, ((e.id, rel),)))
    for key, rel in (("person.directed", "directed_by"), ("person.wrote", "written_by")):
        if e.kind == "person":
            for work in back.get((e.id, rel), [])[:MAX_BACKLINKS]:
                text = _choose(rng, templates[key]).format(**f, obj=ents[work].name)
                body.append((text, ((work, rel),)))
    if e.kind == "city":
        born = back.get((e.id, "born_in"), [])[:MAX_NOTABLE]
        if len(born) >= 2:
            names = ", ".join(ents[p].name for p in born[:-1]) + " and " + ents[born[-1]].name
            text = _choose(rng, templates["city.notable"]).format(**f, list=names)
            body.append((text, tuple((p, "born_in") for p in born)))
    order = rng.permutation(len(body))
    first: Sentence = (intro, ((e.id, intro_fact),) if intro_fact else ())
    return [first] + [body[int(i)] for i in order]


def render_articles(
    ents: Sequence[_EntityLike],
    templates: dict[str, list[str]],
    fillers: list[str],
    rng: np.random.Generator,
) -> Iterator[tuple[int, str, list[Sentence]]]:
    """Yield ``(entity id, title, sentences)`` per entity, fillers mixed into the facts."""
    back = _backlinks(ents)
    for e in ents:
        sentences = _sentences(e, ents, templates, back, rng)
        for _ in range(int(rng.integers(1, 3))):
            filler = _choose(rng, fillers).format(it=e.name)
            at = int(rng.integers(1, len(sentences) + 1))
            sentences.insert(at, (filler[0].upper() + filler[1:], ()))
        yield e.id, e.name, sentences
