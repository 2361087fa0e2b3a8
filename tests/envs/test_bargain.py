"""Bargain: the PettingZoo ``bargain_v0`` and what the registry suite cannot see of Bargain-v0.

The registry contract suite (tests/envs/test_registry.py) covers ``EarlyExp/Bargain-v0`` as the
buyer. Here: PettingZoo's own test suites, private values kept from the other side (by a
string check and by non-interference), malformed and out-of-turn actions, the scripted
negotiators against each other and against exploiters, the seller view, lazy imports.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import earlyexp.envs  # noqa: F401  (registers the ids)
from earlyexp.envs.bargain.game import (
    GRAMMAR,
    ROLES,
    ROUNDS,
    Bargain,
    available_actions,
    dollars,
    generate_task,
    instruction,
    observation,
    other,
    parse_price,
)
from earlyexp.envs.bargain.negotiator import planned_offer, scripted_action, stance
from earlyexp.envs.core.panels import task_rng

SPLITS = ("test", "ood")
FAMILY = "Bargain-v0"


def panel_task(split: str, index: int):
    return generate_task(task_rng(FAMILY, split, index), split)


def scripted_game(task, rounds: int = ROUNDS) -> Bargain:
    game = Bargain(task, rounds)
    while game.turn is not None:
        game, why = game.play(game.turn, scripted_action(game, game.turn))
        assert why is None, why
    return game


def pz():
    pytest.importorskip("pettingzoo")
    from earlyexp.envs import bargain_v0

    return bargain_v0


def play_out(env, choose) -> dict[str, list[str]]:
    """Run an AEC episode; return every text each agent was shown (observations and infos)."""
    seen: dict[str, list[str]] = {a: [] for a in ROLES}
    for agent in env.agent_iter():
        obs, _, term, trunc, info = env.last()
        seen[agent] += [obs, info["task"], info["feedback"], *info["available_actions"]]
        env.step(None if term or trunc else choose(env, agent))
    return seen


# ------------------------------------------------------------------ PettingZoo's suites
def test_pettingzoo_api_tests_pass():
    bargain_v0 = pz()
    from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # text spaces and role names draw style warnings
        api_test(bargain_v0.env(), num_cycles=1000)
        api_test(bargain_v0.raw_env(), num_cycles=1000)
        parallel_api_test(bargain_v0.parallel_env(), num_cycles=1000)
        seed_test(bargain_v0.env, num_cycles=500)
        parallel_seed_test(bargain_v0.parallel_env, num_cycles=500)


def test_api_tests_over_many_seeded_episodes():
    """api_test plays one random episode; play 200 with sampled actions, checking the same."""
    bargain_v0 = pz()
    env = bargain_v0.env()
    for seed in range(200):
        env.reset(seed=seed)
        for agent in ROLES:
            env.action_space(agent).seed(seed)
        for agent in env.agent_iter(100):
            obs, reward, term, trunc, info = env.last()
            assert env.observation_space(agent).contains(obs) and isinstance(obs, str)
            assert 0.0 <= reward <= 1.0
            env.step(None if term or trunc else env.action_space(agent).sample())
        assert env.agents == []


def test_parallel_env_applies_only_the_active_agents_action():
    bargain_v0 = pz()
    par = bargain_v0.parallel_env()
    obs, infos = par.reset(options={"split": "test", "task": 0})
    obs, rewards, terms, truncs, infos = par.step({"buyer": "offer[10]", "seller": "accept"})
    assert infos["seller"]["active_agent"] == "seller" and not any(terms.values())
    assert "The buyer offered $10.00." in obs["seller"]
    obs, *_ = par.step({"buyer": "accept", "seller": "offer[11]"})
    assert "The seller offered $11.00." in obs["buyer"]


# ------------------------------------------------------------------ private values
@pytest.mark.parametrize("split", SPLITS)
def test_private_values_never_reach_the_other_agent(split):
    """The budget never shows in the seller's texts, the cost never in the buyer's.

    Unless the viewer itself happened to offer that very price (a coincidence, not a leak:
    the non-interference test below covers those tasks too).
    """
    bargain_v0 = pz()
    env = bargain_v0.env()
    coincidences = 0
    for i in range(env.unwrapped.panel_sizes[split]):
        env.reset(options={"split": split, "task": i})
        task = env.unwrapped.task
        seen = play_out(env, lambda e, a: e.unwrapped.expert_action(a))
        game = env.unwrapped.game
        for viewer in ROLES:
            secret = dollars(task.limit(other(viewer)))
            assert any(dollars(task.limit(viewer)) in text for text in seen[viewer])
            if secret in {dollars(c) for c in game.offers(viewer)}:
                coincidences += 1
                continue
            assert not any(secret in text for text in seen[viewer]), (i, viewer, secret)
    assert coincidences <= env.unwrapped.panel_sizes[split] // 20  # 11 of 1000 on test


def views(game: Bargain, role: str) -> list[tuple]:
    """Everything ``role`` reads at every point of ``game`` (and what its expert would do)."""
    out = []
    for n in range(len(game.moves) + 1):
        g = replace(game, moves=game.moves[:n])
        out.append((observation(g, role), instruction(g.task, role), available_actions(g, role)))
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_views_do_not_depend_on_the_other_sides_private_value(split):
    """Non-interference: change the other side's value, replay the moves: same views."""
    for i in range(0, 500, 5):
        task = panel_task(split, i)
        game = scripted_game(task)
        for role in ROLES:
            secret = "cost_cents" if role == "buyer" else "budget_cents"
            shifted = replace(task, **{secret: getattr(task, secret) + 37})
            assert views(game, role) == views(replace(game, task=shifted), role)


