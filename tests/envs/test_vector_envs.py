"""Gymnasium vector envs over the registry: panels played once each, async with defaults.

A panel evaluated through ``make_panel_vec`` (sync and async, next-step and same-step
autoreset) visits each task exactly once, on the requested split, with the same tasks as
single-env ``reset(options={"split": ..., "task": i})``. FlightBooking (``browser``) runs two
sub-envs on three tasks; the others three sub-envs on five (uneven shares, so some sub-envs
replay while others finish).
"""

from __future__ import annotations

import copy
import gc
import multiprocessing
import os
import pickle
import warnings
from functools import cache, partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector.utils import (
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

from earlyexp.envs import PanelCursor, collect_panel, entry, env_ids, make_panel_vec
from earlyexp.envs.core import AnyText, SharedTexts, shared_text

BROWSER = set(env_ids("browser"))
MODES = [
    ("sync", "next_step"),
    ("sync", "same_step"),
    ("async", "next_step"),
    ("async", "same_step"),
]
BROWSER_MODES = [("sync", "next_step"), ("async", "same_step")]


def env_params(modes: list[tuple[str, str]]) -> list:
    out = []
    for env_id in env_ids():
        browser = "browser" in entry(env_id).tags
        marks = [pytest.mark.browser] if browser else []
        for mode, autoreset in BROWSER_MODES if browser else modes:
            out.append(
                pytest.param(
                    env_id, mode, autoreset, marks=marks, id=f"{env_id}-{mode}-{autoreset}"
                )
            )
    return out


def sizes(env_id: str) -> tuple[int, int]:
    """(sub-envs, tasks) of the panel runs."""
    return (2, 3) if env_id in BROWSER else (3, 5)


@cache
def single_env_panel(env_id: str, split: str, tasks: tuple[int, ...]) -> dict[int, tuple[str, int]]:
    """Task index -> (instruction, expert steps), from one env reset with ``options``."""
    env = gym.make(env_id)
    out = {}
    try:
        for i in tasks:
            _, info = env.reset(options={"split": split, "task": i})
            instruction, steps, done = info["task"], 0, False
            while not done:
                _, _, term, trunc, info = env.step(env.unwrapped.expert_action())
                steps, done = steps + 1, term or trunc
            out[i] = (instruction, steps)
    finally:
        env.close()
    return out


def assert_no_children() -> None:
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(("env_id", "mode", "autoreset"), env_params(MODES))
def test_panel_through_vector_env_visits_each_task_once(env_id, mode, autoreset):
    n, k = sizes(env_id)
    envs = make_panel_vec(env_id, n, "test", k, mode=mode, autoreset_mode=autoreset)
    try:
        episodes = collect_panel(envs, seed=0)
    finally:
        envs.close()
    assert_no_children()
    # the vector run first: a forked worker should not inherit the reference env's browser
    reference = single_env_panel(env_id, "test", tuple(range(k)))
    assert [e.task_index for e in episodes] == list(range(k))
    assert {e.split for e in episodes} == {"test"}
    assert [e.env_index for e in episodes] == [i % n for i in range(k)]
    assert all(e.success and e.info["success"] for e in episodes)
    assert [(e.info["task"], e.steps) for e in episodes] == [reference[i] for i in range(k)]


def test_ood_split_and_chosen_task_indices():
    tasks = (7, 3, 11)
    envs = make_panel_vec("EarlyExp/Sokoban-v0", 2, "ood", tasks, autoreset_mode="same_step")
    try:
        episodes = collect_panel(envs)
        assert envs.get_attr("share") == ((7, 11), (3,))
    finally:
        envs.close()
    reference = single_env_panel("EarlyExp/Sokoban-v0", "ood", tasks)
    assert [e.task_index for e in episodes] == sorted(tasks)
    assert {e.split for e in episodes} == {"ood"}
    assert [(e.info["task"], e.steps) for e in episodes] == [reference[i] for i in sorted(tasks)]


def test_collect_panel_twice_and_with_a_policy():
    envs = make_panel_vec("EarlyExp/FrozenLake-v0", 2, "test", 4)
    try:
        first = collect_panel(envs, seed=3)
        assert [(e.task_index, e.steps) for e in collect_panel(envs, seed=3)] == [
            (e.task_index, e.steps) for e in first
        ]
        bad = collect_panel(envs, lambda obs, infos: ["!nonsense"] * len(obs))
    finally:
        envs.close()
    budget = 8  # FrozenLake's test budget: every episode runs out of steps
    assert [(e.task_index, e.steps, e.success, e.score) for e in bad] == [
        (i, budget, False, 0.0) for i in range(4)
    ]


def test_collect_panel_needs_cursors_and_a_finite_panel():
    plain = gym.make_vec("EarlyExp/FrozenLake-v0", 2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="PanelCursor"):
        collect_panel(plain)
    plain.close()
    stream = make_panel_vec("EarlyExp/FrozenLake-v0", 2, "train")
    with pytest.raises(ValueError, match="finite panel"):
        collect_panel(stream)
    stream.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_envs": 5, "tasks": 4}, "num_envs"),
        ({"num_envs": 0}, "num_envs"),
        ({"mode": "threads"}, "mode"),
        ({"autoreset_mode": "sometimes"}, "autoreset_mode"),
        ({"split": "validation"}, "split"),
        ({"tasks": 0}, "tasks"),
        ({"tasks": [0, 10**6]}, "task"),
        ({"num_envs": 2, "tasks": [0, 10**6], "mode": "async"}, "task"),
        ({"tasks": [2, 2]}, "distinct"),
        ({"tasks": "12"}, "tasks"),
    ],
)
def test_make_panel_vec_validates_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_panel_vec("EarlyExp/FrozenLake-v0", **kwargs)
    assert_no_children()


