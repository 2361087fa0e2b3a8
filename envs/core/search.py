"""BM25 search shared by the envs (WebShop, SearchQA), on the tantivy library.

tantivy is a Lucene-style engine (the original WebShop used pyserini/Lucene). Queries from
agents are reduced to plain terms first, so no agent input can be a query-syntax error.
Ties are broken by document id, so results are deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import tantivy

_TERM = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_TERMS = 64


def query_terms(text: str) -> list[str]:
    """Return the lower-cased word terms of ``text`` (at most ``MAX_QUERY_TERMS``)."""
    return [t.lower() for t in _TERM.findall(text)][:MAX_QUERY_TERMS]


class BM25Index:
    """A BM25 index over documents with an integer id and one or more text fields.

    Build it with :meth:`build` (in memory, or on disk when ``path`` is given, so it can be
    reopened with :meth:`open` without re-indexing).
    """

    def __init__(self, index: tantivy.Index, fields: tuple[str, ...]) -> None:
        self._index = index
        self.fields = fields
        self._searcher = index.searcher()

    @staticmethod
    def _schema(fields: tuple[str, ...]) -> tantivy.Schema:
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("id", stored=True, indexed=True, fast=True)
        for f in fields:
            sb.add_text_field(f, stored=False, tokenizer_name="en_stem")
        return sb.build()

    @classmethod
    def build(
        cls,
        docs: Iterable[tuple[int, Mapping[str, str]]],
        fields: tuple[str, ...] = ("text",),
        path: Path | None = None,
        heap_bytes: int = 200_000_000,
    ) -> BM25Index:
        """Index ``(id, {field: text})`` pairs; write to ``path`` when given."""
        schema = cls._schema(fields)
        if path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(schema, path=str(path))
        else:
            index = tantivy.Index(schema)
        writer = index.writer(heap_size=heap_bytes, num_threads=1)
        for doc_id, doc in docs:
            writer.add_document(
                tantivy.Document(id=int(doc_id), **{f: doc.get(f, "") for f in fields})
            )
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return cls(index, fields)

    @classmethod
    def open(cls, path: Path, fields: tuple[str, ...] = ("text",)) -> BM25Index:
        """Open an index written by :meth:`build` with ``path``."""
        if not tantivy.Index.exists(str(path)):
            raise ValueError(f"Expect a tantivy index at {path}, actually: none there")
        return cls(tantivy.Index.open(str(path)), fields)

    def search(self, query: str, k: int = 50) -> list[tuple[int, float]]:
        """Return up to ``k`` ``(doc id, score)`` pairs, best first; [] for an empty query."""
        terms = query_terms(query)
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
