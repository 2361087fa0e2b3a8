"""The scripted expert: the next action that drives the site to the task's target booking.

It reads only what the agent sees (the URL and the page's element table) plus the task, and
acts through the same ``click``/``type``/``select`` actions. On the result list it narrows
the view the way a careful person would (sort by the objective, filter by the stated stops
and airline), then pages to the target flight.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from earlyexp.envs.flights import forms
from earlyexp.envs.flights.data import AIRLINES, AIRPORTS, find_airport
from earlyexp.envs.flights.schedule import PAGE_SIZE, ResultView, clock, find_flight, view_flights
from earlyexp.envs.flights.tasks import FlightTask, seat_kind

Element = dict[str, Any]
VIEW_FIELDS = ("sort", "stops", "airline", "time")


def _query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def _click(el: Element) -> str:
    return f"click[{el['id']}]"


def _home(elements: list[Element]) -> str:
    return _click(next(e for e in elements if e["kind"] == "link" and e["href"] == "/"))


def _submit(elements: list[Element], exclude: tuple[str, ...] = ()) -> str:
    """Click the form's submit button (the last enabled submit that is not excluded)."""
    buttons = [
        e
        for e in elements
        if e["kind"] == "button" and e["nav"] and not e["disabled"] and e["name"] not in exclude
    ]
    return _click(buttons[-1])


def _same(name: str, have: str, want: str) -> bool:
    if name in ("origin", "destination"):
        return find_airport(have) is not None and find_airport(have) == find_airport(want)
    return have.strip() == want.strip()


def fill(elements: list[Element], values: dict[str, str]) -> str | None:
    """The first ``type``/``select`` that brings a form field to ``values``; None when done."""
    for el in elements:
        want = values.get(el["name"])
        if want is None or el["disabled"]:
            continue
        if el["kind"] == "textbox" and not _same(el["name"], el["value"], want):
            return f"type[{el['id']}][{want}]"
        if el["kind"] == "select" and want in el["values"]:
            label = el["options"][el["values"].index(want)]
            if el["value"] != label:
                return f"select[{el['id']}][{label}]"
    return None


def search_values(task: FlightTask) -> dict[str, str]:
    """The search form as the expert fills it."""
    return {
        "origin": AIRPORTS[task.origin].label,
        "destination": AIRPORTS[task.destination].label,
        "date": task.date,
        "adults": str(task.adults),
        "cabin": task.cabin,
    }


def desired_view(task: FlightTask) -> ResultView:
    """Sort by the objective; filter by the task's stops and airline constraints."""
    sort = {"cheapest": "price", "fastest": "duration"}.get(task.objective, "departure")
    stops = task.constraint("stops")
    airline = task.constraint("airline")
    return ResultView(
        sort=sort, stops="any" if stops is None else str(stops), airline=airline or "any"
    )


def _search_matches(task: FlightTask, q: dict[str, str]) -> bool:
    want = search_values(task)
    return all(_same(k, q.get(k, ""), v) for k, v in want.items())


def _view_distance(a: ResultView, b: ResultView) -> int:
    return sum(getattr(a, f) != getattr(b, f) for f in VIEW_FIELDS)


def _results_action(task: FlightTask, elements: list[Element], q: dict[str, str]) -> str:
    if not _search_matches(task, q):
        return _click(
            next(e for e in elements if e["kind"] == "link" and e["href"].startswith("/?"))
        )
    view = ResultView.from_query(q)
    on_page = [e for e in elements if e["flight"] == task.target]
    if on_page:
        return _click(on_page[0])
    want = desired_view(task)
    if _view_distance(view, want) > 0:
        return _change_view(elements, view, want)
    shown = view_flights(task.flights(), view, task.cabin)
    index = next(i for i, f in enumerate(shown) if f.id == task.target)
    page = index // PAGE_SIZE + 1
    links = [
        (e, ResultView.from_query(_query(e["href"])[1]))
        for e in elements
        if e["kind"] == "link" and e["href"].startswith("/results")
    ]
    same = [(e, v) for e, v in links if _view_distance(v, view) == 0 and v.page != view.page]
    best = min(same, key=lambda ev: abs(ev[1].page - page))
    return _click(best[0])


def _change_view(elements: list[Element], view: ResultView, want: ResultView) -> str:
    """One step toward the view ``want``: a sort/filter link, or the filter menus + Apply."""
    selects = {e["name"]: e for e in elements if e["kind"] == "select"}
    if "sort" in selects:  # the compact layout: menus and an Apply button
        action = fill(elements, {f: getattr(want, f) for f in VIEW_FIELDS})
        return action or _submit(elements)
    links = [
        (e, ResultView.from_query(_query(e["href"])[1]))
        for e in elements
        if e["kind"] == "link" and e["href"].startswith("/results")
    ]
    now = _view_distance(view, want)
    closer = [(e, v) for e, v in links if _view_distance(v, want) < now]
    return _click(min(closer, key=lambda ev: _view_distance(ev[1], want))[0])


def _trip_text(task: FlightTask) -> str:
    f = find_flight(task.seed, task.world, task.target)
    assert f is not None
    n = task.adults
    return (
        f"{f.code} {AIRLINES[f.airline].name}, {f.origin} → {f.destination}, {f.date} "
        f"{clock(f.depart)}, {task.cabin}, {n} adult{'s' if n > 1 else ''}"
    )


def _seats_action(task: FlightTask, page: dict[str, Any]) -> str:
    elements = page["elements"]
    kind = task.constraint("seat")
    if kind is None:
        return _click(next(e for e in elements if e["name"] == "skip"))
    chosen = next((ln.split(":", 1)[1] for ln in page["lines"] if ln.startswith("Chosen:")), "")
    if any(s.strip() and seat_kind(s.strip()) != kind for s in chosen.split(",")):
        return _click(next(e for e in elements if e["name"] == "clear"))
    free = [
        e
        for e in elements
        if e["name"] == "seat" and not e["disabled"] and seat_kind(e["label"].split()[0]) == kind
    ]
    return _click(free[0])


def expert_action(task: FlightTask, page: dict[str, Any]) -> str:
    """The expert's next action on ``page`` (the env's last read of the browser page)."""
    path, q = _query(page["url"])
    elements = page["elements"]
    names = {e["name"] for e in elements}
    if path == "/" or (path == "/results" and "origin" in names):
        return fill(elements, search_values(task)) or _submit(elements)
    if path == "/results":
        return _results_action(task, elements, q)
    if path.startswith("/flight/"):
        if (
            path.endswith(task.target)
            and q.get("cabin") == task.cabin
            and q.get("adults") == str(task.adults)
        ):
            return _submit(elements)
        return _click(
            next(e for e in elements if e["kind"] == "link" and e["href"].startswith("/results"))
        )
    if path.startswith("/book/") and not any(_trip_text(task) in ln for ln in page["lines"]):
        return _home(elements)
    if path == "/book/passengers":
        values = forms.task_passenger_values(task.theme, task.passengers, task.email)
        return fill(elements, values) or _submit(elements)
    if path == "/book/seats":
        return _seats_action(task, page)
    if path == "/book/payment":
        values = forms.task_payment_values(
            task.theme, task.card_number, task.card_expiry, task.card_name
        )
        return fill(elements, values) or _submit(elements)
    return _home(elements)
