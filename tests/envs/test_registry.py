"""Contract tests over every registered id.

Every later env gets these for free by adding a row to ``earlyexp.envs.registry.ENTRIES``.
Envs that are expensive per episode declare how many panel tasks the default run checks in
``QUICK_PANEL``; the full panels run under the ``slow`` marker.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import earlyexp.envs  # noqa: F401  (registers the ids)
from earlyexp.envs import env_ids
from earlyexp.envs.core import INFO_KEYS

IDS = env_ids()
QUICK_PANEL: dict[str, int] = {
    "EarlyExp/FlightBooking-v0": 10
}  # env id -> panel tasks checked in the default run
NEAR_MISSES = [
    "",
    " ",
    "\n",
    "\t\t",
    "UP!",
    "Left;Right",
    "Up Up",
    "up\x00",
    "\x00",
    "\x1b[2J",
    "None",
    "()",
    "[",
    "]",
    "[]",
    "click[",
    "search]",
    "🙂",
    "Ωmega",
    "'; DROP TABLE x; --",
    "<script>alert(1)</script>",
    "a" * 100_000,
    "🙂" * 5000,
    "\u202eRight",
    "!" * 300,
]
BAD_PREFIXES = ["!", "?", "~", "}", "\x00", "\x07", "¿", "🙂", "%"]


def make(env_id: str, **kwargs):
    return gym.make(env_id, **kwargs)


def random_strings(rng: np.random.Generator, n: int) -> list[str]:
    """Strings that no action grammar of the suite accepts (they start with a bad prefix)."""
    pool = [chr(c) for c in range(32, 127)] + ["\x00", "\n", "é", "中", "🙂", "\u200b"]
    out = []
    for _ in range(n):
        body = "".join(rng.choice(pool, size=int(rng.integers(0, 40))))
        out.append(BAD_PREFIXES[int(rng.integers(len(BAD_PREFIXES)))] + body)
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes_without_warnings(env_id):
    env = make(env_id)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=True)
        messages = [
            str(w.message)
            for w in caught
            if "earlyexp" in str(w.filename) or "gymnasium" in str(w.filename)
        ]
        assert messages == []
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_actions_same_observations(env_id):
    def run() -> list[str]:
        env = make(env_id)
        rng = np.random.default_rng(7)
        obs, info = env.reset(seed=123)
        seen = [obs]
        for t in range(50):
            acts = info["available_actions"] or ["noop"]
            action = (
                env.unwrapped.expert_action() if t % 3 == 0 else acts[int(rng.integers(len(acts)))]
            )
            obs, _, term, trunc, info = env.step(action)
            seen.append(obs)
            if term or trunc:
                obs, info = env.reset(seed=1000 + t)
                seen.append(obs)
        env.close()
        return seen

    assert run() == run()


@pytest.mark.parametrize("env_id", IDS)
def test_pickle_round_trip(env_id):
    env = make(env_id)
    env.reset(seed=5)
    env.step(env.unwrapped.expert_action())
    clone = pickle.loads(pickle.dumps(env))
    action = env.unwrapped.expert_action()
    assert clone.unwrapped.expert_action() == action
    a = env.step(action)
    b = clone.step(action)
    assert a[0] == b[0] and a[1:4] == b[1:4]
    env.close()
    clone.close()


@pytest.mark.parametrize("env_id", IDS)
def test_info_keys_are_documented(env_id):
    env = make(env_id)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and set(info) <= INFO_KEYS
    assert isinstance(info["task"], str) and info["task"]
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(env.unwrapped.expert_action())
        assert set(info) <= INFO_KEYS
        done = term or trunc
        if not done:
            assert reward == 0.0
    assert {"score", "success", "rubric"} <= set(info)
    assert reward == info["score"] and 0.0 <= reward <= 1.0
    assert all(set(item) == {"criterion", "met"} for item in info["rubric"])
    env.close()


def expert_episode(env, split: str, index: int) -> dict:
    obs, info = env.reset(options={"split": split, "task": index})
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(env.unwrapped.expert_action())
        done = term or trunc
    return info


def check_expert_panel(env_id: str, split: str, limit: int | None) -> None:
    env = make(env_id)
    size = env.unwrapped.panel_sizes[split]
    indices = range(size) if limit is None else np.linspace(0, size - 1, limit).astype(int)
    failures = []
    for i in indices:
        info = expert_episode(env, split, int(i))
        if not info["success"]:
            failures.append((int(i), info.get("score"), info.get("feedback")))
    env.close()
    assert failures == [], f"expert failed {len(failures)} tasks: {failures[:5]}"


@pytest.mark.parametrize("split", ["test", "ood"])
@pytest.mark.parametrize("env_id", IDS)
def test_expert_solves_panel(env_id, split):
    check_expert_panel(env_id, split, QUICK_PANEL.get(env_id))


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "ood"])
@pytest.mark.parametrize("env_id", [i for i in IDS if i in QUICK_PANEL])
def test_expert_solves_full_panel(env_id, split):
    check_expert_panel(env_id, split, None)


@pytest.mark.parametrize("env_id", IDS)
def test_bad_actions_never_raise_and_change_nothing(env_id):
    env = make(env_id)
    raw = env.unwrapped
    env.reset(seed=3)
    start = raw.snapshot()
    if any(env.step(raw.expert_action())[2:4]):
        raw.restore(start)  # a one-step task: stay at the start
    strings = NEAR_MISSES + random_strings(np.random.default_rng(0), 2000)
    for action in strings:
        before = raw.state_fingerprint()
        steps = raw.elapsed_steps
        snap = raw.snapshot()
        obs, reward, term, trunc, info = env.step(action)
        assert info["action_valid"] is False, f"{action[:40]!r} was accepted"
        assert reward == 0.0 and not term
        assert info["feedback"] and info["feedback"] in obs or info["feedback"]
        assert raw.state_fingerprint() == before
        assert raw.elapsed_steps == steps + 1
        raw.restore(snap)  # keep the budget from running out
    for bad in (None, 3, b"Up", ["Up"]):
        obs, reward, term, trunc, info = env.step(bad)
        assert info["action_valid"] is False
        env.unwrapped.restore(snap)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_invalid_actions_count_toward_the_budget(env_id):
    env = make(env_id)
    env.reset(seed=11)
    budget = env.unwrapped.max_steps
    for t in range(budget):
        obs, reward, term, trunc, info = env.step("!invalid")
        assert not term
        assert trunc == (t == budget - 1)
    assert info["score"] == 0.0 or "score" in info
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_snapshot_restore_branches(env_id):
    env = make(env_id)
    raw = env.unwrapped
    env.reset(seed=21)
    snap = raw.snapshot()
    first = env.step(raw.expert_action())
    if not any(first[2:4]):
        env.step(raw.available_actions()[-1] if raw.available_actions() else "noop")
    raw.restore(snap)
    again = env.step(raw.expert_action())
    assert again[0] == first[0] and again[1:4] == first[1:4]
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_reset_options_are_validated(env_id):
    env = make(env_id)
    with pytest.raises(ValueError, match="split"):
        env.reset(options={"split": "validation"})
    with pytest.raises(ValueError, match="task"):
        env.reset(options={"split": "test", "task": 10**9})
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"level": 3})
    env.close()


PANEL_SCRIPT = """
import json, sys, gymnasium as gym, earlyexp.envs
env = gym.make(sys.argv[1])
print(json.dumps({s: env.unwrapped.panel_hash(s) for s in ("test", "ood")}))
env.close()
"""


@pytest.mark.parametrize("env_id", IDS)
def test_panels_identical_across_processes(env_id):
    env = make(env_id)
    here = {s: env.unwrapped.panel_hash(s) for s in ("test", "ood")}
    env.close()
    out = subprocess.run(
        [sys.executable, "-c", PANEL_SCRIPT, env_id], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


@pytest.mark.parametrize("env_id", IDS)
def test_string_id_form_needs_no_import(env_id):
    code = f"import gymnasium as gym; e = gym.make('earlyexp.envs:{env_id}'); e.reset(seed=0); e.close()"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


SURROGATE_ACTIONS = [
    "\ud800",
    "search[\udfff]",
    "click[\ud83d]",
    "answer[x\ud800]",
    "type[e1][\udc00]",
    'respond(message="\ud800")',
    'respond(message="\\ud800")',  # the escape: ast makes the lone surrogate
    'respond(message="\\ud83d\\ude00")',  # two escapes are two lone surrogates, not one char
    'write_file(path="/x", content="\\udfff")',
]


def assert_utf8(obs: str, info: dict) -> None:
    texts = [obs, info["task"], info["feedback"], *info["available_actions"]]
    texts += [item["criterion"] for item in info.get("rubric", [])]
    for text in texts:
        text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate


@pytest.mark.parametrize("env_id", IDS)
def test_every_observation_is_valid_utf8(env_id):
    env = make(env_id)
    raw = env.unwrapped
    obs, info = env.reset(seed=4)
    assert_utf8(obs, info)
    snap = raw.snapshot()
    for action in SURROGATE_ACTIONS + NEAR_MISSES:
        obs, reward, term, trunc, info = env.step(action)
        assert_utf8(obs, info)
        if action in SURROGATE_ACTIONS:
            assert info["action_valid"] is False, f"{action!r} was accepted"
        if any(0xD800 <= ord(c) <= 0xDFFF for c in action):
            assert "surrogate" in info["feedback"]
        raw.restore(snap)
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(raw.expert_action())
        assert_utf8(obs, info)
        done = term or trunc
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_rejected_first_reset_leaves_a_made_env_usable(env_id):
    env = make(env_id)  # through gym.make's wrappers, as users get it
    with pytest.raises(ValueError, match="task"):
        env.reset(options={"split": "test", "task": 10**9})
    obs, info = env.reset(seed=0)
    out = env.step(env.unwrapped.expert_action())
    assert out[4]["action_valid"] is True
    before = env.unwrapped.state_fingerprint()
    with pytest.raises(ValueError, match="split"):
        env.reset(options={"split": "validation"})
    assert env.unwrapped.state_fingerprint() == before  # the episode goes on
    assert env.step(env.unwrapped.expert_action())[4]["action_valid"] is True
    env.close()
