"""The shared BM25 index (envs/core/search.py): layout and any text as a query."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from earlyexp.envs.core.search import BM25Index, query_terms

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
