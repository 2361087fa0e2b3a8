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
