"""The browser's lifecycle: death mid-episode, sharing, and no process left after close."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401

psutil = pytest.importorskip("psutil")
pytest.importorskip("playwright")
pytestmark = pytest.mark.browser

ENV_ID = "EarlyExp/FlightBooking-v0"


BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _baseline():
    """Processes alive before each test (other suites' servers) are not this env's."""
    BEFORE.clear()
    BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))
    yield


def browser_processes() -> list:
    """Live processes started by this test process during the current test."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in BEFORE and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def main_chromium_pids() -> list[int]:
    pids = []
    for p in browser_processes():
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        is_browser = cmd and "chrom" in os.path.basename(cmd[0])
        if is_browser and not any(a.startswith("--type=") for a in cmd):
            pids.append(p.pid)
    return pids


def site_threads() -> list[str]:
    """The site's server thread and the browser thread."""
    return [t.name for t in threading.enumerate() if t.name in ("flights-site", "flights-browser")]


def wait_until(cond, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_nothing_is_running_before():
    from earlyexp.envs.flights.browser import BROWSERS

    assert BROWSERS.browser is None and BROWSERS.worker is None and site_threads() == []


def test_browser_death_truncates_with_error_then_reset_works():
    env = gym.make(ENV_ID)
    try:
        raw = env.unwrapped
        env.reset(options={"split": "test", "task": 2})
        env.step(raw.expert_action())
        pids = main_chromium_pids()
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        wait_until(
            lambda: (
                not psutil.pid_exists(pids[0])
                or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
            )
        )
        obs, reward, term, trunc, info = env.step(raw.expert_action())
        assert trunc and not term and "browser" in info["error"].lower()
        assert "score" in info and info["score"] == 0.0
        obs, info = env.reset(options={"split": "test", "task": 2})
        assert "URL: /" in obs
        obs, reward, term, trunc, info = env.step(raw.expert_action())
        assert info["action_valid"] and "error" not in info and not trunc
    finally:
        env.close()
    assert wait_until(lambda: not browser_processes()), [
        p.cmdline()[:1] for p in browser_processes()
    ]
    assert site_threads() == []


def test_envs_share_one_browser_and_close_leaves_nothing():
    envs = [gym.make(ENV_ID) for _ in range(3)]
    try:
        for i, e in enumerate(envs):
            e.reset(options={"split": "test", "task": i})
            e.step(e.unwrapped.expert_action())
        assert len(main_chromium_pids()) == 1
        assert sorted(site_threads()) == ["flights-browser", "flights-site"]
        envs[0].close()
        obs, *_ = envs[1].step(envs[1].unwrapped.expert_action())  # still served after one close
        assert "browser failed" not in obs
    finally:
        for e in envs:
            e.close()
    assert wait_until(lambda: not browser_processes()), [
        p.cmdline()[:1] for p in browser_processes()
    ]
    assert site_threads() == []


def test_works_inside_a_running_event_loop():
    """Jupyter runs cells inside an asyncio loop, where Playwright's sync API refuses to run."""

    async def episode() -> dict:
        env = gym.make(ENV_ID)
        try:
            env.reset(options={"split": "test", "task": 3})
            return env.step(env.unwrapped.expert_action())[4]
        finally:
            env.close()

    info = asyncio.run(episode())
    assert info["action_valid"] and "error" not in info
    assert wait_until(lambda: not browser_processes()) and site_threads() == []


def test_restore_after_browser_death_rebuilds_the_page():
    env = gym.make(ENV_ID)
    try:
        raw = env.unwrapped
        env.reset(options={"split": "test", "task": 6})
        for _ in range(4):
            env.step(raw.expert_action())
        snap = raw.snapshot()
        os.kill(main_chromium_pids()[0], signal.SIGKILL)
        assert env.step(raw.expert_action())[3] is True
        raw.restore(snap)
        assert raw._tab.read()["lines"] == snap.state["page"]["lines"]
        obs, _, _, _, info = env.step(raw.expert_action())
        assert info["action_valid"] and "error" not in info
    finally:
        env.close()
    assert wait_until(lambda: not browser_processes())
