"""The WebShop catalog: built once per (size, seed), cached on disk, loaded in seconds.

On-disk form (a folder under the cache dir, written atomically: temp dir + rename):

- ``meta.json``: format version, size, seed, vocabulary digest, build time.
- ``type_ids.npy`` (int16), ``price.npy``, ``price_low.npy``, ``price_high.npy`` (float64),
  ``title_spans.npy`` (int64, start and end): the columns results pages and goal sampling
  read (42 MB at 1M products, read whole).
- ``titles.bin`` + ``title_spans.npy``: every title as UTF-8 in one blob, memory-mapped.
- ``index/``: the tantivy BM25 index over title, description, features and option text
  (one field, one segment, term frequencies without positions, English stopwords removed
  and the rest stemmed, as Lucene's ``EnglishAnalyzer``), partitioned by product type:
  products are indexed grouped by type, and ``index/partitions.npz`` holds each common
  term's best score per type, so a search skips the types that cannot reach its top 50
  (:mod:`earlyexp.envs.core.search`; same results as a scan of the whole index).

Descriptions, features, reviews, options and attributes are not stored: a product is a pure
function of ``(seed, index)`` (:mod:`earlyexp.envs.webshop.products`) and is regenerated on
demand behind an LRU cache, so a 1M-product catalog is a few hundred MB on disk and loads
without creating one Python object per product.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from earlyexp.envs.core.search import ENGLISH_STOPWORDS, BM25Index, query_terms
from earlyexp.envs.webshop.products import (
    Product,
    asin,
    generate_product,
    price_text,
    product_type_id,
)
from earlyexp.envs.webshop.vocab import Vocab, load_vocab

FORMAT_VERSION = 4
"""Bump when the on-disk form changes (2: one-segment index without positions; 3: English
stopwords removed at index time too; 4: index partitioned by type, title spans)."""
SIZES = (1_000, 10_000, 100_000, 1_000_000)
MIN_SIZE = 1_000
MAX_SIZE = 2_000_000
TOP_K = 50
FIELDS = ("text",)


def search_terms(query: str) -> str:
    """The words of ``query`` the index is asked for: distinct, lower-cased, no stopwords.

    Lucene's English stopwords are neither indexed nor searched, as in the original's
    pyserini (Lucene ``EnglishAnalyzer``) index; dropping them here too keeps the per-query
    cache key free of them.
    """
    return " ".join(dict.fromkeys(t for t in query_terms(query) if t not in ENGLISH_STOPWORDS))


def cache_root() -> Path:
    """``$EARLYEXP_CACHE`` if set, else ``~/.cache/earlyexp``."""
    env = os.environ.get("EARLYEXP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "earlyexp"


def check_size(size: object) -> int:
    """Return ``size`` if it is a valid catalog size, else raise a ValueError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"Expect num_products to be an int, actually: {size!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(
            f"Expect num_products in [{MIN_SIZE}, {MAX_SIZE}] (e.g. {SIZES}), actually: {size}"
        )
    return int(size)


def catalog_dir(size: int, seed: int, root: Path | None = None) -> Path:
    """The cache folder of the catalog ``(size, seed)`` for the shipped vocabulary."""
    version = f"v{FORMAT_VERSION}-{load_vocab().digest}"
    return (root or cache_root()) / "webshop" / f"{size}-{seed}-{version}"


class _Columns:
    """Accumulates the stored columns while the index consumes the documents."""

    def __init__(self, type_ids: np.ndarray, folder: Path) -> None:
        size = len(type_ids)
        self.type_ids = type_ids.astype(np.int16)  # known before the products: the index order
        self.price = np.zeros(size, np.float64)
        self.low = np.zeros(size, np.float64)
        self.high = np.zeros(size, np.float64)
        self.spans = np.zeros((size, 2), np.int64)
        self._titles = open(folder / "titles.bin", "wb")  # noqa: SIM115 (closed in save)
        self._end = 0
        self._folder = folder

    def add(self, p: Product) -> None:
        """Record ``p`` (products come in index order, grouped by type)."""
        i = p.index
        self.price[i] = p.price
        self.low[i], self.high[i] = p.price_range
        data = p.title.encode()
        self._titles.write(data)
        self.spans[i] = self._end, self._end + len(data)
        self._end += len(data)

    def save(self) -> None:
        self._titles.close()
        for name, arr in (
            ("type_ids", self.type_ids), ("price", self.price), ("price_low", self.low),
            ("price_high", self.high), ("title_spans", self.spans),
        ):  # fmt: skip
            np.save(self._folder / f"{name}.npy", arr)


