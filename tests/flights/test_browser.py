"""FlightBooking in headless Chromium: a booking, errors, snapshots, injections, the serve CLI."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401

pytest.importorskip("playwright")
pytestmark = pytest.mark.browser

ENV_ID = "EarlyExp/FlightBooking-v0"


def element(obs: str, kind: str, label: str | None = None) -> str:
    pattern = re.escape(kind) + ("" if label is None else " " + re.escape(f'"{label}"'))
    m = re.search(r"\[(e\d+)\] " + pattern, obs)
    assert m, f"{pattern!r} not in\n{obs}"
    return m.group(1)


@pytest.fixture(scope="module")
def env():
    """One env for the tests that do not check the browser's lifecycle (saves launches)."""
    e = gym.make(ENV_ID)
    yield e
    e.close()


def test_expert_books_the_target_flight(env):
    raw = env.unwrapped
    obs, info = env.reset(options={"split": "test", "task": 4})
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(raw.expert_action())
        done = term or trunc
    assert term and info["success"] and reward == 1.0
    (booking,) = raw._tab.store.bookings(raw._tab.sid)
    assert booking["flight_id"] == raw.task.target
    assert sorted(p["name"] for p in booking["passengers"]) == sorted(
        f"{f} {last}" for f, last, _ in raw.task.passengers
    )
    assert f"Booking reference: {booking['ref']}" in obs


def test_validation_errors_are_observations(env):
    obs, _ = env.reset(options={"split": "test", "task": 0})
    origin, date = element(obs, "textbox", "From"), element(obs, "textbox", "Departure date")
    search = element(obs, "button", "Search flights")
    env.step(f"type[{origin}][Denvr]")
    env.step(f"type[{date}][2027-02-30]")
    obs, _, _, _, info = env.step(f"click[{search}]")
    assert info["action_valid"] is True
    assert "alert: Unknown airport 'Denvr' in From. Did you mean: Denver (DEN)" in obs
    assert "alert: Invalid date '2027-02-30'" in obs and "Invalid date" in info["feedback"]


def test_wrong_element_kinds_are_invalid_and_change_nothing(env):
    raw = env.unwrapped
    obs, _ = env.reset(options={"split": "test", "task": 0})
    button, box, menu = (
        element(obs, "button"),
        element(obs, "textbox"),
        element(obs, "select", "Cabin"),
    )
    for action, message in [
        (f"type[{button}][hello]", "Cannot type into"),
        (f"click[{box}]", "use type["),
        (f"select[{box}][Economy]", "Cannot select"),
        (f"select[{menu}][First class]", "No option 'First class'"),
        ("click[e999]", "No element 'e999'"),
        ("scroll[up]", "already at the top"),
        ("back", "no previous page"),
    ]:
        before = raw.state_fingerprint()
        obs, _, _, _, info = env.step(action)
        assert info["action_valid"] is False and message in info["feedback"], info["feedback"]
        assert raw.state_fingerprint() == before


def test_snapshot_keeps_typed_but_unsubmitted_fields(env):
    raw = env.unwrapped
    obs, _ = env.reset(options={"split": "ood", "task": 1})
    box = element(obs, "textbox", "Leaving from")
    env.step(f"type[{box}][Somewhere <b>bold</b>]")
    snap = raw.snapshot()
    typed = raw._obs
    env.step(f"type[{box}][Elsewhere]")
    env.step(raw.available_actions()[0])  # a link: leaves the page
    raw.restore(snap)
    assert raw._obs == typed and 'value="Somewhere <b>bold</b>"' in typed
    live = raw._tab.read()
    assert live["lines"] == raw.state["page"]["lines"]
    assert raw._tab.evaluate("document.querySelectorAll('b').length") == 0


def test_injection_is_plain_text_in_the_browser(env):
    raw = env.unwrapped
    obs, _ = env.reset(options={"split": "test", "task": 0})
    attack = "<script>window.pwned=1</script>'; DROP TABLE bookings;--"
    origin, search = element(obs, "textbox", "From"), element(obs, "button", "Search flights")
    env.step(f"type[{origin}][{attack}]")
    obs, *_ = env.step(f"click[{search}]")
    assert f"Unknown airport '{attack[:40]}..." in obs
    assert raw._tab.evaluate("document.body.querySelectorAll('script').length") == 0
    assert raw._tab.evaluate("window.pwned === undefined")
    assert "bookings" in raw._tab.store.table_names()


def test_scroll_and_back(env):
    small = gym.make(ENV_ID, viewport_lines=6)
    try:
        raw = small.unwrapped
        obs, _ = small.reset(options={"split": "test", "task": 0})
        assert "more lines below: scroll[down]" in obs and "scroll[down]" in raw.available_actions()
        down, *_ = small.step("scroll[down]")
        assert "lines above: scroll[up]" in down and down.splitlines()[3:] != obs.splitlines()[3:]
        up, _, _, _, info = small.step("scroll[up]")
        assert info["action_valid"] and up.splitlines()[1:] == obs.splitlines()[1:]
        _, _, _, _, info = small.step("scroll[sideways]")
        assert info["action_valid"] is False and "scroll[up] or scroll[down]" in info["feedback"]
        link = next(e["id"] for e in raw.state["page"]["elements"] if e["href"] == "/bookings")
        bookings, *_ = small.step(f"click[{link}]")
        assert "URL: /bookings" in bookings and "back" in raw.available_actions()
        back, _, _, _, info = small.step("back")
        assert info["action_valid"] and back.splitlines()[1:] == obs.splitlines()[1:]
    finally:
        small.close()


def test_serve_cli_runs_the_site_for_people():
    code = (
        "import sys; from earlyexp.envs.flights.site import main; sys.exit(main(['--port', '0']))"
    )
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        import httpx

        page = httpx.get(url + "/", timeout=10).text
        assert "Find flights" in page and "Departure date" in page
        results = httpx.get(
            url + "/results",
            params={
                "origin": "DEN",
                "destination": "BOS",
                "date": "2027-03-14",
                "adults": "1",
                "cabin": "economy",
            },
            timeout=10,
        ).text
        assert "Denver to Boston" in results and "data-flight" in results
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


def test_drive_page_changes_read_like_fresh_loads(env):
    """drive.js swaps pages in place; what the agent reads must equal a plain page load."""
    raw = env.unwrapped
    env.reset(options={"split": "ood", "task": 5})
    seen = 0
    done = False
    while not done and seen < 12:
        obs, _, term, trunc, _ = env.step(raw.expert_action())
        done = term or trunc
        if raw.state["drafts"]:
            continue  # typed-but-unsubmitted values are not part of a page load
        fresh = raw._tab.goto(raw.state["url"], fresh=True)
        assert fresh["lines"] == raw.state["page"]["lines"] and fresh["url"] == raw.state["url"]
        seen += 1
    assert seen >= 3


def test_every_available_action_is_valid(env):
    raw = env.unwrapped
    env.reset(options={"split": "ood", "task": 9})
    for _ in range(15):  # to the compact layout's result list, with its menus
        if raw.state["url"].startswith("/results"):
            break
        env.step(raw.expert_action())
    assert raw.state["url"].startswith("/results")
    snap = raw.snapshot()
    actions = raw.available_actions()
    assert any(a.startswith("select[") for a in actions) and any(
        a.startswith("click[") for a in actions
    )
    for action in actions:
        _, _, _, _, info = env.step(action)
        assert info["action_valid"], (action, info["feedback"])
        raw.restore(snap)
