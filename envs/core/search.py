"""BM25 search shared by the envs (WebShop, SearchQA), on the tantivy library.

tantivy is a Lucene-style engine (the original WebShop used pyserini/Lucene). Queries from
agents are reduced to plain terms first, so no agent input can be a query-syntax error.
Ties are broken by document id (partitioned indexes: by index order), so results are
deterministic.

Index layout: postings keep term frequencies but no positions (BM25 never reads them and
queries are bags of terms, never phrases: half the index size), and the whole index is one
segment (the writer's heap budget is large enough not to flush mid-build), so index order is
the order documents were given.

Partitioned indexes (WebShop: one partition per product type). Documents are indexed
grouped by partition, and the build stores, for every term in at least 0.2% of the documents,
its highest BM25 score in each partition (taken from tantivy's own scores). A query then
sums those maxima into an upper bound per partition, searches the most promising partition,
and searches the others only where the bound reaches the k-th score found (or scans the whole
index when those partitions hold over 10% of it). Skipping a partition whose bound is below
the k-th score cannot change the top k, so the results are exactly those of a search over
the whole index: same scores, ties in index order (tested). It pays at 1M documents, where a
plain search scores every posting of every query term (tantivy's Python search collects
without block-max pruning); queries with under 50,000 postings are scanned whole.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
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


PART_FIELD = "part"
PARTITIONS_FILE = "partitions.npz"
TABLE_MIN_SHARE = 0.002
"""Terms in at least this share of the documents get a per-partition maximum; rarer terms
are bounded by their maximum over the whole index (looked up when first queried)."""
PLAN_MIN_POSTINGS = 50_000
"""A query whose terms have fewer postings than this is scanned whole (faster than planning)."""
PLAN_MAX_SHARE = 0.1
"""When the partitions left to search hold more than this share of the documents, one scan of
the whole index is cheaper than a search restricted to them."""
BOUND_MARGIN = 1e-4
"""Relative slack on the bounds: tantivy sums term scores in float32."""


def english_analyzer(stopwords: bool = True) -> tantivy.TextAnalyzer:
    """``en_stem`` with Lucene's English stopwords removed before stemming (or kept)."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
    )
    if stopwords:
        builder = builder.filter(tantivy.Filter.custom_stopword(sorted(ENGLISH_STOPWORDS)))
    return builder.filter(tantivy.Filter.stemmer("english")).build()


