"""A simulated travel agent and calendar: flight search, bookings and calendar events."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np

from earlyexp.envs.toolcall.calls import Param, ToolError, ToolSpec, call_str
from earlyexp.envs.toolcall.domain import (
    REFUSAL,
    Domain,
    Draft,
    TemplateEntry,
    Turn,
    ask_first,
    pick,
    respond,
)
from earlyexp.envs.toolcall.domains.bank import money
from earlyexp.envs.toolcall.domains.filesystem import VOCAB

State = dict[str, Any]
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat() if len(text) == 10 else _bad_date(text)
    except ValueError:
        return _bad_date(text)


def _bad_date(text: str) -> str:
    raise ToolError(f"Invalid date {text[:20]!r}: expected YYYY-MM-DD.")


def _time(text: str) -> str:
    if not _TIME.match(text):
        raise ToolError(f"Invalid time {text[:20]!r}: expected HH:MM (24-hour).")
    return text


def search_flights(st: State, origin: str, destination: str, date: str) -> str:
    """Flights on one route and day, by departure time."""
    day = _date(date)
    rows = sorted(
        (f[3], fid, f) for fid, f in st["flights"].items() if f[:3] == [origin, destination, day]
    )
    if not rows:
        return f"No flights from {origin[:30]} to {destination[:30]} on {day}."
    return "\n".join(
        f"{fid} {f[5]} departs {f[3]} arrives {f[4]}, {f[7]} stop(s), {f[8]} seats left, "
        f"{money(f[6])}"
        for _, fid, f in rows
    )


def book_flight(st: State, flight_id: str, passenger: str) -> str:
    """Book a seat."""
    if flight_id not in st["flights"]:
        raise ToolError(f"No such flight {flight_id[:20]!r}.")
    if not passenger.strip() or len(passenger) > 80:
        raise ToolError("Invalid passenger name.")
    bid = f"B{st['next_booking']}"
    st["next_booking"] += 1
    st["bookings"][bid] = [flight_id, passenger]
    return f"Booked {flight_id} for {passenger}: booking {bid}."


def list_bookings(st: State) -> str:
    """The user's bookings."""
    rows = []
    for bid, (fid, who) in st["bookings"].items():
        f = st["flights"][fid]
        rows.append(f"{bid}: {fid} {f[0]} -> {f[1]} on {f[2]} at {f[3]}, passenger {who}")
    return "\n".join(rows) or "(no bookings)"


def cancel_booking(st: State, booking_id: str) -> str:
    """Cancel a booking."""
    if booking_id not in st["bookings"]:
        raise ToolError(f"No such booking {booking_id[:20]!r}.")
    del st["bookings"][booking_id]
    return f"Cancelled booking {booking_id}."


def list_events(st: State, date: str) -> str:
    """Calendar events on one day."""
    day = _date(date)
    rows = sorted((e[2], eid, e) for eid, e in st["events"].items() if e[1] == day)
    return "\n".join(f"{eid}: {e[2]}-{e[3]} {e[0]}" for _, eid, e in rows) or f"Nothing on {day}."


def create_event(st: State, title: str, date: str, start: str, end: str) -> str:
    """Add a calendar event."""
    day, t0, t1 = _date(date), _time(start), _time(end)
    if not title.strip() or len(title) > 100:
        raise ToolError("Invalid title.")
    if t0 >= t1:
        raise ToolError(f"The event must end after it starts ({t0} >= {t1}).")
    eid = f"E{st['next_event']}"
    st["next_event"] += 1
    st["events"][eid] = [title, day, t0, t1]
    return f"Created event {eid}: {title} on {day} {t0}-{t1}."


def delete_event(st: State, event_id: str) -> str:
    """Delete a calendar event."""
    if event_id not in st["events"]:
        raise ToolError(f"No such event {event_id[:20]!r}.")
    del st["events"][event_id]
    return f"Deleted event {event_id}."


