"""The shared BM25 index (envs/core/search.py): layout and any text as a query."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from earlyexp.envs.core.search import BM25Index, english_analyzer, query_terms

DOCS = ["gluten free party mix", "İstanbul travel guide", "ai b", "red shoes, size 9", "中文 书"]


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build((i, {"text": t}) for i, t in enumerate(DOCS))


def test_index_is_one_segment_without_positions(tmp_path):
    built = BM25Index.build(((i, {"text": t}) for i, t in enumerate(DOCS)), path=tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert len(meta["segments"]) == 1 and built.num_docs == len(DOCS)
    text = next(f for f in meta["schema"] if f["name"] == "text")
    assert text["options"]["indexing"]["record"] == "freq"
    assert BM25Index.open(tmp_path).search("travel", 5)[0][0] == 1


def test_search_finds_stemmed_terms_best_first(index):
    hits = index.search("Party MIXES!", 5)
    assert hits[0][0] == 0 and len(hits) == 1
    assert index.search("shoe", 5)[0][0] == 3 and index.search("中文", 5)[0][0] == 4
    assert index.search("", 5) == [] and index.search("!!! ???", 5) == []


def test_every_query_term_is_one_token_so_any_text_is_a_valid_query(index):
    # "İ" lower-cases to "i" + U+0307: split after lower-casing, never a phrase query
    assert query_terms("aİb") == ["ai", "b"] and index.search("aİb", 5)[0][0] == 2
    rng = np.random.default_rng(0)
    for _ in range(300):
        cps = rng.integers(32, sys.maxunicode, size=int(rng.integers(1, 30)))
        text = "".join(chr(c) for c in cps if not 0xD800 <= c < 0xE000)
        index.search(text, 5)  # never raises


def test_stopword_analyzer_drops_lucene_stopwords_at_index_and_query_time(tmp_path):
    docs = ["the party mix", "party mix", "a bag of it"]
    built = BM25Index.build(
        ((i, {"text": t}) for i, t in enumerate(docs)), path=tmp_path, stopwords=True
    )
    hits = dict(built.search("party", 5))
    assert hits[0] == pytest.approx(hits[1])  # "the" is not indexed: same length, same score
    assert built.search("the", 5) == [] and built.search("of it", 5) == []
    assert built.search("bags", 5)[0][0] == 2  # stemming kept
    reopened = BM25Index.open(tmp_path)  # the analyzer is re-registered on open
    assert reopened.stopwords and reopened.search("the mixes", 5) == built.search("mix", 5)
    assert reopened.search("The, of IT!", 5) == []
    assert english_analyzer().analyze("The Bags of it") == ["bag"]
    plain = BM25Index.build((i, {"text": t}) for i, t in enumerate(docs))
    assert plain.search("the", 5)[0][0] == 0


def _partitioned_corpus(seed: int = 0) -> list[tuple[int, int, str]]:
    """(id, partition, text): common words, partition-specific words, exact duplicates."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(2400):
        part = i * 12 // 2400
        common = [f"w{rng.integers(0, 10)}" for _ in range(rng.integers(1, 6))]
        local = [f"p{part}x{rng.integers(0, 4)}" for _ in range(rng.integers(0, 3))]
        rare = [f"w{rng.integers(10, 60)}" for _ in range(rng.integers(0, 4))]
        docs.append((i, part, " ".join(common + local + rare)))
    for i in range(2400, 2460):  # the same text in every partition: ties across partitions
        docs.append((i, (i - 2400) % 12, "w1 w2 p3x1"))
    docs.sort(key=lambda d: (d[1], d[0]))
    return docs


def _random_query(rng: np.random.Generator) -> str:
    pool = [f"w{i}" for i in range(60)] + [f"p{p}x{j}" for p in range(12) for j in range(4)]
    return " ".join(pool[i] for i in rng.integers(0, len(pool), size=rng.integers(1, 7)))


@pytest.mark.parametrize("max_share", [0.0, 0.1, 1.0])
def test_partitioned_search_equals_a_scan_of_the_whole_index(monkeypatch, max_share):
    from earlyexp.envs.core import search

    docs = _partitioned_corpus()
    whole = BM25Index.build(((i, {"text": t}) for i, _, t in docs), stopwords=True)
    part_of = {i: p for i, p, _ in docs}
    parted = BM25Index.build(
        ((i, {"text": t}) for i, _, t in docs), stopwords=True, partition_of=part_of.__getitem__
    )
    assert parted.partitions is not None and parted.partitions.sizes.sum() == len(docs)
    monkeypatch.setattr(search, "PLAN_MIN_POSTINGS", 0)  # plan every query
    monkeypatch.setattr(search, "PLAN_MAX_SHARE", max_share)
    searched: list = []
    restricted = parted._restricted
    monkeypatch.setattr(
        parted, "_restricted", lambda s, p, k: searched.append(p) or restricted(s, p, k)
    )
    rng = np.random.default_rng(1)
    position = {doc_id: n for n, (doc_id, _, _) in enumerate(docs)}
    for _ in range(300):
        query = _random_query(rng)
        for k in (1, 7, 50):
            got = parted.search(query, k)
            want = whole.search(query, k)  # ties by id there: reorder them by index position
            want.sort(key=lambda h: (-h[1], position[h[0]]))
            assert got == want, (query, k)
    skipped = [p for p in searched if p is not None and len(p) < 11]
    assert skipped, "no query skipped a partition"
    if max_share == 0.0:
        assert any(p is None for p in searched)  # the whole-index fallback ran
    if max_share == 1.0:
        assert all(p is not None for p in searched)


def test_partitioned_index_reopens_with_its_table(tmp_path):
    docs = _partitioned_corpus(2)
    part_of = {i: p for i, p, _ in docs}
    built = BM25Index.build(
        ((i, {"text": t}) for i, _, t in docs), path=tmp_path, partition_of=part_of.__getitem__
    )
    reopened = BM25Index.open(tmp_path)
    assert reopened.partitions is not None
    assert reopened.partitions.terms == built.partitions.terms
    assert np.array_equal(reopened.partitions.maxima, built.partitions.maxima)
    for q in ("w1 w2 p3x1", "w5 p7x2 w33", "w44"):
        assert reopened.search(q, 20) == built.search(q, 20)


def test_partitions_must_come_grouped_in_ascending_order():
    docs = [(0, {"text": "a b"}), (1, {"text": "c"}), (2, {"text": "d"})]
    with pytest.raises(ValueError, match="grouped by partition in ascending order"):
        BM25Index.build(docs, partition_of=[0, 1, 0].__getitem__)
    with pytest.raises(ValueError, match="one text field"):
        BM25Index.build(docs, fields=("title", "body"), partition_of=[0, 0, 1].__getitem__)


def test_partitioned_search_is_thread_safe(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from earlyexp.envs.core import search

    docs = _partitioned_corpus(3)
    part_of = {i: p for i, p, _ in docs}
    parted = BM25Index.build(
        ((i, {"text": t}) for i, _, t in docs), partition_of=part_of.__getitem__
    )
    monkeypatch.setattr(search, "PLAN_MIN_POSTINGS", 0)
    rng = np.random.default_rng(4)
    queries = [_random_query(rng) for _ in range(200)]
    want = [parted.search(q, 20) for q in queries]
    parted._index_max.clear()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda q: parted.search(q, 20), queries * 3))
    assert got == want * 3