def index_order(vocab: Vocab, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The type of every product, and the products grouped by type (ascending index within)."""
    types = np.fromiter((product_type_id(vocab, seed, i) for i in range(size)), np.int64, size)
    return types, np.argsort(types, kind="stable")


def _documents(
    vocab: Vocab, seed: int, order: np.ndarray, cols: _Columns, progress: bool
) -> Iterator:
    items: Iterable = order
    if progress:
        from tqdm import tqdm

        items = tqdm(order, desc=f"webshop catalog {len(order)}", unit="product", mininterval=2.0)
    for i in items:
        p = generate_product(vocab, seed, int(i))
        cols.add(p)
        yield p.index, {"text": p.search_text}


STALE_BUILD_SECONDS = 6 * 3600


def _remove_stale_builds(folder: Path) -> None:
    """Delete temp dirs of builds of ``folder`` that were killed (older than 6 hours)."""
    now = time.time()
    for tmp in folder.parent.glob(f".tmp-{folder.name}-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def _remove_older_formats(folder: Path) -> None:
    """Delete the catalogs of the same size and seed in an older on-disk format.

    This version cannot load them and would rebuild rather than read them (a 1M-product one
    is about 150 MB); newer formats, other sizes and other seeds are kept.
    """
    size_seed = folder.name.split("-v")[0]
    for old in folder.parent.glob(f"{size_seed}-v*-*"):
        match = re.fullmatch(rf"{re.escape(size_seed)}-v(\d+)-[0-9a-f]+", old.name)
        if match and int(match.group(1)) < FORMAT_VERSION:
            shutil.rmtree(old, ignore_errors=True)


def build_catalog(size: int, seed: int, folder: Path, progress: bool = False) -> Path:
    """Build the catalog into ``folder`` atomically; return ``folder``.

    The files are written to a temp dir beside ``folder`` and renamed into place, so parallel
    builders never see a half-written catalog; the loser of a race discards its copy.
    """
    size, vocab = check_size(size), load_vocab()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(folder)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        types, order = index_order(vocab, size, seed)
        cols = _Columns(types, tmp)
        docs = _documents(vocab, seed, order, cols, progress)
        BM25Index.build(
            docs, FIELDS, path=tmp / "index", stopwords=True, partition_of=types.__getitem__
        )
        cols.save()
        meta = {"format": FORMAT_VERSION, "size": size, "seed": seed, "vocab": vocab.digest,
                "build_seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").exists():
                raise
        _remove_older_formats(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _map_file(path: Path) -> mmap.mmap | bytes:
    """Memory-map ``path`` read-only (an empty file reads as ``b""``)."""
    if path.stat().st_size == 0:
        return b""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


class Catalog:
    """A loaded catalog: memory-mapped columns, the on-disk index, products on demand.

    Args:
        folder: a folder written by :func:`build_catalog`.
        product_cache: how many regenerated products to keep (LRU).
    """

    def __init__(self, folder: Path, product_cache: int = 20_000) -> None:
        self.folder = Path(folder)
        meta = json.loads((self.folder / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"Expect catalog format {FORMAT_VERSION}, actually: {meta.get('format')}"
            )
        self.meta = meta
        self.size, self.seed = int(meta["size"]), int(meta["seed"])
        self.vocab = load_vocab()
        load = lambda name: np.load(self.folder / f"{name}.npy")  # noqa: E731
        self.type_ids, self.price = load("type_ids"), load("price")
        self.price_low, self.price_high = load("price_low"), load("price_high")
        self._spans = load("title_spans")
        self._titles = _map_file(self.folder / "titles.bin")
        self.index = BM25Index.open(self.folder / "index", FIELDS)
        self.product = lru_cache(maxsize=product_cache)(self._product)
        self._search = lru_cache(maxsize=8192)(self._search_terms)
        self._by_type: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.size

    def _product(self, index: int) -> Product:
        return generate_product(self.vocab, self.seed, index)

    def title(self, index: int) -> str:
        """The title of product ``index`` (read from the stored column)."""
        lo, hi = (int(x) for x in self._spans[index])
        return self._titles[lo:hi].decode()

    def asin(self, index: int) -> str:
        """The ASIN of product ``index``."""
        return asin(self.seed, int(index))

    def price_text(self, index: int) -> str:
        """The price of product ``index`` as results pages show it."""
        return price_text(float(self.price_low[index]), float(self.price_high[index]))

    def search(self, query: str) -> tuple[int, ...]:
        """Return the indices of the top-50 BM25 results of ``query`` (cached per query).

        The query is reduced to its distinct words minus English stopwords (Lucene's list, as
        the original's pyserini analyzer), so ``party mix, 2 pound`` and ``2 pound party mix``
        share a cache entry only when they are the same bag of words in the same order.
        """
        return self._search(search_terms(query))

    def _search_terms(self, terms: str) -> tuple[int, ...]:
        return tuple(i for i, _ in self.index.search(terms, TOP_K))

    def of_type(self, type_id: int) -> np.ndarray:
        """Return the indices of the products of ``type_id`` (ascending)."""
        if type_id not in self._by_type:
            self._by_type[type_id] = np.flatnonzero(np.asarray(self.type_ids) == type_id)
        return self._by_type[type_id]


_LOADED: dict[Path, Catalog] = {}


def load_catalog(size: int = 10_000, seed: int = 0, progress: bool = False) -> Catalog:
    """Return the catalog ``(size, seed)``: built on first use, then loaded from the cache.

    Loaded catalogs are shared within a process (they are read-only).
    """
    size = check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expect catalog_seed to be a non-negative int, actually: {seed!r}")
    folder = catalog_dir(size, int(seed))
    if folder not in _LOADED:
        if not (folder / "meta.json").exists():
            build_catalog(size, int(seed), folder, progress=progress)
        _LOADED[folder] = Catalog(folder)
    return _LOADED[folder]
