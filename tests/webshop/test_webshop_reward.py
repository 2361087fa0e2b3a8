from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from earlyexp.envs.webshop.catalog import load_catalog
from earlyexp.envs.webshop.goals import make_goal
from earlyexp.envs.webshop.reward import (
    fuzzy,
    normalize_color,
    option_matches,
    score_purchase,
    type_reward,
    webshop_score,
)
from earlyexp.envs.webshop.vocab import load_vocab

VOCAB = load_vocab()


@pytest.fixture(scope="module")
def cat():
    return load_catalog(10_000)


def goal_for(cat, index: int, split: str = "test"):
    """A goal whose target is product ``index`` (built like make_goal, target forced)."""
    rng = np.random.default_rng(index)
    p = cat.product(index)
    g = make_goal(cat, rng, split)
    options = tuple((name, values[0]) for name, values in p.options)
    return replace(
        g, product=index, asin=p.asin, title=p.title, category=p.category,
        attributes=p.attributes[:2], options=options, price_bound=float(np.ceil(p.price + 1)),
    )  # fmt: skip


def test_buying_the_target_with_its_options_scores_one(cat):
    for index in (0, 10, 500, 4321):
        g, p = goal_for(cat, index), cat.product(index)
        for mode in ("webshop", "strict"):
            ev = score_purchase(p, dict(g.options), g, VOCAB, mode)
            assert ev.score == 1.0 and ev.is_success
            assert all(item["met"] for item in ev.rubric)
            d = ev.details
            assert d["r_type"] == 1.0 and d["n_att"] == 2 and d["n_opt"] == len(g.options)
            assert d["denominator"] == 2 + len(g.options) + 1


def test_formula_components(cat):
    index = next(i for i in range(1000) if len(cat.product(i).options) == 2)
    g, p = goal_for(cat, index), cat.product(index)
    chosen = dict(g.options)
    name0 = g.options[0][0]
    del chosen[name0]  # one option not chosen
    ev = score_purchase(p, chosen, replace(g, price_bound=p.price - 0.5), VOCAB)
    # (2 attributes + 1 option + 0 price) / (2 + 2 + 1)
    assert ev.score == pytest.approx(3 / 5)
    assert ev.details["r_price"] == 0.0 and ev.details["options"][name0] is False
    assert not ev.is_success
    unmet = {i["criterion"] for i in ev.rubric if not i["met"]}
    assert any(c.startswith("price lower than") for c in unmet)


def test_nothing_bought_scores_zero(cat):
    g = goal_for(cat, 3)
    ev = score_purchase(None, {}, g, VOCAB)
    assert ev.score == 0.0 and not any(i["met"] for i in ev.rubric)


def test_fuzzy_option_matching_is_the_originals_and_strict_fixes_it():
    assert fuzzy("large", "x-large") > 85  # the original's known false match
    assert fuzzy("2 pound", "3 pound") > 85
    wanted = [("size", "x-large")]
    assert option_matches({"size": "large"}, wanted, VOCAB.colors, strict=False) == {"size": True}
    assert option_matches({"size": "large"}, wanted, VOCAB.colors, strict=True) == {"size": False}
    assert option_matches({"size": "X-Large"}, wanted, VOCAB.colors, strict=True) == {"size": True}
    assert option_matches({"size": "medium"}, wanted, VOCAB.colors, strict=False) == {"size": False}


def test_colour_normalization():
    assert normalize_color("navy blue", VOCAB.colors) == "blue"
    assert normalize_color("royal blue", VOCAB.colors) == "blue"
    assert normalize_color("12 pack", VOCAB.colors) == "12 pack"
    wanted = [("color", "royal blue")]
    assert option_matches({"color": "navy blue"}, wanted, VOCAB.colors, strict=False)["color"]
    assert not option_matches({"color": "navy blue"}, wanted, VOCAB.colors, strict=True)["color"]


def test_wrong_size_is_a_webshop_success_but_never_a_strict_one(cat):
    index = next(
        i for i in range(5000)
        if {"x-large", "large"} <= set(cat.product(i).option_values("size"))
    )  # fmt: skip
    p = cat.product(index)
    g = replace(goal_for(cat, index), options=tuple(
        (n, "x-large" if n == "size" else vals[0]) for n, vals in p.options
    ))  # fmt: skip
    chosen = {**dict(g.options), "size": "large"}
    assert score_purchase(p, chosen, g, VOCAB, "webshop").score == 1.0
    strict = score_purchase(p, chosen, g, VOCAB, "strict")
    assert strict.score < 1.0 and not strict.is_success


