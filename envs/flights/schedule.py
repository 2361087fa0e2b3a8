"""Deterministic flight schedules and the result list's filter, sort and paging.

A route's flights on a date are a pure function of ``(seed, world, origin, destination,
date)``: the site regenerates them on every request, the task generator and the expert read
the same list. The filter/sort/page code here is shared by the site and the expert, so both
agree on what page a flight is on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise

import numpy as np

from earlyexp.envs.flights.data import (
    AIRLINES,
    AIRPORTS,
    CABIN_FACTORS,
    ID_AIRLINES,
    ID_AIRPORTS,
    OOD_AIRLINES,
    OOD_AIRPORTS,
)

PAGE_SIZE = 8
SORTS = {
    "departure": "Departure time",
    "price": "Price",
    "duration": "Duration",
    "arrival": "Arrival time",
}
STOP_FILTERS = {"any": "Any number of stops", "0": "Nonstop only", "1": "1 stop or fewer"}
TIME_FILTERS = {
    "any": "Any time",
    "morning": "Morning (before 12:00)",
    "afternoon": "Afternoon (12:00-17:59)",
    "evening": "Evening (18:00 or later)",
}


@dataclass(frozen=True)
class Flight:
    """One flight of a schedule; times are minutes after midnight of the departure date."""

    id: str
    airline: str
    number: int
    origin: str
    destination: str
    date: str
    depart: int
    duration: int
    via: tuple[str, ...]
    layovers: tuple[int, ...]
    prices: dict[str, int] = field(hash=False)

    @property
    def arrive(self) -> int:
        """Arrival in minutes after midnight of the departure date (may exceed 1440)."""
        return self.depart + self.duration

    @property
    def stops(self) -> int:
        """Number of stops."""
        return len(self.via)

    @property
    def airline_name(self) -> str:
        """The airline's name."""
        return AIRLINES[self.airline].name

    @property
    def code(self) -> str:
        """Flight number as printed, e.g. ``SK 1234``."""
        return f"{self.airline} {self.number}"

    @property
    def max_layover(self) -> int:
        """Longest layover in minutes (0 for a nonstop)."""
        return max(self.layovers, default=0)


def clock(minutes: int) -> str:
    """``HH:MM`` of a time of day (minutes may exceed a day: ``+1`` is added)."""
    day, m = divmod(minutes, 1440)
    return f"{m // 60:02d}:{m % 60:02d}" + (f" (+{day})" if day else "")


def span(minutes: int) -> str:
    """``3h 05m`` of a duration."""
    return f"{minutes // 60}h {minutes % 60:02d}m"


def stops_text(f: Flight) -> str:
    """``Nonstop`` or ``1 stop (DFW 1h 20m)``."""
    if not f.via:
        return "Nonstop"
    legs = ", ".join(f"{v} {span(w)}" for v, w in zip(f.via, f.layovers, strict=True))
    return f"{f.stops} stop{'s' if f.stops > 1 else ''} ({legs})"


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def distance_km(a: str, b: str) -> float:
    """Great-circle distance between two airports."""
    p, q = AIRPORTS[a], AIRPORTS[b]
    la1, la2, dlon = np.radians(p.lat), np.radians(q.lat), np.radians(q.lon - p.lon)
    c = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin(dlon / 2) ** 2
    return float(2 * 6371 * np.arcsin(np.sqrt(c)))


def block_minutes(origin: str, destination: str) -> int:
    """Typical nonstop time of a leg: 30 min on the ground plus 800 km/h (5-min steps)."""
    return 5 * round((30 + distance_km(origin, destination) / 800 * 60) / 5)


def _hubs(origin: str, destination: str, world: str) -> list[str]:
    """Connection airports by detour, best first."""
    pool = ID_AIRPORTS + OOD_AIRPORTS if world == "ood" else ID_AIRPORTS
    hubs = [a.code for a in pool if a.code not in (origin, destination)]
    direct = max(distance_km(origin, destination), 1.0)
    detour = {h: (distance_km(origin, h) + distance_km(h, destination)) / direct for h in hubs}
    return sorted(hubs, key=lambda h: (detour[h], h))


def _route(rng: np.random.Generator, origin: str, destination: str, hubs: list[str]):
    """Draw the stops of one flight: ``(via, layovers, minutes in the air)``."""
    n_stops = int(rng.choice(3, p=[0.4, 0.45, 0.15]))
    picks = [hubs[int(i)] for i in rng.choice(6 + 2 * n_stops, size=n_stops, replace=False)]
    via = tuple(sorted(picks, key=lambda h: distance_km(origin, h)))
    legs = [origin, *via, destination]
    air = sum(block_minutes(a, b) + 5 * int(rng.integers(-2, 3)) for a, b in pairwise(legs))
    layovers = tuple(int(x) * 5 for x in rng.integers(7, 49, size=n_stops))
    return via, layovers, air


