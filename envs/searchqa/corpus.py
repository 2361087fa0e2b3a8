"""The encyclopedia plus its BM25 index, cached per process and on disk.

The world is regenerated from its seed (about 0.3 s for 3,000 articles); the tantivy index
is written once to ``$EARLYEXP_CACHE/searchqa/<version>-s<seed>-n<articles>-<digest>/``
(default ``~/.cache/earlyexp``; the digest covers the passages' text) by building into a
private temporary folder and renaming it into place, so parallel processes
never see a half-written index, and reopened by every later process. Where the cache
cannot be written, the index is built in memory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from earlyexp.envs.core.search import BM25Index
from earlyexp.envs.searchqa.world import Passage, World, generate_world
from earlyexp.progress import building

FORMAT = "v3"
"""Bump when world generation, passage rendering or the index layout changes (invalidates
cached indexes). v3: the index keeps no positions (:mod:`earlyexp.envs.core.search`)."""

_CACHE: dict[tuple[int, int], Corpus] = {}


def cache_root() -> Path:
    """The cache folder: ``$EARLYEXP_CACHE`` or ``~/.cache/earlyexp``."""
    return Path(os.environ.get("EARLYEXP_CACHE") or Path.home() / ".cache" / "earlyexp")


class Corpus:
    """A world and a BM25 index over its passages (title + text)."""

    def __init__(self, world: World, index: BM25Index) -> None:
        self.world = world
        self.index = index

    def search(self, query: str, k: int) -> list[int]:
        """Return the ids of the ``k`` best passages for ``query`` (ties broken by id)."""
        return [doc for doc, _ in self.index.search(query, k)]

    def passage(self, pid: int) -> Passage:
        """Return passage ``pid``."""
        return self.world.passages[pid]


def _docs(world: World):
    for p in world.passages:
        yield p.id, {"text": f"{p.title}. {p.text}"}


def corpus_digest(world: World) -> str:
    """First 12 hex digits of the SHA-256 of every passage (a changed template changes it)."""
    h = hashlib.sha256()
    for p in world.passages:
        h.update(f"{p.id}\t{p.title}\t{p.text}\n".encode())
    return h.hexdigest()[:12]


def _open_or_build(world: World, folder: Path) -> BM25Index:
    try:
        return BM25Index.open(folder)
    except ValueError:
        pass
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    n = len(world.passages)
    with building(f"the SearchQA BM25 index ({n:,} passages)", "about 1 s per 100k passages"):
        BM25Index.build(_docs(world), path=tmp, progress="SearchQA index", total=n)
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race: use its index
        shutil.rmtree(tmp, ignore_errors=True)
    return BM25Index.open(folder)


def get_corpus(seed: int, n_articles: int, cache: bool = True) -> Corpus:
    """Return the corpus of ``(seed, n_articles)``, from the process cache when possible.

    ``cache=False`` builds the index in memory and leaves the disk alone.
    """
    key = (seed, n_articles)
    if key not in _CACHE:
        world = generate_world(seed, n_articles)
        index = None
        if cache:
            name = f"{FORMAT}-s{seed}-n{n_articles}-{corpus_digest(world)}"
            try:
                index = _open_or_build(world, cache_root() / "searchqa" / name)
            except OSError:  # read-only home or full disk: fall back to memory
                index = None
        if index is None:
            index = BM25Index.build(_docs(world))
        if index.num_docs != len(world.passages):
            raise RuntimeError(
                f"Expect {len(world.passages)} indexed passages, actually: {index.num_docs}"
            )
        _CACHE[key] = Corpus(world, index)
    return _CACHE[key]
