from __future__ import annotations

import random
from html.parser import HTMLParser

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.envs.webshop.expert import record_demonstration
from earlyexp.envs.webshop.pages import NEXT, PREV


def make(**kwargs):
    return gym.make("EarlyExp/WebShop-v0", **kwargs)


def to_item(env, split="test", task=0):
    """Reset and follow the expert to the target's item page; return the last obs and info."""
    obs, info = env.reset(options={"split": split, "task": task})
    while env.unwrapped.state.page != "item":
        obs, _, _, _, info = env.step(env.unwrapped.expert_action())
    return obs, info


def test_search_page_and_results_pages():
    env = make()
    obs, info = env.reset(options={"split": "test", "task": 1})
    assert obs.startswith("WebShop [SEP] Instruction: [SEP] ") and obs.endswith("[SEP] Search")
    assert info["available_actions"] == ["search[<query>]"]
    obs, r, term, trunc, info = env.step("search[party mix]")
    assert info["action_valid"] and r == 0.0 and not term
    assert "Page 1 (Total results: 50)" in obs
    acts = info["available_actions"]
    assert (
        "click[Back to Search]" in acts
        and f"click[{NEXT}]" in acts
        and f"click[{PREV}]" not in acts
    )
    assert sum(a.startswith("click[B0") for a in acts) == 10
    for page in range(2, 6):
        obs, _, _, _, info = env.step("CLICK[next >]")  # names and labels case-insensitive
        assert info["action_valid"] and f"Page {page} (Total results: 50)" in obs
    assert f"click[{NEXT}]" not in info["available_actions"]  # the last page has no Next >
    obs, _, _, _, info = env.step(f"click[{NEXT}]")
    assert not info["action_valid"] and "No such button" in obs
    obs, _, _, _, info = env.step(f"click[{PREV}]")
    assert "Page 4" in obs
    env.close()


def test_few_results_have_no_next_and_no_results_says_so():
    env = make()
    env.reset(seed=0)
    obs, _, _, _, info = env.step("search[zzzzqqq]")
    assert info["action_valid"] and "Total results: 0" in obs and "No products match" in obs
    assert info["available_actions"] == ["click[Back to Search]"]
    env.close()


def test_invalid_actions_explain_and_change_nothing():
    env = make()
    obs, info = to_item(env)
    raw = env.unwrapped
    before = raw.state_fingerprint()
    cases = {
        "search[shoes]": "no search box on this page",
        "click[Teleport]": "No such button",
        "buy now": "Unknown action",
        "search[": "Malformed action",
    }
    for action, message in cases.items():
        obs2, r, term, trunc, info = env.step(action)
        assert not info["action_valid"] and message in info["feedback"] and message in obs2
        assert obs2.startswith("Invalid action: ") and raw.state_fingerprint() == before
    env.step("click[Back to Search]")
    obs, _, _, _, info = env.step("search[  ,;  ]")
    assert not info["action_valid"] and "no words" in obs
    env.close()


def test_options_sub_pages_and_prev_keep_the_choice():
    env = make(observation_mode="text_rich")
    obs, info = to_item(env, task=2)
    goal = env.unwrapped.task
    name, value = goal.options[0]
    obs, _, _, _, info = env.step(f"click[{value.upper()}]")
    assert f"[clicked button] {value} [clicked button_]" in obs
    for sub in ("Description", "Features", "Reviews"):
        obs, _, _, _, info = env.step(f"click[{sub}]")
        assert info["action_valid"] and sub in obs
        assert info["available_actions"] == ["click[Back to Search]", f"click[{PREV}]"]
        obs, _, _, _, info = env.step(f"click[{PREV}]")
        assert (
            f"[clicked button] {value} [clicked button_]" in obs
            and "[button] Buy Now [button_]" in obs
        )
    env.close()


def test_html_mode_is_well_formed_html_with_one_form():
    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.buttons = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "button":
                self.buttons.append(dict(attrs)["value"])

    env = make(observation_mode="html")
    obs, info = to_item(env, task=3)
    parser = Collect()
    parser.feed(obs)
    assert parser.tags.count("form") == 1 and "h3" in parser.tags
    assert sorted(parser.buttons) == sorted(info["available_actions"])
    env.close()


def test_truncation_without_purchase_scores_zero():
    env = make()
    env.reset(options={"split": "test", "task": 4})
    for t in range(15):
        obs, r, term, trunc, info = env.step(
            "search[coffee]" if t % 2 == 0 else "click[Back to Search]"
        )
    assert trunc and not term and r == 0.0 and info["score"] == 0.0 and not info["success"]
    assert info["rubric"][0] == {"criterion": "buy a product", "met": False}
    env.close()


def test_purchase_reports_every_reward_component():
    env = make()
    to_item(env, task=5)
    obs, r, term, trunc, info = env.step("click[Buy Now]")  # no options chosen
    d = info["score_details"]
    assert term and "Thank you for shopping with us!" in obs
    for key in (
        "r_type",
        "title_score",
        "query_match",
        "category_match",
        "attributes",
        "options",
        "n_att",
        "n_opt",
        "r_att",
        "r_option",
        "r_price",
        "price",
        "price_bound",
        "denominator",
        "purchased_asin",
        "target_asin",
        "reward",
    ):
        assert key in d
    assert d["n_opt"] == 0 and d["chosen_options"] == {} and d["reward_mode"] == "webshop"
    expected = d["r_type"] * (d["n_att"] + d["n_opt"] + d["r_price"]) / d["denominator"]
    assert r == pytest.approx(expected) and info["score"] == pytest.approx(expected)
    assert len(info["rubric"]) == 3 + len(d["attributes"]) + len(d["options"])
    env.close()