# ------------------------------------------------------------------ malformed, out of turn
def test_malformed_action_is_flagged_and_uses_the_turn():
    bargain_v0 = pz()
    env = bargain_v0.env()
    env.reset(options={"split": "test", "task": 1})
    env.step("offer[ten dollars]")
    info = env.infos["buyer"]
    assert info["action_valid"] is False and "Invalid price" in info["feedback"]
    assert env.agent_selection == "seller"
    assert "The buyer's action was invalid; its turn passed." in env.observe("seller")
    env.step("offer[30]")
    obs = env.observe("buyer")
    assert obs.startswith("Your action was invalid and used up your turn: Invalid price")
    assert "The seller offered $30.00." in obs and "Moves left: you 9, the seller 9." in obs
    env.step(12345)  # not text: invalid, never raises
    assert env.infos["buyer"]["action_valid"] is False and "str" in env.infos["buyer"]["feedback"]
    env.step(None)  # None for a live agent: invalid too
    assert env.infos["seller"]["action_valid"] is False


def test_out_of_turn_accept_of_ones_own_offer():
    bargain_v0 = pz()
    env = bargain_v0.env()
    env.reset(options={"split": "test", "task": 2})
    env.step("offer[10]")
    env.step("say[Let me think about it.]")
    assert 'The seller said: "Let me think about it."' in env.observe("buyer")
    assert "accept" not in env.infos["buyer"]["available_actions"]
    env.step("accept")  # the offer on the table is the buyer's own
    info = env.infos["buyer"]
    assert info["action_valid"] is False and info["feedback"].count("Out of turn") == 1
    assert env.agent_selection == "seller" and not any(env.terminations.values())
    env.step("accept")  # the seller may accept the buyer's $10
    assert all(env.terminations.values())
    assert env.infos["seller"]["score_details"]["price"] == 10.0


@pytest.mark.parametrize(
    "action, why",
    [
        ("offer[0]", "between $0.01 and the list price"),
        ("offer[100000]", "between $0.01 and the list price"),
        ("offer[-5]", "Invalid price"),
        ("offer[4.555]", "Invalid price"),
        ("say[]", "1 to 200 characters"),
        ("say[" + "x" * 201 + "]", "1 to 200 characters"),
        ("walk", "Unknown action"),
        ("walk away now", "Unknown action"),
        ("accept[5]", "Malformed action"),
        ("\ud800", "surrogate"),
    ],
)
def test_bad_actions_say_what_is_wrong(action, why):
    game = Bargain(panel_task("test", 3))
    new, message = game.play("buyer", action)
    assert new is game and message is not None and why in message


@pytest.mark.parametrize(
    "action, kind",
    [("Walk  Away", "walk away"), ("  walk away ", "walk away"), ("ACCEPT", "accept"),
     ("offer[$1,0.5]", None), ("Offer[ $12.5 ]", "offer"), ("say[  many   spaces ]", "say")],
)  # fmt: skip
def test_action_forms(action, kind):
    game = Bargain(panel_task("test", 3))
    new, why = game.play("buyer", action)
    if kind is None:
        assert why is not None
    else:
        assert why is None and new.moves[-1].kind == kind
    if kind == "say":
        assert new.moves[-1].text == "many spaces"


def test_prices_parse_to_cents():
    assert [parse_price(t) for t in ("42.5", "$42.50", "1,042", " 7 ", "0.05")] == [
        4250, 4250, 104200, 700, 5,
    ]  # fmt: skip
    assert [parse_price(t) for t in ("", "abc", "1.234", "$", "4 2", "1,04")] == [None] * 6