def test_type_reward_levels(cat):
    vocab = VOCAB
    g = goal_for(cat, 0)
    same_type = next(i for i in range(1, 5000) if cat.product(i).type_id == cat.product(0).type_id)
    assert type_reward(cat.product(same_type), g, vocab.nouns).r_type == 1.0
    other = next(
        i for i in range(1, 5000)
        if not set(cat.product(i).category[:2]) & set(g.category[:2])
        and not set(cat.product(i).title.lower().split()) & set(g.title.lower().split())
    )  # fmt: skip
    tm = type_reward(cat.product(other), g, vocab.nouns)
    assert tm.title_score == 0.0 and tm.r_type == 0.0 and not tm.query_match
    # same sub-category, other type: two shared category levels -> 1 (strict caps it at 0.5)
    sibling = next(
        i for i in range(1, 5000)
        if cat.product(i).category[:2] == g.category[:2] and cat.product(i).type_name != g.type_name
    )  # fmt: skip
    tm = type_reward(cat.product(sibling), g, vocab.nouns)
    assert tm.category_match and (tm.r_type == 1.0 or tm.title_score < 0.1)
    assert type_reward(cat.product(sibling), g, vocab.nouns, strict=True).r_type <= 0.5


@pytest.mark.parametrize("mode", ["webshop", "strict"])
def test_every_type_credits_a_same_type_product_of_another_brand(cat, mode):
    by_type: dict[int, list[int]] = {}
    for i in range(cat.size):
        by_type.setdefault(cat.product(i).type_id, []).append(i)
    assert len(by_type) == len(VOCAB.types)  # the catalog holds every type
    failures = []
    for type_id, indices in sorted(by_type.items()):
        target = cat.product(indices[0])
        other = next(cat.product(i) for i in indices if cat.product(i).brand != target.brand)
        g = goal_for(cat, target.index)
        ev = score_purchase(other, dict(g.options), g, VOCAB, mode)
        if ev.details["r_type"] != 1.0:
            failures.append((VOCAB.types[type_id].name, ev.details["title_score"]))
    assert failures == []


def test_compound_type_names_are_nouns_only_as_the_whole_phrase():
    nouns = VOCAB.nouns
    assert {"sparkling water", "dog bed", "cat bed"} <= set(nouns.compounds)
    assert "sparkling water" in nouns.of("Savorra Fresh Low Carb Sparkling Water, New Edition")
    assert (
        nouns.of("Quantaro Water Resistant Fitness Tracker") & {"water", "sparkling water"} == set()
    )
    assert "dog bed" not in nouns.of("Pawsome Dog Crate Bed Liner")


def test_fuzzy_score_is_rounded_before_the_threshold_as_the_original():
    a, b = "a" * 49, "a" * 49 + "b" * 17  # raw token_set_ratio 98 / 115 = 85.2
    from rapidfuzz import fuzz as rf

    assert 85 < rf.token_set_ratio(a, b) < 85.5
    assert fuzzy(a, b) == 85 and isinstance(fuzzy(a, b), int)
    assert option_matches({"size": a}, [("size", b)], VOCAB.colors, strict=False) == {"size": False}
    c = "a" * 47 + "b" * 16  # raw 94 / 110 = 85.45...: still 85
    assert fuzzy(a[:47], c) == 85
    d = "a" * 6 + "b"  # 12 / 13 = 92.3 -> 92, a match
    assert fuzzy("a" * 6, d) == 92
    assert option_matches({"size": "a" * 6}, [("size", d)], VOCAB.colors, strict=False) == {
        "size": True
    }


def test_attribute_counts_from_text_when_not_listed(cat):
    index = next(i for i in range(1000) if "for daily use" in " ".join(cat.product(i).features))
    p = cat.product(index)
    g = replace(goal_for(cat, index), attributes=("for daily use",))  # a phrase of the features
    assert "for daily use" not in p.attributes
    assert score_purchase(p, dict(g.options), g, VOCAB).details["attributes"] == {
        "for daily use": True
    }
    g = replace(g, attributes=("for nightly use",))
    assert score_purchase(p, dict(g.options), g, VOCAB).details["attributes"] == {
        "for nightly use": False
    }


def test_webshop_score_is_mean_reward_times_100():
    assert webshop_score([1.0, 0.5, 0.0, 0.5]) == 50.0
    assert webshop_score([]) == 0.0
