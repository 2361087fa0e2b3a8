"""Multi-hop questions composed from relation chains, each verified to have one answer.

A chain question starts at a named entity and follows relations (the last one may be a
numeric attribute): "In which country is the city where the director of X was born?".
A comparison asks which of two entities (possibly reached through one bridge relation each)
has the earlier year or the larger number. Every question is checked at generation:

* the start names resolve to exactly one entity each (names are unique after normalization);
* following the chain through the facts the *passages state* gives exactly one answer;
* a chain never revisits an entity and the answer never appears in the question;
* comparisons are between different entities with different values;
* the expert's search for every hop returns a passage stating that hop within the top k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from earlyexp.envs.searchqa.corpus import Corpus
from earlyexp.envs.searchqa.schema import (
    ATTRIBUTE_OF,
    COMPARISONS,
    HELD_OUT,
    RELATIONS,
    Relation,
    relations_from,
    relations_into,
)
from earlyexp.envs.searchqa.text import normalize_answer
from earlyexp.envs.searchqa.world import World

MAX_DRAWS = 500
OOD_MIX: tuple[tuple[str, float], ...] = (
    ("chain3", 0.3),
    ("chain4", 0.25),
    ("comparison", 0.25),
    ("held_out", 0.2),
)


@dataclass(frozen=True)
class Hop:
    """One retrieval step: the fact ``relation(subject)`` = ``value`` and the expert's query."""

    subject_id: int
    subject: str
    relation: str
    value: str
    query: str


@dataclass(frozen=True)
class SearchQATask:
    """A question, its answer and the hops that lead to it."""

    question: str
    answer: str
    kind: str
    relations: tuple[str, ...]
    hops: tuple[Hop, ...]

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes."""
        return asdict(self)


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def resolve(world: World, name: str, relations: tuple[str, ...]) -> set[str]:
    """Follow ``relations`` from the entity called ``name`` through the facts stated in passages.

    Returns the set of answer strings (a name or a number); one element when the question is
    well-posed.
    """
    frontier = set(world.by_name.get(normalize_answer(name), []))
    answers: set[str] = set()
    for i, rel in enumerate(relations):
        nxt: set[int] = set()
        for eid in frontier:
            if not world.stated.get((eid, rel)):
                continue
            if i == len(relations) - 1:
                answers.add(world.value(eid, rel))
            else:
                nxt.add(world.entities[eid].rels[rel])
        frontier = nxt
    return answers


def _retrievable(corpus: Corpus, subject_id: int, subject: str, rel: str, k: int) -> str | None:
    """Return an expert query whose top ``k`` results state ``rel`` of the subject, or None."""
    for query in (f"{subject} {RELATIONS[rel].keywords}", subject):
        hits = corpus.search(query, k)
        if any((subject_id, rel) in corpus.passage(p).facts for p in hits):
            return query
    return None


def _hops(corpus: Corpus, start: int, rels: tuple[str, ...], k: int) -> tuple[Hop, ...] | None:
    world = corpus.world
    hops, cur, seen = [], start, {start}
    for rel in rels:
        name = world.entities[cur].name
        query = _retrievable(corpus, cur, name, rel, k)
        if query is None:
            return None
        hops.append(Hop(cur, name, rel, world.value(cur, rel), query))
        if not RELATIONS[rel].is_attribute:
            cur = world.entities[cur].rels[rel]
            if cur in seen:
                return None
            seen.add(cur)
    return tuple(hops)


def _chain_relations(
    rng: np.random.Generator, length: int, held_out: bool | None
) -> tuple[str, ...]:
    """Draw a type-correct relation path; ``held_out`` True/False/None: must/mustn't/may use one."""
    for _ in range(MAX_DRAWS):
        kind = _pick(rng, sorted(ATTRIBUTE_OF) + ["country"])
        rels: list[str] = []
        for i in range(length):
            options = [r for r in relations_from(kind) if i == length - 1 or not r.is_attribute]
            if not options:
                break
            r: Relation = _pick(rng, options)
            rels.append(r.name)
            kind = r.target or ""
        pairs = set(zip(rels, rels[1:], strict=False))
        uses = bool(pairs & HELD_OUT)
        if len(rels) == length and (held_out is None or uses == held_out):
            return tuple(rels)
    raise RuntimeError(f"Expect a relation path of length {length}, actually: none drawn")