def test_invalid_actions_until_the_round_limit_truncate_both():
    bargain_v0 = pz()
    env = bargain_v0.env(rounds=3)
    env.reset(seed=0)
    for _ in range(6):
        env.step("!")
    assert all(env.truncations.values()) and not any(env.terminations.values())
    assert all(env.infos[a]["score"] == 0.0 and not env.infos[a]["success"] for a in ROLES)


def test_help_and_available_actions_come_from_the_table():
    env = gym.make("EarlyExp/Bargain-v0")
    raw = env.unwrapped
    assert raw.action_help() == GRAMMAR.describe()
    assert all(spec.template in raw.action_help() for spec in GRAMMAR.specs)
    obs, info = env.reset(options={"split": "test", "task": 4})
    for _ in range(4):
        snap = raw.snapshot()
        for action in info["available_actions"]:
            assert env.step(action)[4]["action_valid"], action
            raw.restore(snap)
        obs, _, _, _, info = env.step(raw.expert_action())
    env.close()


# ------------------------------------------------------------------ scores
def test_rewards_are_normalized_surplus():
    bargain_v0 = pz()
    env = bargain_v0.env()
    env.reset(options={"split": "test", "task": 5})
    task = env.unwrapped.task
    price = (task.budget_cents + task.cost_cents) // 2
    env.step(f"offer[{dollars(price)[1:]}]")
    env.step("accept")
    rewards = {a: env._cumulative_rewards[a] for a in ROLES}
    assert rewards["buyer"] == pytest.approx((task.budget_cents - price) / task.budget_cents)
    seller = (price - task.cost_cents) / (task.list_cents - task.cost_cents)
    assert rewards["seller"] == pytest.approx(seller)
    assert all(env.infos[a]["success"] for a in ROLES)  # the midpoint is a fair split
    env.reset(options={"split": "test", "task": 5})
    env.step("walk away")
    assert all(env.rewards[a] == 0.0 and env.terminations[a] for a in ROLES)
    assert [i["met"] for i in env.infos["seller"]["rubric"]] == [False, True, False]


def test_a_deal_beyond_ones_limit_scores_zero_and_fails_the_rubric():
    env = gym.make("EarlyExp/Bargain-v0")
    env.reset(options={"split": "test", "task": 6})
    *_, reward, term, trunc, info = env.step("accept")  # the list price: over the budget
    assert term and reward == 0.0 and info["score_details"]["surplus"] < 0
    assert [i["met"] for i in info["rubric"]] == [True, False, False]
    env.close()


# ------------------------------------------------------------------ scripted negotiators
@pytest.mark.parametrize("split", SPLITS)
def test_scripted_negotiators_deal_on_every_panel_task(split):
    bargain_v0 = pz()
    env = bargain_v0.env()
    for i in range(env.unwrapped.panel_sizes[split]):
        env.reset(options={"split": split, "task": i})
        play_out(env, lambda e, a: e.unwrapped.expert_action(a))
        game = env.unwrapped.game
        assert game.status == "deal", (split, i, game.status)
        assert game.task.cost_cents < game.price < game.task.budget_cents
        assert all(env.unwrapped._info(a)["success"] for a in ROLES), (split, i)


def hold_out(price_of):
    """An opponent that accepts only its own price and otherwise offers it every move."""

    def act(game: Bargain, role: str) -> str:
        side, table = game.table
        price = price_of(game, role)
        if side != role and (table <= price if role == "buyer" else table >= price):
            return "accept"
        return f"offer[{dollars(price)[1:]}]"

    return act


EXPLOITERS = {
    # stonewalls at the list price (seller) or a fifth of it (buyer)
    "stonewall": hold_out(
        lambda g, r: g.task.list_cents if r == "seller" else g.task.list_cents // 5
    ),
    # knows the other's limit and holds out a cent inside it for the deadline
    "oracle at the limit": hold_out(
        lambda g, r: g.task.budget_cents - 1 if r == "seller" else g.task.cost_cents + 1
    ),
    # knows the scripted reserve itself and holds out at it
    "oracle at the reserve": hold_out(lambda g, r: stance(g.task, other(r)).reserve),
    # concedes a cent a move
    "nibbler": hold_out(
        lambda g, r: (
            g.task.list_cents - g.moves_of(r)
            if r == "seller"
            else g.task.list_cents // 5 + g.moves_of(r)
        )
    ),
}


@pytest.mark.parametrize("victim", ROLES)
@pytest.mark.parametrize("name", sorted(EXPLOITERS))
def test_scripted_negotiator_is_hard_to_exploit(name, victim):
    exploit = EXPLOITERS[name]
    for i in range(0, 500, 10):
        game = Bargain(panel_task("test", i))
        while game.turn is not None:
            r = game.turn
            act = scripted_action(game, r) if r == victim else exploit(game, r)
            game, _ = game.play(r, act)
        assert game.status != "deal", (name, victim, i, game.price)


