"""BM25 search shared by the envs (WebShop, SearchQA), on the tantivy library.

tantivy is a Lucene-style engine (the original WebShop used pyserini/Lucene). Queries from
agents are reduced to plain terms first, so no agent input can be a query-syntax error.
Ties are broken by document id, so results are deterministic.

Index layout: postings keep term frequencies but no positions (BM25 never reads them and
queries are bags of terms, never phrases: half the index size), and the whole index is one
segment (the writer's heap budget is large enough not to flush mid-build), so block-max
pruning runs once over the whole index instead of restarting its top-k threshold per segment.

Analyzers: ``en_stem`` (tantivy's: split on non-alphanumerics, drop tokens over 40 bytes,
lower-case, English Snowball stemmer) or, with ``stopwords=True``, ``en_stem_stop``: the same
plus Lucene's English stopword list removed before stemming, at index and query time, as
Lucene's ``EnglishAnalyzer`` (the original WebShop's pyserini index) does. The analyzer is
chosen at build time and recorded in the index's schema, so :meth:`BM25Index.open` needs no
argument for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import tantivy

_TERM = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_TERMS = 64
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
"""Lucene's English stopwords (``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``)."""
STOP_ANALYZER = "en_stem_stop"
HEAP_BYTES = 1_000_000_000
"""The writer's memory budget: a segment is flushed when it is full (200 MB held 654k WebShop
products of ~80 words), so this keeps the 2M-product maximum in one segment; memory is taken
as used, not up front (peak RSS of a 1M-product catalog build: about 320 MB)."""


def query_terms(text: str) -> list[str]:
    """Return the lower-cased word terms of ``text`` (at most ``MAX_QUERY_TERMS``).

    Lower-cased before the split, so each term is one token for the index's tokenizer (``İ``
    lower-cases to ``i`` plus a combining dot, which would otherwise split a term in two and
    make it a phrase query, which an index without positions cannot answer).
    """
    return _TERM.findall(text.lower())[:MAX_QUERY_TERMS]


def english_analyzer() -> tantivy.TextAnalyzer:
    """``en_stem`` with Lucene's English stopwords removed before stemming."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.custom_stopword(sorted(ENGLISH_STOPWORDS)))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _register(index: tantivy.Index) -> tantivy.Index:
    """Register the custom analyzer (needed by writers and query parsers of every index)."""
    index.register_tokenizer(STOP_ANALYZER, english_analyzer())
    return index


class BM25Index:
    """A BM25 index over documents with an integer id and one or more text fields.

    Build it with :meth:`build` (in memory, or on disk when ``path`` is given, so it can be
    reopened with :meth:`open` without re-indexing).
    """

    def __init__(
        self, index: tantivy.Index, fields: tuple[str, ...], stopwords: bool = False
    ) -> None:
        self._index = _register(index)
        self.fields = fields
        self.stopwords = stopwords
        self._searcher = index.searcher()

    @staticmethod
    def _schema(fields: tuple[str, ...], stopwords: bool) -> tantivy.Schema:
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("id", stored=True, indexed=True, fast=True)
        analyzer = STOP_ANALYZER if stopwords else "en_stem"
        for f in fields:
            sb.add_text_field(f, stored=False, tokenizer_name=analyzer, index_option="freq")
        return sb.build()

    @classmethod
    def build(
        cls,
        docs: Iterable[tuple[int, Mapping[str, str]]],
        fields: tuple[str, ...] = ("text",),
        path: Path | None = None,
        heap_bytes: int = HEAP_BYTES,
        stopwords: bool = False,
    ) -> BM25Index:
        """Index ``(id, {field: text})`` pairs; write to ``path`` when given.

        Documents are numbered in the order given (one writer thread), so tantivy's own ties
        follow that order; ``heap_bytes`` bounds the writer's memory (a smaller budget flushes
        more, smaller segments: same results, slower queries); ``stopwords`` picks the
        ``en_stem_stop`` analyzer (see the module docstring).
        """
        schema = cls._schema(fields, stopwords)
        if path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(schema, path=str(path))
        else:
            index = tantivy.Index(schema)
        writer = _register(index).writer(heap_size=heap_bytes, num_threads=1)
        for doc_id, doc in docs:
            writer.add_document(
                tantivy.Document(id=int(doc_id), **{f: doc.get(f, "") for f in fields})
            )
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return cls(index, fields, stopwords)

    @classmethod
    def open(cls, path: Path, fields: tuple[str, ...] = ("text",)) -> BM25Index:
        """Open an index written by :meth:`build` with ``path`` (with its analyzer)."""
        if not tantivy.Index.exists(str(path)):
            raise ValueError(f"Expect a tantivy index at {path}, actually: none there")
        meta = json.loads((Path(path) / "meta.json").read_text())
        analyzers = {
            f["options"]["indexing"]["tokenizer"] for f in meta["schema"] if f["name"] in fields
        }
        return cls(tantivy.Index.open(str(path)), fields, analyzers == {STOP_ANALYZER})

    def search(self, query: str, k: int = 50) -> list[tuple[int, float]]:
        """Return up to ``k`` ``(doc id, score)`` pairs, best first; [] for an empty query."""
        terms = query_terms(query)
        if self.stopwords:  # the analyzer would drop them: a query of stopwords only is empty
            terms = [t for t in terms if t not in ENGLISH_STOPWORDS]
        if not terms or k <= 0:
            return []
        parsed = self._index.parse_query(" ".join(terms), list(self.fields))
        # count=False lets tantivy prune with block-max WAND (no total-hit count is needed).
        hits = self._searcher.search(parsed, k, count=False).hits
        ids = self._ids([addr for _, addr in hits])
        found = list(zip(ids, (float(s) for s, _ in hits), strict=True))
        found.sort(key=lambda h: (-h[1], h[0]))
        return found

    def _ids(self, addresses: list) -> list[int]:
        """The ``id`` of each hit: read from the fast field in one batch where supported."""
        if hasattr(self._searcher, "fast_field_values"):  # tantivy >= 0.25
            values = self._searcher.fast_field_values("id", addresses)
            pairs = zip(values, addresses, strict=True)
            return [self._stored_id(a) if v is None else int(v) for v, a in pairs]
        return [self._stored_id(a) for a in addresses]

    def _stored_id(self, address) -> int:
        return int(self._searcher.doc(address)["id"][0])

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        return int(self._searcher.num_docs)

    def __getstate__(self) -> dict:
        raise TypeError("BM25Index cannot be pickled; rebuild or reopen it from its path")
