"""``env.summarize``: the next-state text of implicit world modeling, on every registered id.

At every expert state a few alternative actions (sampled, invalid, malformed) are tried from a
snapshot, as early-experience branching does, and every summary is checked: a non-empty str
within the cap, deterministic, changing no env state, and keeping what the env card says.
FlightBooking runs one task (``browser`` marker); the others run three test tasks and one ood.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import earlyexp.envs  # noqa: F401  (registers the ids)
from earlyexp.envs import env_ids
from earlyexp.envs.core.base import CUT, clip, fit_lines

CAP = 600
BROWSER, CONTROL = set(env_ids("browser")), set(env_ids("control"))
BAD_ACTIONS = ["!invalid", "", "click[", "search]", "a" * 10_000, "🙂"]
TASKS = {"EarlyExp/FlightBooking-v0": [("test", 0)]}
DEFAULT_TASKS = [("test", 0), ("test", 1), ("test", 2), ("ood", 0)]


REGISTRY = [
    pytest.param(i, marks=[pytest.mark.browser] if i in BROWSER else [], id=i) for i in env_ids()
]


def checked_summary(raw, obs: str, info: dict, previous: str | None) -> str:
    """Summarize twice (with and without ``previous``), checking the contract each time."""
    before, steps = raw.state_fingerprint(), raw.elapsed_steps
    s = raw.summarize(obs, info, previous=previous)
    bare = raw.summarize(obs, info)
    for text in (s, bare):
        assert isinstance(text, str) and text.strip(), f"empty summary of {obs[:200]!r}"
        assert len(text) <= min(CAP, raw.SUMMARY_CHARS) or raw.spec.id in CONTROL
    assert raw.summarize(obs, dict(info), previous=previous) == s  # deterministic
    assert raw.state_fingerprint() == before and raw.elapsed_steps == steps  # pure
    assert raw.observe()[0] == obs
    return s


def alternatives(raw, info: dict, rng: np.random.Generator, k: int) -> list[str]:
    acts = info["available_actions"] or ["noop"]
    sampled = [acts[int(i)] for i in rng.integers(len(acts), size=k)]
    return sampled + [BAD_ACTIONS[int(rng.integers(len(BAD_ACTIONS)))]]


def branch_episode(env_id: str, split: str, task: int, k: int, branch_states: int):
    """Yield ``(raw, obs, info, previous, action)`` of an expert episode and its branches."""
    env = gym.make(env_id)
    raw = env.unwrapped
    rng = np.random.default_rng(task)
    try:
        obs, info = env.reset(options={"split": split, "task": task})
        yield raw, obs, info, None, None
        done, t = False, 0
        while not done:
            if t < branch_states:
                snap = raw.snapshot()
                for action in alternatives(raw, info, rng, k):
                    alt, _, _, _, alt_info = env.step(action)
                    yield raw, alt, alt_info, obs, action
                    raw.restore(snap)
            action = raw.expert_action()
            previous = obs
            obs, _, term, trunc, info = env.step(action)
            yield raw, obs, info, previous, action
            done, t = term or trunc, t + 1
        assert info["success"], f"expert failed {env_id} {split}:{task}"
        previous = obs
        obs, _, _, _, info = env.step("!after the end")
        yield raw, obs, info, previous, "!after the end"
    finally:
        env.close()


def content_check(env_id: str, raw, obs: str, info: dict, s: str, action: str | None) -> None:
    """The env-specific part: what each env's summary must keep."""
    if env_id in CONTROL:
        assert s == obs
    elif env_id == "EarlyExp/WebShop-v0":
        view = raw.state
        assert s.startswith(clip(info["feedback"], 40)[:30]) or not info["action_valid"]
        hits = raw.catalog.search(view.query) if view.page == "results" else ()
        if hits:
            assert raw.catalog.asin(hits[(view.page_no - 1) * 10]) in s
        if view.page == "item":
            assert raw.catalog.asin(view.product) in s and "Options:" in s
            assert all(f") = {value}" in s for _, value in view.options)
    elif env_id == "EarlyExp/SearchQA-v0":
        first = re.search(r"^\[1\] ([^:\n]+): ", obs, re.M)
        if info["action_valid"] and action and action.startswith("search[") and first:
            assert f"[1] {first.group(1)}: " in s
        assert "Question:" not in s
    elif env_id == "EarlyExp/ToolCall-v0":
        body = obs.rpartition("\n[Turn ")[0]
        first = body.split("\n")
        assert first[0][:30] in s
        if first[0].startswith("> ") and len(first) > 1:
            assert first[1][:20] in s  # the call's result, not just the call
    elif env_id == "EarlyExp/FlightBooking-v0":
        url = next(line for line in obs.split("\n") if line.startswith("URL: "))
        assert clip(url, 110) in s and "[e1] link" not in s  # the menus are dropped
        alerts = [line for line in obs.split("\n") if line.startswith("alert:")]
        assert all(a[:40] in s for a in alerts[:2])