@pytest.mark.parametrize("victim", ROLES)
def test_scripted_negotiator_never_goes_past_its_limit(victim):
    """Against random play (valid and invalid), it never offers or accepts beyond its limit."""
    rng = np.random.default_rng(0)
    for i in range(300):
        task = panel_task("test" if i % 2 else "ood", i)
        game = Bargain(task)
        while game.turn is not None:
            r = game.turn
            if r == victim:
                act = scripted_action(game, r)
                if act.startswith("offer["):
                    cents = parse_price(act[6:-1])
                    assert cents is not None
                    assert cents < task.budget_cents if r == "buyer" else cents > task.cost_cents
                    assert cents == planned_offer(game, r)
            else:
                acts = available_actions(game, r) + ["!", f"offer[{rng.integers(1, 500)}]"]
                act = acts[int(rng.integers(len(acts)))]
            new, why = game.play(r, act)
            game = new if why is None else game.forfeit(r, why)
        if game.price is not None:
            p = game.price
            assert p <= task.budget_cents if victim == "buyer" else p >= task.cost_cents


# ------------------------------------------------------------------ views, branching, imports
@pytest.mark.parametrize("split", SPLITS)
def test_seller_view_expert_solves_the_panel(split):
    env = gym.make("EarlyExp/Bargain-v0", role="seller")
    for i in range(env.unwrapped.panel_sizes[split]):
        obs, info = env.reset(options={"split": split, "task": i})
        assert "The buyer offered" in obs  # the scripted buyer moved first
        done = False
        while not done:
            obs, reward, term, trunc, info = env.step(env.unwrapped.expert_action())
            done = term or trunc
        assert term and info["success"], (split, i, info["score_details"])
    env.close()


def test_gym_view_invalid_action_leaves_the_opponent_waiting():
    env = gym.make("EarlyExp/Bargain-v0")
    obs, info = env.reset(options={"split": "test", "task": 7})
    before = env.unwrapped.state
    obs, reward, term, trunc, info = env.step("offer[free]")
    assert not info["action_valid"] and env.unwrapped.state is before
    assert obs.startswith("Invalid price") and "Moves left: you 10, the seller 10." in obs
    s = env.unwrapped.summarize(obs, info)
    assert len(s) <= 400 and s.startswith("Invalid price")
    env.close()


def test_max_steps_sets_the_rounds_of_both_sides():
    env = gym.make("EarlyExp/Bargain-v0", max_steps=3)
    obs, info = env.reset(options={"split": "test", "task": 0})
    assert "Moves left: you 3, the seller 3." in obs and "3 each" in info["task"]
    with pytest.raises(ValueError, match="role"):
        gym.make("EarlyExp/Bargain-v0", role="broker")
    env.close()


def test_aec_snapshot_restore_branches():
    bargain_v0 = pz()
    env = bargain_v0.env()
    raw = env.unwrapped
    env.reset(options={"split": "ood", "task": 9})
    env.step(raw.expert_action())
    snap = raw.snapshot()
    first = play_out(env, lambda e, a: e.unwrapped.expert_action(a))
    raw.restore(snap)
    assert raw.observe("seller") == first["seller"][0]
    again = play_out(env, lambda e, a: e.unwrapped.expert_action(a))
    assert again == first
    with pytest.raises(ValueError, match="AECSnapshot"):
        raw.restore("not a snapshot")


def test_aec_and_gym_views_share_the_panels():
    bargain_v0 = pz()
    raw = bargain_v0.raw_env()
    gym_env = gym.make("EarlyExp/Bargain-v0")
    for split in SPLITS:
        assert raw.panel(split)[:20] == gym_env.unwrapped.panel(split)[:20]
    gym_env.close()
    with pytest.raises(ValueError, match="rounds"):
        bargain_v0.raw_env(rounds=0)


def test_gym_registration_does_not_import_pettingzoo():
    code = (
        "import sys, gymnasium as gym, earlyexp.envs\n"
        "from earlyexp.envs import bargain_v0\n"
        "e = gym.make('EarlyExp/Bargain-v0'); e.reset(seed=0); e.step('offer[1]')\n"
        "assert 'pettingzoo' not in sys.modules, 'pettingzoo imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_bargain_v0_without_pettingzoo_names_the_extra():
    code = (
        "import sys; sys.modules['pettingzoo'] = None\n"
        "from earlyexp.envs import bargain_v0\n"
        "try:\n    bargain_v0.env()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "earlyexp[multiagent]" in out.stdout