@pytest.mark.parametrize("mode", ["strict"])
def test_expert_is_perfect_in_strict_mode_too(mode):
    env = make(reward_mode=mode)
    for split in ("test", "ood"):
        for task in range(0, 500, 25):
            steps = record_demonstration(env, split, task)
            assert steps[-1]["reward"] == 1.0, (split, task)
    env.close()


def test_demonstrations_record_every_action_and_replay():
    env = make()
    steps = record_demonstration(env, "ood", 7)
    assert steps[0]["action"].startswith("search[") and steps[-1]["action"] == "click[Buy Now]"
    assert all(s["valid"] for s in steps) and steps[-1]["reward"] == 1.0
    obs, info = env.reset(options={"split": "ood", "task": 7})
    for s in steps:
        assert obs == s["observation"]
        obs, r, *_ = env.step(s["action"])
    assert r == 1.0
    env.close()


def test_expert_recovers_from_a_detour():
    env = make()
    env.reset(options={"split": "test", "task": 9})
    env.step("search[red running shoes]")
    env.step(env.unwrapped.available_actions()[-1])  # open some product
    done = False
    while not done:
        *_, term, trunc, info = env.step(env.unwrapped.expert_action())
        done = term or trunc
    assert info["success"]
    env.close()


def random_episode(env, rng: random.Random, split: str, task: int) -> dict:
    obs, info = env.reset(options={"split": split, "task": task})
    done = False
    while not done:
        a = rng.choice(info["available_actions"])
        if a.startswith("search["):
            words = info["task"].split()
            a = "search[" + " ".join(rng.sample(words, min(rng.randint(2, 6), len(words)))) + "]"
        obs, r, term, trunc, info = env.step(a)
        done = term or trunc
    return info


def test_random_policy_almost_never_succeeds():
    env = make()
    rng = random.Random(0)
    infos = [
        random_episode(env, rng, split, t) for split in ("test", "ood") for t in range(0, 500, 5)
    ]
    bought = sum(i["rubric"][0]["met"] for i in infos)
    wins = sum(i["success"] for i in infos)
    assert bought > 20  # it does buy things...
    assert wins / len(infos) <= 0.03  # ...but almost never the right thing
    env.close()


def test_splits_differ_as_documented():
    env = make()
    vocab = env.unwrapped.catalog.vocab
    ood_types = {t.name for t in vocab.types_of(True)}
    test = env.unwrapped.panel("test")
    ood = env.unwrapped.panel("ood")
    assert all(g.type_name not in ood_types for g in test)
    assert all(g.type_name in ood_types for g in ood)
    assert {g.template for g in test} == set(range(len(vocab.templates["id"])))
    assert {g.template for g in ood} == set(range(len(vocab.templates["ood"])))
    assert all(g.price_bound >= env.unwrapped.catalog.product(g.product).price for g in test + ood)
    env.close()


def test_constructor_arguments_are_validated():
    with pytest.raises(ValueError, match="observation_mode"):
        make(observation_mode="pixels")
    with pytest.raises(ValueError, match="reward_mode"):
        make(reward_mode="lenient")
    with pytest.raises(ValueError, match="num_products"):
        make(num_products=5)


def test_small_catalog_variant_works():
    env = make(num_products=1000)
    steps = record_demonstration(env, "test", 0)
    assert steps[-1]["reward"] == 1.0
    assert env.unwrapped.family == "WebShop-v0/1000/0"
    env.close()


def test_catalog_seed_changes_the_catalog_and_the_goals():
    a, b = make(num_products=1000), make(num_products=1000, catalog_seed=1)
    assert a.unwrapped.family != b.unwrapped.family
    assert a.unwrapped.panel_hash("test") != b.unwrapped.panel_hash("test")
    assert a.unwrapped.catalog.title(0) != b.unwrapped.catalog.title(0)
    assert record_demonstration(b, "ood", 1)[-1]["reward"] == 1.0
    a.close()
    b.close()


def test_html_mode_shows_errors_and_marks_the_chosen_option():
    env = make(observation_mode="html")
    to_item(env, task=12)
    value = env.unwrapped.task.options[0][1]
    obs, *_ = env.step(f"click[{value}]")
    assert 'class="option selected"' in obs and f">{value}</button>" in obs
    obs, *_, info = env.step("click[nothing here]")
    assert not info["action_valid"] and '<p class="error">Invalid action: No such button' in obs
    env.close()


def test_search_query_length_is_capped_with_a_message():
    from earlyexp.envs.webshop.env import MAX_QUERY_CHARS

    env = make()
    env.reset(options={"split": "test", "task": 0})
    raw = env.unwrapped
    before = raw.state_fingerprint()
    query = "party mix " * 100_000 + "party"
    obs, reward, term, trunc, info = env.step(f"search[{query}]")
    assert info["action_valid"] is False and reward == 0.0 and not term
    assert f"too long ({len(query)} characters; at most {MAX_QUERY_CHARS})" in obs
    assert len(obs) < 2000  # the query is echoed shortened, never whole
    assert raw.state_fingerprint() == before and raw.state.page == "search"
    obs, _, _, _, info = env.step("search[" + ("mix " * 200)[: MAX_QUERY_CHARS - 1] + "]")
    assert info["action_valid"] is True and raw.state.page == "results"
    env.close()
