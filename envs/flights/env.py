"""EarlyExp/FlightBooking-v0: book a flight on a real web site in headless Chromium."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec, ParseError, echo
from earlyexp.envs.core.base import Evaluation, Outcome, TextEnv, clip, fit_lines
from earlyexp.envs.core.types import StepInfo
from earlyexp.envs.flights.expert import expert_action
from earlyexp.envs.flights.tasks import FlightTask, generate_task, instruction, rubric

GRAMMAR = ActionGrammar(
    (
        ActionSpec("click", ("id",), "click a link, button or seat.", ("click[e12]",)),
        ActionSpec(
            "type", ("id", "text"), "replace the text of a text box.", ("type[e1][Denver (DEN)]",)
        ),
        ActionSpec(
            "select",
            ("id", "option"),
            "choose a menu option by its text.",
            ("select[e5][2 adults]",),
        ),
        ActionSpec("back", (), "go back to the previous page.", ("back",)),
        ActionSpec(
            "scroll", ("direction",), "show more of a long page: up or down.", ("scroll[down]",)
        ),
    )
)
MAX_TYPED = 200
ERRORS_NOTE = " The page shows errors: "
LINE_CHARS = 110
_LINKS_ONLY = re.compile(r'(\s*\[e\d+\] link "[^"]*")+\s*')


def _page_parts(obs: str) -> tuple[str, list[str], list[str]]:
    """Split an observation into its feedback, ``[URL line, Title line]`` and page lines.

    The head is empty when ``obs`` has no ``URL:``/``Title:`` lines (not a page of this env).
    """
    lines = obs.split("\n")
    for i in range(len(lines) - 1):
        if lines[i].startswith("URL: ") and lines[i + 1].startswith("Title: "):
            return "\n".join(lines[:i]), lines[i : i + 2], lines[i + 2 :]
    return obs, [], []


def _changes(body: list[str], head: list[str], previous: str | None) -> list[str]:
    """The page lines ``previous`` did not show, alerts aside (none: a line saying so).

    Without ``previous``: the page's lines less the link-only ones (the site's menus).
    """
    lines = [line for line in body if not line.startswith("alert:")]
    if previous is None:
        return [clip(line, LINE_CHARS) for line in lines if not _LINKS_ONLY.fullmatch(line)]
    _, old_head, old_body = _page_parts(previous)
    old = set(old_body)
    new = [clip(line, LINE_CHARS) for line in lines if line not in old]
    if new:
        return new
    return ["The page did not change." if head == old_head else "No new lines on the page."]


class FlightBookingEnv(TextEnv[FlightTask]):
    """Book flights on a real web site (ASGI server + SQLite) through headless Chromium.

    ## Description
    The Early Experience paper's opening example, built for real. A flight-booking site
    (search form with airport suggestions, sortable/filterable paged results, flight
    details, passenger form, seat map, payment with a Luhn check, confirmation) runs on
    127.0.0.1 in a thread of this process; Playwright drives headless Chromium over it.
    Each episode gets a fresh browser context and its own session in the site's SQLite
    database; all envs of a process share one server and one browser (driven from one
    daemon thread, so envs work from any thread and inside a running asyncio loop, e.g. a
    notebook). Page changes go through the site's own ``drive.js`` (fetch the next page,
    swap the body, push the URL: the Turbo Drive technique), a few times cheaper than a
    full document load; the text read is the same either way. With ``warm_spare`` (the
    default) each env keeps one spare browser context made in the background, already
    showing the site's home page under its own new session: ``reset()`` takes it (still a
    context no episode has used: fresh cookies and storage), gives its session the task,
    and reloads the home page through the drive, while the next spare is made behind the
    agent's back (reset p50 ~0.1-0.2 s instead of ~0.55 s). It costs a second renderer
    process per env and, measured on a busy 2-core machine, ~15% more CPU per episode:
    for back-to-back scripted rollouts on a saturated CPU, ``warm_spare=False`` gives more
    episodes per minute. Tasks look like
    "Book the cheapest nonstop economy flight from Denver (DEN) to Boston (BOS) on
    2027-03-14, under $450 per person, for 2 adults: ...". Bad input gets the site's own
    validation errors ("Invalid date", "Invalid card number: the checksum ...").

    ## Observation
    Accessibility-style text of the page, read with one DOM walk: a feedback line, the URL
    (path and query), the title, then the page's lines. Every interactive element has a short
    id stable across runs: ``[e3] textbox "From" value="" placeholder="..."``,
    ``[e7] select "Cabin" selected="Economy" options="Economy | Premium economy | Business"``,
    ``[e12] link "Select SK 1234"``, ``[e20] button "14A window" disabled``. Error messages
    are lines starting ``alert:``. Long pages show ``viewport_lines`` lines at a time.
    ``summarize`` (the IWM next-state text, at most 500 characters, read from the text alone)
    keeps the feedback line, URL, title, alerts and what changed: given ``previous=`` (the
    observation before the action), the lines it did not show (a field's new value, the
    lines of the page that opened, else "The page did not change."); without it, the page's
    lines less the menus, as many as fit.

    ## Action
    ``click[id]``, ``type[id][text]`` (replaces the box's text), ``select[id][option]``
    (option text or value), ``back``, ``scroll[up]`` / ``scroll[down]``. Examples:
    ``type[e1][Denver (DEN)]``, ``select[e6][2 adults]``, ``click[e9]``. A missing id, an
    action on the wrong kind of element (typing into a button), a disabled element, an
    unknown option, scrolling past the end or a malformed action is invalid: the page is
    unchanged, ``info["action_valid"]`` is False and the step counts toward the budget.
    ``info["available_actions"]`` lists the actions of the current page.

    ## Reward
    Sparse: 0 until the end, then the fraction of rubric items the booking row in the
    site's database meets: route, date, cabin, number of passengers, passenger names, each
    constraint (price, stops, airline, departure/arrival times, layover, seats) and the
    objective (the cheapest/fastest/earliest flight meeting the other conditions). 0
    without a booking. ``success``: every item met. ``score_details``: ``booking_ref``,
    ``booked_flight``, ``target_flight``.

    ## Episode end
    Terminated when a booking is made (the confirmation page). Truncated when the budget
    (20 + 8 x passengers steps) runs out, or when the browser fails (crashed, killed, timed
    out): then ``info["error"]`` says why (``action_valid`` stays True: not the agent's
    fault), the score is taken from the database as it stands, and the next ``reset()``
    starts a new browser.

    ## Snapshots and pickling
    The episode state is the URL, the page's text, text typed but not yet submitted, the
    env's history (for ``back``) and the session's rows in the database; ``snapshot()``
    copies them, ``restore()`` writes the rows back, reloads the URL and retypes the
    drafts (nothing when the state is already current). Pickling drops the browser; the
    copy rebuilds its own context and session on first use.

    ## Splits
    ``train``: a procedural stream over 26 airports and 6 airlines, 1-3 adults, 1-3
    constraints from {stops, airline, departure after/before, price}, optional seat
    requests, objectives cheapest/fastest/earliest/any, on the ``classic`` site layout.
    ``test``: 200 fixed tasks of the same distribution. ``ood``: 200 fixed tasks with an
    unseen airport on every route, unseen airlines and connection airports, 1-4 adults,
    constraint types never seen in training (arrival windows, layover limits) and the
    ``compact`` layout (other labels, field order and structure: full-name and DD/MM/YYYY
    fields, filter menus with an Apply button, expiry menus).

    ## Arguments
    ``gym.make("EarlyExp/FlightBooking-v0", viewport_lines=60, timeout_ms=10000,
    max_steps=None, warm_spare=True)``; ``reset(options={"split": "ood", "task": 3})``. Needs the ``web``
    extra and a Chromium (``make install``): Playwright's own when installed, else the
    system one (``/usr/bin/chromium``); ``EARLYEXP_CHROMIUM=/path/to/chrome`` overrides.
    ``earlyexp serve flights [--task ood:3]`` opens the same site for people.

    ## Version history
    * v0: initial version.
    * v0 (same tasks and pages): ``summarize``, the next-state text of IWM.
    * v0 (same tasks; the search page changed): no return-date field (no return leg could
      be booked); one parser per form field, ASCII digits only; booking references unique in
      the database; a session's requests apply atomically (no 500 on any request order).
    """

    grammar = GRAMMAR
    panel_sizes = {"test": 200, "ood": 200}
    SUMMARY_CHARS = 500

    def __init__(
        self,
        viewport_lines: int = 60,
        timeout_ms: int = 10_000,
        render_mode: str | None = None,
        max_steps: int | None = None,
        warm_spare: bool = True,
    ) -> None:
        if viewport_lines < 5:
            raise ValueError(f"Expect viewport_lines >= 5, actually: {viewport_lines!r}")
        if timeout_ms < 100:
            raise ValueError(f"Expect timeout_ms >= 100, actually: {timeout_ms!r}")
        super().__init__(render_mode=render_mode, max_steps=max_steps)
        self.viewport_lines = viewport_lines
        self.timeout_ms = timeout_ms
        self.warm_spare = warm_spare
        self._tab: Any = None
        self._synced = False
        self._pending: Any = None
        self._error: str | None = None

    # ------------------------------------------------------------------ task hooks
    @property
    def family(self) -> str:
        """Task distribution name."""
        return "FlightBooking-v0"

    def make_task(self, rng: np.random.Generator, split: str) -> FlightTask:
        """See :func:`earlyexp.envs.flights.tasks.generate_task`."""
        return generate_task(rng, split)

    def _budget(self, task: FlightTask) -> int:
        return 20 + 8 * task.adults

    def instruction(self) -> str:
        """The task as told to the agent."""
        assert self.task is not None
        return instruction(self.task)

    def expert_action(self) -> str:
        """The scripted expert's next action from the current page."""
        assert self.task is not None
        return expert_action(self.task, self.state["page"])

    # ------------------------------------------------------------------ browser plumbing
    def _live(self):
        """The env's browser tab, (re)built on first use or after unpickling."""
        if self._tab is None or self._tab.closed:
            from earlyexp.envs.flights.browser import Tab

            self._tab, self._synced = Tab(self.timeout_ms, self.warm_spare), False
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._tab.open(pending["ctx"])
            self._load(pending)
        return self._tab

    def _load(self, state: dict[str, Any]) -> None:
        """Make the server session and the browser page hold ``state`` exactly."""
        tab = self._tab
        tab.store.load(tab.sid, state["session"])
        page = tab.goto(state["url"])
        for eid, (kind, value) in state["drafts"].items():
            page = (tab.fill if kind == "type" else tab.select)(eid, value)
        self.state = dict(copy.deepcopy(state), page=page)
        self._synced = True

    def _ctx(self, task: FlightTask) -> dict[str, Any]:
        return {"seed": task.seed, "world": task.world, "theme": task.theme}

    def _begin(self, task: FlightTask) -> str:
        self._error = None
        self._pending = None
        tab = self._live()
        tab.open(self._ctx(task))
        page = tab.goto("/")
        self.state = {
            "ctx": self._ctx(task),
            "url": page["url"],
            "history": [page["url"]],
            "drafts": {},
            "scroll": 0,
            "page": page,
            "session": tab.store.export(tab.sid),
        }
        self._synced = True
        return "The flight booking site is open."

    # ------------------------------------------------------------------ actions
    def _apply(self, action: str) -> Outcome:
        parsed = self.grammar.parse(action)
        if isinstance(parsed, ParseError):
            return Outcome(False, parsed.message)
        if parsed.name == "scroll":
            return self._scroll(parsed.args[0])
        if parsed.name == "back":
            return self._back()
        eid = parsed.args[0]
        el = next((e for e in self.state["page"]["elements"] if e["id"] == eid), None)
        if el is None:
            n = len(self.state["page"]["elements"])
            return Outcome(False, f"No element {echo(eid)} on this page (ids e1 to e{n}).")
        if el["disabled"]:
            return Outcome(False, f"{eid} ({el['kind']} {el['label']!r}) is disabled.")
        if parsed.name == "click":
            return self._click(el)
        if parsed.name == "type":
            return self._type(el, parsed.args[1])
        return self._select(el, parsed.args[1])

    def _click(self, el: dict[str, Any]) -> Outcome:
        if el["kind"] in ("textbox", "select"):
            verb = "type" if el["kind"] == "textbox" else "select"
            return Outcome(
                False,
                f"{el['id']} is a {el['kind']} ({el['label']!r}): use {verb}[{el['id']}][...].",
            )
        return self._browse(
            lambda tab: tab.click(el["id"], el["nav"]), f"Clicked {el['kind']} {el['label']!r}."
        )

    def _type(self, el: dict[str, Any], text: str) -> Outcome:
        if el["kind"] != "textbox":
            return Outcome(
                False, f"Cannot type into {el['id']}: it is a {el['kind']} ({el['label']!r})."
            )
        if len(text) > MAX_TYPED or any(ord(c) < 32 for c in text):
            return Outcome(
                False, f"Cannot type {echo(text)}: at most {MAX_TYPED} printable characters."
            )
        self.state["drafts"][el["id"]] = ("type", text)
        return self._browse(
            lambda tab: tab.fill(el["id"], text), f"Typed {text!r} into {el['label']!r}."
        )

    def _select(self, el: dict[str, Any], option: str) -> Outcome:
        if el["kind"] != "select":
            return Outcome(
                False, f"Cannot select in {el['id']}: it is a {el['kind']} ({el['label']!r})."
            )
        key = option.strip().casefold()
        hits = [
            v
            for o, v in zip(el["options"], el["values"], strict=True)
            if key in (o.casefold(), v.casefold())
        ]
        if not hits:
            return Outcome(
                False,
                f"No option {echo(option)} in {el['label']!r}. "
                f"Options: {' | '.join(el['options'])}.",
            )
        self.state["drafts"][el["id"]] = ("select", hits[0])
        return self._browse(
            lambda tab: tab.select(el["id"], hits[0]),
            f"Selected {option.strip()!r} in {el['label']!r}.",
        )

    def _back(self) -> Outcome:
        history = self.state["history"]
        if len(history) < 2:
            return Outcome(False, "There is no previous page to go back to.")
        target = history[-2]

        outcome = self._browse(lambda tab: tab.goto(target), "Went back to the previous page.")
        if outcome.valid and not self._error:
            self.state["history"] = history[:-1]
        return outcome

    def _scroll(self, direction: str) -> Outcome:
        d = direction.strip().lower()
        if d not in ("up", "down"):
            return Outcome(
                False, f"Cannot scroll {echo(direction)}: use scroll[up] or scroll[down]."
            )
        n, top, step = (
            len(self.state["page"]["lines"]),
            self.state["scroll"],
            self.viewport_lines // 2,
        )
        new = max(0, top - step) if d == "up" else min(max(0, n - self.viewport_lines), top + step)
        if new == top:
            return Outcome(
                False, f"Cannot scroll {d}: already at the {'top' if d == 'up' else 'bottom'}."
            )
        self.state["scroll"] = new
        return Outcome(True, f"Scrolled {d}.")

    def _browse(self, act, feedback: str) -> Outcome:
        """Run a browser action, then read the page and the session; a failure ends the episode."""
        try:
            tab = self._live()
            page = act(tab)
        except Exception as e:  # noqa: BLE001 - any browser failure ends the episode (env card)
            self._synced = False
            self._error = f"The browser failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            return Outcome(True, self._error)
        if page["url"] != self.state["url"]:
            if self.state["history"][-1:] != [page["url"]]:
                self.state["history"].append(page["url"])
            self.state["drafts"], self.state["scroll"] = {}, 0
        self.state["url"], self.state["page"] = page["url"], page
        self.state["session"] = tab.store.export(tab.sid)
        if tab.store.count_bookings(tab.sid):
            return Outcome(True, "Booking confirmed.", terminated=True)
        if page["errors"]:
            feedback += ERRORS_NOTE + " ".join(page["errors"])
        return Outcome(True, feedback)

    # ------------------------------------------------------------------ observation, score
    def _observation(self, feedback: str) -> str:
        page, top = self.state["page"], self.state["scroll"]
        lines = page["lines"]
        shown = lines[top : top + self.viewport_lines]
        out = [feedback, f"URL: {page['url']}", f"Title: {page['title']}"]
        if top > 0:
            out.append(f"({top} lines above: scroll[up])")
        out += shown
        below = len(lines) - top - len(shown)
        if below > 0:
            out.append(f"({below} more lines below: scroll[down])")
        return "\n".join(out)

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """Feedback line, URL, title, alerts, then what changed since ``previous`` (env card).

        Works from the text alone (no browser call); the feedback's copy of the errors is
        dropped since the alert lines follow.
        """
        feedback, head, body = _page_parts(obs)
        if not head:
            return super().summarize(obs, info)
        lines = [clip(feedback.split(ERRORS_NOTE)[0], LINE_CHARS)]
        lines += [clip(line, LINE_CHARS) for line in head]
        lines += [clip(line, LINE_CHARS) for line in body if line.startswith("alert:")]
        return fit_lines([*lines, *_changes(body, head, previous)], self.SUMMARY_CHARS)

    def available_actions(self) -> list[str]:
        """The actions the current page allows (``type`` with a ``...`` placeholder)."""
        acts = []
        for e in self.state["page"]["elements"]:
            if e["disabled"]:
                continue
            if e["kind"] == "textbox":
                acts.append(f"type[{e['id']}][...]")
            elif e["kind"] == "select":
                acts += [f"select[{e['id']}][{o}]" for o in e["options"] if o]
            else:
                acts.append(f"click[{e['id']}]")
        if len(self.state["history"]) > 1:
            acts.append("back")
        if self.state["scroll"] > 0:
            acts.append("scroll[up]")
        if len(self.state["page"]["lines"]) > self.state["scroll"] + self.viewport_lines:
            acts.append("scroll[down]")
        return acts

    def _evaluate(self) -> Evaluation:
        assert self.task is not None
        tab = self._tab
        bookings = tab.store.bookings(tab.sid) if tab is not None and tab.sid else []
        booking = bookings[0] if bookings else None
        items = rubric(self.task, booking)
        score = sum(i["met"] for i in items) / len(items) if booking else 0.0
        details = {
            "booking_ref": booking["ref"] if booking else None,
            "booked_flight": booking["flight_id"] if booking else None,
            "target_flight": self.task.target,
        }
        return Evaluation(
            score, items, details, success=bool(booking) and all(i["met"] for i in items)
        )

    def _finish_step(self, outcome: Outcome) -> tuple[str, float, bool, bool, StepInfo]:
        if self._error is None:
            return super()._finish_step(outcome)
        self._done, self._terminated = True, False
        self._feedback = outcome.feedback
        self._obs = self._observation(outcome.feedback)
        info = self._info(outcome.valid, final=True)
        info["error"] = self._error
        return self._obs, float(info["score"]), False, True, info

    # ------------------------------------------------------------------ state, pickling
    def _get_state(self) -> Any:
        return copy.deepcopy(self.state)

    def _set_state(self, state: Any) -> None:
        self._error = None
        if self._synced and self._tab is not None and not self._tab.closed and state == self.state:
            return
        self._live()
        if self._tab.sid is None:
            self._tab.open(state["ctx"])
        try:
            self._load(state)
        except Exception:  # noqa: BLE001 - the browser died since: a new context, once
            self._tab.open(state["ctx"])
            self._load(state)

    def state_fingerprint(self) -> Any:
        """URL, page text, typed drafts, history, scroll and the live server session."""
        live = (
            self._tab.store.export(self._tab.sid)
            if self._tab is not None and self._tab.sid
            else None
        )
        s = self.state
        return (
            s["url"],
            tuple(s["page"]["lines"]),
            str(s["drafts"]),
            tuple(s["history"]),
            s["scroll"],
            live,
        )

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_tab"], d["_synced"] = None, False
        if self.task is not None and self.state is not None:
            d["_pending"] = copy.deepcopy(self.state)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)

    def close(self) -> None:
        """Close the browser context; the last env of the process stops browser and server."""
        if self._tab is not None:
            self._tab.close()
            self._tab = None
        super().close()