def cursor(**kwargs) -> PanelCursor:
    return PanelCursor(gym.make("EarlyExp/FrozenLake-v0"), **kwargs)


def bare_resets(env: PanelCursor, n: int) -> list[tuple[int, bool]]:
    out = []
    for _ in range(n):
        _, info = env.reset()
        out.append((info["task_index"], info["panel_done"]))
    return out


def test_cursor_walks_its_share_then_replays_flagged():
    env = cursor(split="test", tasks=7, offset=1, stride=3)
    assert env.share == (1, 4)
    assert bare_resets(env, 5) == [(1, False), (4, False), (1, True), (4, True), (1, True)]
    _, info = env.reset()
    _, _, _, _, info = env.step(env.unwrapped.expert_action())
    assert (info["split"], info["task_index"], info["panel_done"]) == ("test", 4, True)
    env.rewind()
    assert bare_resets(env, 1) == [(1, False)]
    env.close()


def test_cursor_seed_restarts_and_is_deterministic():
    env = cursor(split="test", tasks=[5, 9])
    first = env.reset(seed=11)
    env.reset()
    again = env.reset(seed=11)
    assert first[0] == again[0] and first[1]["task_index"] == again[1]["task_index"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "is different from the unwrapped version"
        check_env(env, skip_render_check=True)
    env.close()


def test_cursor_split_option_moves_it_and_task_option_passes_through():
    env = cursor(split="test", tasks=3)
    env.reset()
    _, info = env.reset(options={"split": "ood"})
    assert (info["split"], info["task_index"], info["panel_done"]) == ("ood", 0, False)
    with pytest.raises(ValueError, match="split"):
        env.reset(options={"split": "validation"})
    _, info = env.reset(options={"split": "test", "task": 42})
    assert (info["split"], info["task_index"]) == ("test", 42)
    assert bare_resets(env, 2) == [(1, False), (2, False)]  # still on ood, where it was
    assert env.panel_split == "ood" and env.unwrapped.split == "ood"
    env.close()


def test_cursor_on_train_pins_the_split_only():
    env = cursor(split="train")
    assert env.share is None
    _, info = env.reset(seed=0)
    assert info["split"] == "train" and info["panel_done"] is False
    env.close()


def test_cursor_pickles_mid_panel():
    env = cursor(split="test", tasks=6, offset=0, stride=2)
    env.reset(seed=1)
    env.step(env.unwrapped.expert_action())
    clone = pickle.loads(pickle.dumps(env))
    a, b = env.reset(), clone.reset()
    assert a[0] == b[0] and a[1]["task_index"] == b[1]["task_index"] == 2
    env.close()
    clone.close()


def test_cursor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="offset"):
        cursor(offset=2, stride=2)
    with pytest.raises(ValueError, match="stride"):
        cursor(stride=0)
    with pytest.raises(ValueError, match="task"):
        cursor(split="test", tasks=[500])
    with pytest.raises(ValueError, match="offset"):
        cursor(tasks=2, offset=2, stride=3)
    with pytest.raises(ValueError, match="earlyexp text env"):
        PanelCursor(gym.make("CartPole-v1"))