DATE = Param("date", "str", "day as YYYY-MM-DD")
FUNCTIONS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "search_flights",
        "List the flights on a route and day.",
        (
            Param("origin", "str", "departure city"),
            Param("destination", "str", "arrival city"),
            DATE,
        ),
        search_flights,
    ),
    ToolSpec(
        "book_flight",
        "Book a seat on a flight.",
        (
            Param("flight_id", "str", "flight id from search_flights"),
            Param("passenger", "str", "passenger's full name"),
        ),
        book_flight,
        mutates=True,
    ),
    ToolSpec("list_bookings", "List the user's flight bookings.", (), list_bookings),
    ToolSpec(
        "cancel_booking",
        "Cancel a flight booking.",
        (Param("booking_id", "str", "e.g. B1001"),),
        cancel_booking,
        mutates=True,
    ),
    ToolSpec("list_events", "List the calendar events of a day.", (DATE,), list_events),
    ToolSpec(
        "create_event",
        "Add an event to the calendar.",
        (
            Param("title", "str", "what the event is"),
            DATE,
            Param("start", "str", "start time HH:MM"),
            Param("end", "str", "end time HH:MM"),
        ),
        create_event,
        mutates=True,
    ),
    ToolSpec(
        "delete_event",
        "Delete a calendar event.",
        (Param("event_id", "str", "e.g. E12"),),
        delete_event,
        mutates=True,
    ),
)


def flatten(st: State) -> dict[str, Any]:
    """Scored view: bookings and calendar events."""
    out: dict[str, Any] = {f"booking {b}": v for b, v in st["bookings"].items()}
    out.update({f"event {e}": v for e, v in st["events"].items()})
    return out


def describe(key: str, value: Any) -> str:
    """Rubric line for one scored key."""
    if value is None:
        return f"{key} does not exist"
    if key.startswith("booking"):
        return f"{key}: flight {value[0]} for {value[1]}"
    return f"{key}: {value[0]} on {value[1]} {value[2]}-{value[3]}"


# ---------------------------------------------------------------------- task templates
def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _day(rng: np.random.Generator) -> str:
    return (dt.date(2024, 7, 1) + dt.timedelta(days=int(rng.integers(62)))).isoformat()


def _add_flight(
    st: State, rng: np.random.Generator, route: tuple[str, str, str], airline: str
) -> str:
    fid = f"{airline[:2].upper()}{100 + len(st['flights'])}"
    dep = int(rng.integers(6 * 12, 21 * 12)) * 5
    arr = min(dep + int(rng.integers(9, 60)) * 5, 23 * 60 + 55)
    price = int(rng.integers(40, 600)) * 100 + 99
    stops, seats = int(rng.integers(0, 3)), int(rng.integers(1, 180))
    st["flights"][fid] = [*route, _hhmm(dep), _hhmm(arr), airline, price, stops, seats]
    return fid


def _travel(rng: np.random.Generator, route: tuple[str, str, str], on_route: int) -> State:
    st: State = {"flights": {}, "bookings": {}, "events": {}, "next_booking": 1001, "next_event": 1}
    for _ in range(on_route):
        _add_flight(st, rng, route, pick(rng, VOCAB["airlines"]))
    for _ in range(int(rng.integers(5, 12))):
        other = _route(rng)
        if other != route:  # distractors never share the task's route and day
            _add_flight(st, rng, other, pick(rng, VOCAB["airlines"]))
    for _ in range(int(rng.integers(2, 6))):
        start = int(rng.integers(8 * 4, 18 * 4)) * 15
        ev = [pick(rng, VOCAB["event_titles"]), _day(rng), _hhmm(start), _hhmm(start + 60)]
        st["events"][f"E{st['next_event']}"] = ev
        st["next_event"] += 1
    return st


def _route(rng: np.random.Generator) -> tuple[str, str, str]:
    o, d = (str(c) for c in rng.choice(VOCAB["cities"], 2, replace=False))
    return o, d, _day(rng)


def cheapest(rng: np.random.Generator, variant: str) -> Draft:
    """Book the cheapest flight (long context: dozens of flights; missing parameter: no date)."""
    route = _route(rng)
    st = _travel(
        rng,
        route,
        int(rng.integers(80, 150)) if variant == "long_context" else int(rng.integers(3, 7)),
    )
    offers = sorted((f[6], fid) for fid, f in st["flights"].items() if f[:3] == list(route))
    if len(offers) > 1 and offers[0][0] == offers[1][0]:
        st["flights"][offers[0][1]][6] -= 1  # make the cheapest unique
    fid = offers[0][1]
    who = pick(rng, VOCAB["people"])
    o, d, day = route
    search = call_str("search_flights", origin=o, destination=d, date=day)
    book = (
        search,
        call_str("book_flight", flight_id=fid, passenger=who),
        respond(f"Booked {fid} for {who}."),
    )
    if variant == "missing_parameter":
        return ask_first(
            st, f"Book the cheapest flight from {o} to {d} for {who}.",
            "On which date do you want to fly?", ("date", "when", "which day"),
            "the travel date", f"On {day}.", book,
        )  # fmt: skip
    return Draft(st, [Turn(f"Book the cheapest flight from {o} to {d} on {day} for {who}.", book)])


