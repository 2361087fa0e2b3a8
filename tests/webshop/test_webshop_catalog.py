from __future__ import annotations

import json
import multiprocessing as mp
import re

import numpy as np
import pytest

from earlyexp.envs.core.search import english_analyzer
from earlyexp.envs.webshop import catalog as catalog_mod
from earlyexp.envs.webshop.catalog import Catalog, build_catalog, catalog_dir, load_catalog
from earlyexp.envs.webshop.products import asin, generate_product
from earlyexp.envs.webshop.vocab import load_vocab


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog(10_000)


def test_products_are_deterministic_and_independent_of_catalog_size(cat):
    vocab = load_vocab()
    for i in (0, 1, 777, 9999):
        assert generate_product(vocab, 0, i) == generate_product(vocab, 0, i)
        assert cat.title(i) == generate_product(vocab, 0, i).title
    small = load_catalog(1_000)
    assert [small.title(i) for i in range(0, 1000, 97)] == [
        cat.title(i) for i in range(0, 1000, 97)
    ]
    assert generate_product(vocab, 1, 5) != generate_product(vocab, 0, 5)


def test_products_are_well_formed(cat):
    vocab = load_vocab()
    tops = set(vocab.top_categories.values())
    for i in range(0, 10_000, 53):
        p = cat.product(i)
        assert p.category[0] in tops and p.type_name in p.title.lower()
        assert 2 <= len(p.attributes) <= 4 and p.features and p.reviews
        assert p.price_range[0] <= p.price <= p.price_range[1]
        assert p.price == pytest.approx(cat.price[i])
        labels = [v.lower() for _, values in p.options for v in values]
        assert len(labels) == len(set(labels)), "option values must be unique labels on a page"
        assert all(1 <= stars <= 5 for stars, _ in p.reviews)


def test_template_text_shares_no_stem_with_goal_words():
    """Shop boilerplate never matches a goal's attribute, option or type words (nor, as a
    substring, an attribute: the reward finds attributes in the text), so a goal query
    matches what a product is, not the sentences every product shares."""
    vocab, analyze = load_vocab(), english_analyzer().analyze
    goal_words = [a for attrs in vocab.attributes.values() for a in attrs]
    goal_words += [v for pool in vocab.option_pools.values() for v in pool.values]
    goal_words += [t.name for t in vocab.types]
    stems = {s for w in goal_words for s in analyze(w)}
    d, f = vocab.text["descriptions"], vocab.text["features"]
    fixed = [*d["opening"], *d["attribute"], *d["closing"], *f["attribute"], *f["generic"]]
    fixed += [s for sentences in d["category"].values() for s in sentences]
    fixed += [*vocab.text["title_suffixes"], *vocab.lines]
    attributes = {a for attrs in vocab.attributes.values() for a in attrs}
    for template in fixed:
        text = re.sub(r"\{\w+\}", " ", template)
        assert not set(analyze(text)) & stems, template
        assert not [a for a in attributes if a in text.lower()], template


def test_catalog_covers_the_five_webshop_categories_and_held_out_ones(cat):
    vocab = load_vocab()
    tops = {t.top for t in vocab.types}
    assert {"beauty", "electronics", "fashion", "furniture", "grocery"} <= tops
    counts = np.bincount(cat.type_ids, minlength=len(vocab.types))
    assert counts.min() > 10
    ood = {t.top for t in vocab.types_of(ood=True)}
    assert ood - {t.top for t in vocab.types_of(ood=False)} == {"pets", "sports"}
    assert {t.name for t in vocab.types_of(True)}.isdisjoint(
        {t.name for t in vocab.types_of(False)}
    )


def test_asins_are_unique(cat):
    codes = {cat.asin(i) for i in range(len(cat))}
    assert len(codes) == len(cat)
    assert all(len(c) == 10 and c.startswith("B0") for c in list(codes)[:100])
    assert asin(0, 12) == cat.asin(12)


def test_search_returns_top_50_deterministically(cat):
    hits = cat.search("gluten free party mix 2 pound")
    assert len(hits) == 50 and len(set(hits)) == 50
    raw = [i for i, _ in cat.index.search("gluten free party mix 2 pound", 50)]
    assert list(hits) == raw
    assert sum("party mix" in cat.title(i).lower() for i in hits[:10]) == 10
    assert cat.search("") == () and cat.search("!!! ???") == ()
    assert cat.search("Party MIX, gluten-free") == cat.search("party mix gluten free")