def test_make_vec_with_a_cursor_wrapper_stays_on_the_split():
    envs = gym.make_vec(
        "EarlyExp/FrozenLake-v0", 2, "sync", wrappers=[partial(PanelCursor, split="test")]
    )
    envs.reset(seed=0, options={"split": "test"})
    seen = set()
    for _ in range(30):
        _, _, _, _, infos = envs.step(envs.call("expert_action"))
        seen |= set(infos["split"])
    assert seen == {"test"}
    envs.close()


def async_params() -> list:
    out = []
    for env_id in env_ids():
        marks = [pytest.mark.browser] if env_id in BROWSER else []
        out.append(pytest.param(env_id, marks=marks, id=env_id))
    return out


def play(envs, steps: int) -> list:
    obs, infos = envs.reset(seed=0)
    seen = [obs]
    for _ in range(steps):
        obs, reward, term, trunc, infos = envs.step(envs.call("expert_action"))
        seen.append((obs, reward.tolist(), term.tolist(), trunc.tolist()))
    return seen


@pytest.mark.parametrize("env_id", async_params())
def test_async_make_vec_works_with_defaults_like_sync(env_id):
    steps = 3 if env_id in BROWSER else 12
    sync = gym.make_vec(env_id, 2, vectorization_mode="sync")
    try:
        expected = play(sync, steps)
    finally:
        sync.close()
    envs = gym.make_vec(env_id, 2, vectorization_mode="async")  # shared memory on
    try:
        assert envs.shared_memory
        got = play(envs, steps)
    finally:
        envs.close()
    assert_no_children()
    assert all(isinstance(o, str) for o in got[0]) and isinstance(got[0], tuple)
    assert got == expected


def test_async_spawn_and_live_view_without_copy():
    envs = gym.make_vec(
        "EarlyExp/FrozenLake-v0",
        2,
        vectorization_mode="async",
        vector_kwargs={"context": "spawn", "copy": False},
    )
    try:
        view, _ = envs.reset(seed=0, options={"split": "test", "task": 0})
        assert isinstance(view, SharedTexts)
        before = tuple(view)
        after, *_ = envs.step(envs.call("expert_action"))
        assert after is view and tuple(view) != before
    finally:
        envs.close()
    assert_no_children()


def test_shared_texts_round_trip_any_text():
    space = AnyText()
    buf = create_shared_memory(space, n=3)
    view = read_from_shared_memory(space, buf, n=3)
    texts = ["", "x" * (shared_text.SLOT_BYTES + 5), "Ωmega 🙂 \ud800 end"]
    for i, text in enumerate(texts):
        write_to_shared_memory(space, i, text, buf)
    assert tuple(view) == tuple(texts) and view[-1] == texts[2] and view[:2] == tuple(texts[:2])
    assert copy.deepcopy(view) == tuple(texts) and type(copy.deepcopy(view)) is tuple
    write_to_shared_memory(space, 1, "short again", buf)
    assert view[1] == "short again"
    with pytest.raises(IndexError):
        view[3]
    with pytest.raises(ValueError, match="str"):
        write_to_shared_memory(space, 0, b"bytes", buf)
    spill_dir = buf.spill_dir
    assert os.path.isdir(spill_dir)
    del buf, view
    gc.collect()
    assert not os.path.exists(spill_dir)


def test_bounded_text_space_uses_exact_slots():
    buf = create_shared_memory(AnyText(max_length=10), n=2)
    assert buf.slot == 40 and len(buf.data) == 80
    write_to_shared_memory(AnyText(max_length=10), 1, "🙂" * 10, buf)
    assert read_from_shared_memory(AnyText(max_length=10), buf, n=2)[1] == "🙂" * 10
    assert np.asarray(buf.lengths).tolist() == [0, 40]