def cancel(rng: np.random.Generator, variant: str) -> Draft:
    """Cancel the booking of one trip (missing function: cancelling is not available)."""
    st = _travel(rng, _route(rng), 0)
    trips = sorted(st["flights"])[:3]
    who = pick(rng, VOCAB["people"])
    for fid in trips:
        book_flight(st, fid, who)
    trip_of = {b: tuple(st["flights"][f][1:3]) for b, (f, _) in st["bookings"].items()}
    bid = pick(rng, sorted(b for b, t in trip_of.items() if list(trip_of.values()).count(t) == 1))
    d, day = trip_of[bid]
    user = f"Cancel my booking for the flight to {d} on {day}."
    if variant == "missing_function":
        refusal = (respond(REFUSAL.format(what="cancel bookings")),)
        return Draft(st, [Turn(user, refusal, refuse=True)], hidden=("cancel_booking",))
    plan = (
        call_str("list_bookings"),
        call_str("cancel_booking", booking_id=bid),
        respond(f"Cancelled {bid}."),
    )
    return Draft(st, [Turn(user, plan)])


def schedule(rng: np.random.Generator, variant: str) -> Draft:
    """Create a calendar event (missing parameter: no time given)."""
    st = _travel(rng, _route(rng), 0)
    title, day = pick(rng, VOCAB["event_titles"]), _day(rng)
    start = int(rng.integers(8 * 4, 19 * 4)) * 15
    t0, t1 = _hhmm(start), _hhmm(start + int(rng.integers(2, 9)) * 15)
    act = call_str("create_event", title=title, date=day, start=t0, end=t1)
    done = respond(f"Added {title} on {day} from {t0} to {t1}.")
    if variant == "missing_parameter":
        return ask_first(
            st, f"Add '{title}' to my calendar on {day}.", "What time does it start and end?",
            ("time", "when"), "the time", f"From {t0} to {t1}.", (act, done),
        )  # fmt: skip
    return Draft(
        st, [Turn(f"Add '{title}' to my calendar on {day} from {t0} to {t1}.", (act, done))]
    )


def agenda(rng: np.random.Generator, variant: str) -> Draft:
    """Report what is on the calendar on a day."""
    st = _travel(rng, _route(rng), 0)
    day = pick(rng, sorted({e[1] for e in st["events"].values()}))
    titles = tuple(sorted({e[0] for e in st["events"].values() if e[1] == day}))
    plan = (call_str("list_events", date=day), respond(f"On {day} you have: {', '.join(titles)}."))
    return Draft(st, [Turn(f"What is on my calendar on {day}?", plan, answers=titles)])


def trip(rng: np.random.Generator, variant: str) -> Draft:
    """Two turns: book one airline's flight, then put it in the calendar."""
    route = _route(rng)
    st = _travel(rng, route, 0)
    airlines = [str(a) for a in rng.choice(VOCAB["airlines"], 3, replace=False)]
    ids = [_add_flight(st, rng, route, a) for a in airlines]
    fid, airline, who = ids[0], airlines[0], pick(rng, VOCAB["people"])
    o, d, day = route
    dep, arr = st["flights"][fid][3:5]
    title = f"Flight to {d}"
    first = (
        call_str("search_flights", origin=o, destination=d, date=day),
        call_str("book_flight", flight_id=fid, passenger=who),
        respond(f"Booked {fid} for {who}."),
    )
    second = (
        call_str("create_event", title=title, date=day, start=dep, end=arr),
        respond(f"Added {title}."),
    )
    return Draft(
        st,
        [
            Turn(f"Book the {airline} flight from {o} to {d} on {day} for {who}.", first),
            Turn(
                f"Now add it to my calendar as '{title}', from its departure to its arrival time.",
                second,
            ),
        ],
    )


DOMAIN = Domain(
    "travel",
    "You manage the user's flight bookings and calendar (dates YYYY-MM-DD, times HH:MM).",
    FUNCTIONS,
    flatten,
    describe,
    {
        "cheapest": TemplateEntry(cheapest, ("base", "long_context", "missing_parameter")),
        "cancel": TemplateEntry(cancel, ("base", "missing_function")),
        "schedule": TemplateEntry(schedule, ("base", "missing_parameter")),
        "agenda": TemplateEntry(agenda, ("base",)),
        "trip": TemplateEntry(trip, ("base",)),
    },
)