def test_index_is_grouped_by_type_and_planned_search_equals_the_whole_scan(cat, monkeypatch):
    from earlyexp.envs.core import search
    from earlyexp.envs.webshop.goals import make_goal

    parts = cat.index.partitions
    assert parts is not None and np.array_equal(
        parts.sizes, np.bincount(cat.type_ids, minlength=len(parts.sizes))
    )
    monkeypatch.setattr(search, "PLAN_MIN_POSTINGS", 0)  # plan even at 10k products
    rng = np.random.default_rng(0)
    planned = 0
    for _ in range(100):
        terms = catalog_mod.search_terms(make_goal(cat, rng, "train").query)
        for query in (terms, " ".join(terms.split()[-3:])):
            tokens = [t for w in query.split() for t in english_analyzer().analyze(w)]
            should = [(search.tantivy.Occur.Should, cat.index._term_query(t)) for t in tokens]
            planned += cat.index._planned(tokens, should, 50) is not None
            whole = cat.index._restricted(should, None, 50)
            ids = cat.index._ids([a for _, a in whole])
            want = [(i, float(s)) for i, (s, _) in zip(ids, whole, strict=True)]
            assert cat.index.search(query, 50) == want
    assert planned > 0


def test_of_type_lists_exactly_that_type(cat):
    ids = cat.of_type(3)
    assert len(ids) and all(cat.product(int(i)).type_id == 3 for i in ids[:20])
    assert (np.asarray(cat.type_ids)[ids] == 3).all()


def test_size_and_seed_are_validated():
    with pytest.raises(ValueError, match="num_products"):
        load_catalog(10)
    with pytest.raises(ValueError, match="num_products"):
        load_catalog("10k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="catalog_seed"):
        load_catalog(1000, -1)


def test_build_writes_the_cache_atomically_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("EARLYEXP_CACHE", str(tmp_path))
    monkeypatch.setattr(catalog_mod, "_LOADED", {})
    folder = catalog_dir(1_000, 3)
    assert folder.parent == tmp_path / "webshop"
    first = load_catalog(1_000, 3)
    assert first.folder == folder and (folder / "meta.json").exists()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["size"] == 1000 and meta["seed"] == 3
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".tmp")] == []
    monkeypatch.setattr(catalog_mod, "_LOADED", {})
    mtime = (folder / "meta.json").stat().st_mtime_ns
    again = load_catalog(1_000, 3)
    assert (folder / "meta.json").stat().st_mtime_ns == mtime  # loaded, not rebuilt
    assert again.title(5) == first.title(5) and again.search("shampoo") == first.search("shampoo")


def _build(root: str) -> str:
    import os

    os.environ["EARLYEXP_CACHE"] = root
    folder = catalog_dir(1_000, 7)
    build_catalog(1_000, 7, folder)
    return Catalog(folder).title(1)


def test_parallel_builders_do_not_race(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        titles = pool.map(_build, [str(tmp_path)] * 2)
    assert titles[0] == titles[1]
    entries = sorted(p.name for p in (tmp_path / "webshop").iterdir())
    assert len(entries) == 1 and not entries[0].startswith(".tmp")


def test_a_build_removes_older_formats_of_the_same_catalog_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EARLYEXP_CACHE", str(tmp_path))
    folder = catalog_dir(1_000, 4)
    version = catalog_mod.FORMAT_VERSION
    names = {
        "old": f"1000-4-v{version - 1}-0badc0de",
        "older": "1000-4-v1-542ea02d",
        "newer": f"1000-4-v{version + 1}-542ea02d",
        "other_seed": f"1000-5-v{version - 1}-542ea02d",
        "other_size": f"10000-4-v{version - 1}-542ea02d",
        "not_ours": "1000-4-vintage",
    }
    for name in names.values():
        (tmp_path / "webshop" / name).mkdir(parents=True)
        (tmp_path / "webshop" / name / "meta.json").write_text("{}")
    load_catalog(1_000, 4)
    left = {p.name for p in (tmp_path / "webshop").iterdir()}
    assert left == {folder.name} | {
        names[k] for k in ("newer", "other_seed", "other_size", "not_ours")
    }


def test_stale_temp_dirs_of_killed_builds_are_removed(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("EARLYEXP_CACHE", str(tmp_path))
    folder = catalog_dir(1_000, 5)
    folder.parent.mkdir(parents=True)
    stale = folder.parent / f".tmp-{folder.name}-123-deadbeef"
    fresh = folder.parent / f".tmp-{folder.name}-456-cafecafe"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (0, 0))
    build_catalog(1_000, 5, folder)
    assert not stale.exists() and fresh.exists()  # a build in progress elsewhere is left alone