@dataclass(frozen=True)
class Partitions:
    """Where each partition's documents are, and per-partition score maxima of common terms.

    Attributes:
        starts: ``starts[p]:starts[p + 1]`` are the index positions of partition ``p``.
        terms: the row of ``maxima`` of each common term.
        maxima: ``maxima[row, p]``: the highest score of the term in partition ``p`` (0 where
            it does not occur).
    """

    starts: np.ndarray
    terms: dict[str, int]
    maxima: np.ndarray

    @cached_property
    def sizes(self) -> np.ndarray:
        """Documents per partition (read on every planned query: computed once)."""
        return np.diff(self.starts)

    def save(self, path: Path) -> None:
        """Write to ``path`` (``.npz``)."""
        names = np.array(sorted(self.terms, key=self.terms.__getitem__), dtype=str)
        np.savez(path, starts=self.starts, terms=names, maxima=self.maxima)

    @classmethod
    def load(cls, path: Path) -> Partitions:
        """Read what :meth:`save` wrote."""
        with np.load(path) as data:
            terms = {str(t): i for i, t in enumerate(data["terms"])}
            return cls(data["starts"], terms, data["maxima"])


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
        self,
        index: tantivy.Index,
        fields: tuple[str, ...],
        stopwords: bool = False,
        partitions: Partitions | None = None,
    ) -> None:
        self._index = _register(index)
        self.fields = fields
        self.stopwords = stopwords
        self.partitions = partitions
        self._searcher = index.searcher()
        self._schema_ = index.schema
        self._analyzer = english_analyzer(stopwords)
        self._index_max: dict[str, float] = {}

    @staticmethod
    def _schema(fields: tuple[str, ...], stopwords: bool, partitioned: bool) -> tantivy.Schema:
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("id", stored=True, indexed=True, fast=True)
        if partitioned:
            sb.add_integer_field(PART_FIELD, indexed=True)
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
        partition_of: Callable[[int], int] | None = None,
        progress: str | None = None,
        total: int | None = None,
    ) -> BM25Index:
        """Index ``(id, {field: text})`` pairs; write to ``path`` when given.

        Documents are numbered in the order given (one writer thread), so tantivy's own ties
        follow that order; ``heap_bytes`` bounds the writer's memory (a smaller budget flushes
        more, smaller segments: same results, slower queries); ``stopwords`` picks the
        ``en_stem_stop`` analyzer (see the module docstring). ``partition_of`` maps a document
        id to its partition (a small non-negative int) and makes a partitioned index (one text
        field); the documents must then come grouped by partition, in ascending order.
        ``progress``: show a bar with this description (``total``: the documents expected).
        """
        if partition_of is not None and len(fields) != 1:
            raise ValueError(f"Expect one text field in a partitioned index, actually: {fields}")
        schema = cls._schema(fields, stopwords, partition_of is not None)
        if path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(schema, path=str(path))
        else:
            index = tantivy.Index(schema)
        writer = _register(index).writer(heap_size=heap_bytes, num_threads=1)
        counts: list[int] = []
        if progress:
            from earlyexp.progress import bar

            docs = bar(docs, desc=progress, total=total, unit="doc")
        for doc_id, doc in docs:
            values: dict = {f: doc.get(f, "") for f in fields}
            if partition_of is not None:
                values[PART_FIELD] = _next_partition(counts, int(partition_of(doc_id)), doc_id)
            writer.add_document(tantivy.Document(id=int(doc_id), **values))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        built = cls(index, fields, stopwords)
        if partition_of is None:
            return built
        parts = built._partition_maxima(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        if path is not None:
            parts.save(Path(path) / PARTITIONS_FILE)
        return cls(index, fields, stopwords, parts)

    def _partition_maxima(self, starts: np.ndarray) -> Partitions:
        """Per-partition maxima of every term in at least ``TABLE_MIN_SHARE`` of the docs."""
        if self._searcher.num_segments != 1:
            raise RuntimeError(
                f"Expect a one-segment index to partition, actually: "
                f"{self._searcher.num_segments} segments (raise heap_bytes)"
            )
        field, n = self.fields[0], self.num_docs
        common = [
            (t, df)
            for t, df in self._searcher.terms_with_prefix(field, "")
            if df >= max(1.0, TABLE_MIN_SHARE * n)
        ]
        maxima = np.zeros((len(common), len(starts) - 1), np.float32)
        for row, (term, df) in enumerate(common):
            hits = self._searcher.search(self._term_query(term), df, count=False).hits
            scores = np.fromiter((h[0] for h in hits), np.float32, len(hits))
            where = np.fromiter((h[1].doc for h in hits), np.int64, len(hits))
            np.maximum.at(maxima[row], np.searchsorted(starts, where, side="right") - 1, scores)
        return Partitions(starts, {t: i for i, (t, _) in enumerate(common)}, maxima)

    @classmethod
    def open(cls, path: Path, fields: tuple[str, ...] = ("text",)) -> BM25Index:
        """Open an index written by :meth:`build` with ``path`` (with its analyzer)."""
        if not tantivy.Index.exists(str(path)):
            raise ValueError(f"Expect a tantivy index at {path}, actually: none there")
        meta = json.loads((Path(path) / "meta.json").read_text())
        analyzers = {
            f["options"]["indexing"]["tokenizer"] for f in meta["schema"] if f["name"] in fields
        }
        table = Path(path) / PARTITIONS_FILE
        parts = Partitions.load(table) if table.exists() else None
        return cls(tantivy.Index.open(str(path)), fields, analyzers == {STOP_ANALYZER}, parts)

    def search(self, query: str, k: int = 50) -> list[tuple[int, float]]:
        """Return up to ``k`` ``(doc id, score)`` pairs, best first; [] for an empty query."""
        terms = query_terms(query)
        if self.stopwords:  # the analyzer would drop them: a query of stopwords only is empty
            terms = [t for t in terms if t not in ENGLISH_STOPWORDS]
        if not terms or k <= 0:
            return []
        if self.partitions is not None:
            return self._search_partitioned(terms, k)
        parsed = self._index.parse_query(" ".join(terms), list(self.fields))
        hits = self._searcher.search(parsed, k, count=False).hits
        ids = self._ids([addr for _, addr in hits])
        found = list(zip(ids, (float(s) for s, _ in hits), strict=True))
        found.sort(key=lambda h: (-h[1], h[0]))
        return found

    def _part_query(self, part: int) -> tantivy.Query:
        return tantivy.Query.term_query(self._schema_, PART_FIELD, part, index_option="basic")

    def _term_query(self, token: str) -> tantivy.Query:
        return tantivy.Query.term_query(self._schema_, self.fields[0], token, index_option="freq")

    def _search_partitioned(self, words: list[str], k: int) -> list[tuple[int, float]]:
        """The top ``k`` of the whole index, searching only partitions that can hold them.

        The terms are those tantivy's query parser makes of the words: repeated words once,
        each word's tokens (so two words with one stem count twice, as in a parsed query).
        """
        tokens = [t for w in dict.fromkeys(words) for t in self._analyzer.analyze(w)]
        if not tokens:
            return []
        should = [(tantivy.Occur.Should, self._term_query(t)) for t in tokens]
        postings = sum(self._searcher.doc_freq(self.fields[0], t) for t in tokens)
        hits = self._planned(tokens, should, k) if postings >= PLAN_MIN_POSTINGS else None
        if hits is None:
            hits = self._restricted(should, None, k)
        ids = self._ids([addr for _, addr in hits])
        return [(i, float(s)) for i, (s, _) in zip(ids, hits, strict=True)]

    def _planned(self, tokens: list[str], should: list, k: int) -> list | None:
        """Search the best-bounded partition, then those whose bound reaches its k-th score.

        None when the partitions left are too large a share of the index to be worth it.
        """
        assert self.partitions is not None
        bound = self._bounds(tokens)
        bound[self.partitions.sizes == 0] = 0.0  # (rare terms are bounded everywhere)
        order = np.argsort(-bound, kind="stable")
        order = order[bound[order] > 0]
        if len(order) == 0:
            return []
        hits = self._restricted(should, order[:1], k)
        kth = hits[k - 1][0] if len(hits) >= k else -np.inf
        rest = order[1:][bound[order[1:]] * (1 + BOUND_MARGIN) >= kth]
        if len(rest) == 0:
            return hits
        if self.partitions.sizes[rest].sum() > PLAN_MAX_SHARE * self.num_docs:
            return None
        return sorted(hits + self._restricted(should, rest, k), key=_rank)[:k]

    def _bounds(self, tokens: list[str]) -> np.ndarray:
        """An upper bound on any document's score for ``tokens``, per partition."""
        assert self.partitions is not None
        parts = self.partitions
        bound = np.zeros(len(parts.starts) - 1)
        for t in tokens:
            row = parts.terms.get(t)
            bound += parts.maxima[row] if row is not None else self._max_score(t)
        return bound

    def _max_score(self, token: str) -> float:
        """The highest score of a (rare) term anywhere in the index (cached)."""
        best = self._index_max.get(token)
        if best is None:  # (a local: another thread may clear the cache meanwhile)
            if len(self._index_max) > 100_000:
                self._index_max.clear()
            hits = self._searcher.search(self._term_query(token), 1, count=False).hits
            best = self._index_max[token] = float(hits[0][0]) if hits else 0.0
        return best

    def _restricted(self, should: list, parts: np.ndarray | None, k: int) -> list:
        """Top ``k`` hits ``(score, address)`` of the terms, within ``parts`` (all if None).

        The partition filter scores 0 and is required; documents it lets through that match
        no term score exactly 0 and are dropped (every matching term scores above 0).
        """
        clauses = list(should)
        if parts is not None:  # (a term set query costs ~0.2 ms to set up, these ~1 us each)
            members = tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, self._part_query(int(p))) for p in parts]
            )
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(members, 0.0)))
        hits = self._searcher.search(tantivy.Query.boolean_query(clauses), k, count=False).hits
        return sorted((h for h in hits if h[0] > 0), key=_rank)

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


def _rank(hit: tuple) -> tuple:
    """Best first; ties in index order (tantivy's own order)."""
    return (-hit[0], hit[1].segment_ord, hit[1].doc)


def _next_partition(counts: list[int], part: int, doc_id: int) -> int:
    """Count a document of ``part``; partitions must come grouped, in ascending order."""
    if part < 0 or part < len(counts) - 1:
        raise ValueError(
            f"Expect documents grouped by partition in ascending order, actually: partition "
            f"{part} for document {doc_id} after partition {len(counts) - 1}"
        )
    while len(counts) <= part:
        counts.append(0)
    counts[part] += 1
    return part