@lru_cache(maxsize=4096)
def schedule(seed: int, world: str, origin: str, destination: str, date: str) -> tuple[Flight, ...]:
    """Return the flights from ``origin`` to ``destination`` on ``date`` (sorted by id)."""
    if origin == destination:
        return ()
    rng = np.random.default_rng(_seed(seed, world, origin, destination, date))
    pool = OOD_AIRLINES if world == "ood" else ID_AIRLINES
    hubs = _hubs(origin, destination, world)
    km = distance_km(origin, destination)
    flights: list[Flight] = []
    used: dict[str, set[int]] = {c: set() for c in CABIN_FACTORS}
    for k in range(int(rng.integers(12, 21))):
        airline = pool[int(rng.integers(len(pool)))]
        via, layovers, air = _route(rng, origin, destination, hubs)
        depart = int(rng.integers(5 * 12, 22 * 12 + 1)) * 5
        economy = (60 + 0.085 * km + float(rng.normal(0, 30))) * airline.factor
        economy *= 1.22 if not via else 1.0 - 0.07 * len(via)
        prices = {}
        for cabin, factor in CABIN_FACTORS.items():
            p = max(49, round(economy * factor))
            while p in used[cabin]:  # unique prices: "the cheapest" is always one flight
                p += 1
            used[cabin].add(p)
            prices[cabin] = p
        flights.append(
            Flight(
                id=f"{origin}{destination}{date.replace('-', '')}-{k:02d}",
                airline=airline.code,
                number=100 + int(rng.integers(9800)),
                origin=origin,
                destination=destination,
                date=date,
                depart=depart,
                duration=air + sum(layovers),
                via=via,
                layovers=layovers,
                prices=prices,
            )
        )
    return tuple(flights)


def parse_flight_id(flight_id: str) -> tuple[str, str, str] | None:
    """Return ``(origin, destination, date)`` encoded in a flight id, or None."""
    if len(flight_id) != 17 or flight_id[14] != "-":
        return None
    o, d, ymd = flight_id[:3], flight_id[3:6], flight_id[6:14]
    if not (ymd.isdigit() and ymd.isascii()):
        return None
    return o, d, f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}"


def find_flight(seed: int, world: str, flight_id: str) -> Flight | None:
    """Return the flight with ``flight_id`` in the schedule of ``(seed, world)``, or None."""
    parts = parse_flight_id(flight_id)
    if parts is None:
        return None
    return next((f for f in schedule(seed, world, *parts) if f.id == flight_id), None)


@dataclass(frozen=True)
class ResultView:
    """How the result list is shown: sort key, filters and page (the URL's query)."""

    sort: str = "departure"
    stops: str = "any"
    airline: str = "any"
    time: str = "any"
    page: int = 1

    @classmethod
    def from_query(cls, q: dict[str, str]) -> ResultView:
        """Read the view from a query dict, falling back to defaults on unknown values."""
        page = q.get("page", "1")

        def pick(key: str, allowed, default: str) -> str:
            value = q.get(key, default)
            return value if value in allowed else default

        return cls(
            sort=pick("sort", SORTS, "departure"),
            stops=pick("stops", STOP_FILTERS, "any"),
            airline=pick("airline", AIRLINES, "any"),
            time=pick("time", TIME_FILTERS, "any"),
            page=int(page) if page.isdigit() and page.isascii() and 0 < int(page) < 100 else 1,
        )


def _time_ok(f: Flight, window: str) -> bool:
    hour = f.depart // 60
    return {"any": True, "morning": hour < 12, "afternoon": 12 <= hour < 18, "evening": hour >= 18}[
        window
    ]


def view_flights(flights: tuple[Flight, ...], view: ResultView, cabin: str) -> list[Flight]:
    """Return ``flights`` filtered and sorted as ``view`` says (all pages)."""
    keep = [
        f
        for f in flights
        if (view.stops == "any" or f.stops <= int(view.stops))
        and (view.airline == "any" or f.airline == view.airline)
        and _time_ok(f, view.time)
    ]
    key = {
        "departure": lambda f: (f.depart, f.id),
        "price": lambda f: (f.prices[cabin], f.id),
        "duration": lambda f: (f.duration, f.id),
        "arrival": lambda f: (f.arrive, f.id),
    }[view.sort]
    return sorted(keep, key=key)


def page_count(n: int) -> int:
    """Number of result pages for ``n`` flights (at least 1)."""
    return max(1, -(-n // PAGE_SIZE))


def page_of(flights: list[Flight], page: int) -> list[Flight]:
    """Return the flights on result page ``page`` (1-based)."""
    return flights[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]


SEAT_ROWS = 6
SEAT_LETTERS = "ABCDEF"
FIRST_ROW = {"business": 1, "premium economy": 7, "economy": 14}


def seat_map(flight_id: str, cabin: str) -> list[tuple[int, list[tuple[str, bool]]]]:
    """Rows of ``(seat, taken)`` of ``cabin`` on a flight (occupancy fixed per flight)."""
    first = FIRST_ROW.get(cabin, FIRST_ROW["economy"])
    rows = []
    for r in range(first, first + SEAT_ROWS):
        rows.append(
            (r, [(f"{r}{c}", _seed("seat", flight_id, r, c) % 100 < 45) for c in SEAT_LETTERS])
        )
    return rows