def _phrase(rng: np.random.Generator, rels: tuple[str, ...], start: str) -> str:
    x = start
    for rel in rels[:-1]:
        x = _pick(rng, list(RELATIONS[rel].phrases)).format(x=x)
    return _pick(rng, list(RELATIONS[rels[-1]].questions)).format(x=x)


def chain_task(
    corpus: Corpus, rng: np.random.Generator, length: int, held_out: bool | None, k: int
) -> SearchQATask | None:
    """One chain question of ``length`` hops, or None when the draw fails verification."""
    world = corpus.world
    rels = _chain_relations(rng, length, held_out)
    start = int(_pick(rng, world.by_kind[RELATIONS[rels[0]].subject]))
    name = world.entities[start].name
    hops = _hops(corpus, start, rels, k)
    if hops is None or len(world.by_name[normalize_answer(name)]) != 1:
        return None
    answers = resolve(world, name, rels)
    question = _phrase(rng, rels, name)
    if len(answers) != 1 or normalize_answer(hops[-1].value) in normalize_answer(question):
        return None
    kind = "held_out" if length == 2 and held_out else f"chain{length}"
    return SearchQATask(question, hops[-1].value, kind, rels, hops)


def _side(corpus: Corpus, rng: np.random.Generator, kind: str, bridged: bool, k: int):
    """One side of a comparison: (mention, entity id, hops) or None."""
    world = corpus.world
    attr = ATTRIBUTE_OF[kind]
    if not bridged:
        eid = int(_pick(rng, world.by_kind[kind]))
        hops = _hops(corpus, eid, (attr,), k)
        return None if hops is None else (world.entities[eid].name, eid, hops)
    bridge: Relation = _pick(rng, relations_into(kind))
    start = int(_pick(rng, world.by_kind[bridge.subject]))
    hops = _hops(corpus, start, (bridge.name, attr), k)
    if hops is None:
        return None
    mention = _pick(rng, list(bridge.phrases)).format(x=world.entities[start].name)
    return mention, world.entities[start].rels[bridge.name], hops


def comparison_task(corpus: Corpus, rng: np.random.Generator, k: int) -> SearchQATask | None:
    """Which of two entities has the earlier year / larger number; None when the draw fails."""
    world = corpus.world
    kind = _pick(rng, sorted(COMPARISONS))
    bridged = bool(rng.random() < 0.5) and bool(relations_into(kind))
    a, b = _side(corpus, rng, kind, bridged, k), _side(corpus, rng, kind, bridged, k)
    if a is None or b is None or a[1] == b[1]:
        return None
    for side in (a, b):
        hops = side[2]
        if len(resolve(world, hops[0].subject, tuple(h.relation for h in hops))) != 1:
            return None
    attr = ATTRIBUTE_OF[kind]
    va, vb = (world.entities[s[1]].attrs[attr] for s in (a, b))
    if va == vb:
        return None
    template, larger_wins = COMPARISONS[kind]
    winner = a if (va > vb) == larger_wins else b
    answer = world.entities[winner[1]].name
    question = template.format(a=a[0], b=b[0])
    rels = tuple(h.relation for h in a[2] + b[2])
    return SearchQATask(question, answer, "comparison", rels, a[2] + b[2])


def generate_task(corpus: Corpus, rng: np.random.Generator, split: str, k: int) -> SearchQATask:
    """Draw a verified question: 2-hop (no held-out composition) in train/test; see ``OOD_MIX``."""
    names, weights = zip(*OOD_MIX, strict=True)
    for _ in range(MAX_DRAWS):
        if split != "ood":
            task = chain_task(corpus, rng, 2, False, k)
        else:
            kind = str(rng.choice(names, p=weights))
            if kind == "comparison":
                task = comparison_task(corpus, rng, k)
            elif kind == "held_out":
                task = chain_task(corpus, rng, 2, True, k)
            else:
                task = chain_task(corpus, rng, int(kind[-1]), None, k)
        if task is not None:
            return task
    raise RuntimeError(f"Expect a verifiable question within {MAX_DRAWS} draws, actually: none")