@pytest.mark.parametrize("env_id", REGISTRY)
def test_summaries_keep_the_contract(env_id):
    browser = env_id in BROWSER
    seen = 0
    for split, task in TASKS.get(env_id, DEFAULT_TASKS):
        k, states = (1, 3) if browser else (2, 50)
        for raw, obs, info, previous, action in branch_episode(env_id, split, task, k, states):
            s = checked_summary(raw, obs, info, previous)
            content_check(env_id, raw, obs, info, s, action)
            seen += 1
    assert seen >= 8


def test_webshop_summary_is_the_same_in_every_observation_mode():
    runs = []
    for mode in ("text", "text_rich", "html"):
        env = gym.make("EarlyExp/WebShop-v0", observation_mode=mode)
        raw = env.unwrapped
        obs, info = env.reset(options={"split": "test", "task": 4})
        out, done = [raw.summarize(obs, info)], False
        for action in ["click[Buy Now]", "search[party mix]", "click[Description]"]:
            obs, _, _, _, info = env.step(action)
            out.append(raw.summarize(obs, info))
        env.reset(options={"split": "test", "task": 4})
        while not done:
            obs, _, term, trunc, info = env.step(raw.expert_action())
            out.append(raw.summarize(obs, info))
            done = term or trunc
        runs.append(out)
        env.close()
    assert runs[0] == runs[1] == runs[2]
    assert any(s.startswith("Invalid action: ") for s in runs[0])


def test_webshop_summary_of_a_stale_observation_is_the_cut_text():
    env = gym.make("EarlyExp/WebShop-v0")
    raw = env.unwrapped
    obs, info = env.reset(options={"split": "test", "task": 0})
    page, _, _, _, info = env.step(raw.expert_action())
    env.step("click[Back to Search]")
    assert raw.summarize(page, info) == clip(page, raw.SUMMARY_CHARS)
    env.close()


def test_toolcall_summary_cuts_long_outputs_to_their_first_lines():
    env = gym.make("EarlyExp/ToolCall-v0")
    raw = env.unwrapped
    for task in range(30):  # an ood long-context task with a large tool output
        obs, info = env.reset(options={"split": "ood", "task": task})
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(raw.expert_action())
            done = term or trunc
            if len(obs) > 2000:
                s = raw.summarize(obs, info)
                assert len(s) <= raw.SUMMARY_CHARS and re.search(r"\.\.\. \(\+\d+ lines\)", s)
                assert obs.split("\n")[1] in s
                env.close()
                return
    env.close()
    pytest.fail("no ood task with a tool output over 2000 characters in the first 30")


@pytest.mark.browser
def test_flights_summary_says_what_changed():
    env = gym.make("EarlyExp/FlightBooking-v0")
    raw = env.unwrapped
    try:
        home, info = env.reset(options={"split": "test", "task": 1})
        action = raw.expert_action()
        assert action.startswith("type[")
        obs, _, _, _, info = env.step(action)
        s = raw.summarize(obs, info, previous=home)
        eid, text = re.fullmatch(r"type\[(e\d+)\]\[(.*)\]", action).groups()
        assert f"[{eid}] textbox" in s and f'value="{text}"' in s
        assert s.count("\n") == 3  # feedback, URL, title, the changed field
        bad, _, _, _, info = env.step("click[e999]")
        assert raw.summarize(bad, info, previous=obs).endswith("The page did not change.")
    finally:
        env.close()


@pytest.mark.parametrize("limit", [1, 5, 40, 400])
def test_clip_and_fit_lines_respect_the_limit(limit):
    text = "word " * 200
    assert len(clip(text, limit)) <= max(limit, len(CUT)) and clip("short", limit + 5) == "short"
    lines = ["a" * 30, "b" * 300, "c" * 10]
    assert len(fit_lines(lines, limit)) <= limit
    assert fit_lines(["x", "y"], 3) == "x\ny"
