"""Flight-booking tasks: generation, instruction text and scoring against a booking row.

A task names a route, a date, a cabin, the travellers and 1-3 constraints plus an objective
("the cheapest", "the fastest", ...). It is generated together with its target flight (the
flight the expert books), so every task is solvable. The score is the fraction of rubric
items that the booking stored in the site's database meets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from earlyexp.envs.core.types import RubricItem
from earlyexp.envs.flights.data import (
    AIRLINES,
    AIRPORTS,
    CABINS,
    FIRST_NAMES,
    ID_AIRPORTS,
    LAST_NAMES,
    OOD_AIRPORTS,
)
from earlyexp.envs.flights.schedule import Flight, clock, find_flight, schedule, seat_map, span
from earlyexp.envs.flights.validation import luhn_digit

ID_KINDS = ("stops", "airline", "depart_after", "depart_before", "max_price", "seat")
OOD_KINDS = ("arrive_between", "max_layover")
OBJECTIVES = ("cheapest", "fastest", "earliest", "any")
FLIGHT_KINDS = (
    "stops",
    "airline",
    "depart_after",
    "depart_before",
    "arrive_between",
    "max_layover",
    "max_price",
)


@dataclass(frozen=True)
class FlightTask:
    """One booking task.

    Attributes:
        seed: the schedule seed of the task's site session.
        world: ``id`` or ``ood`` (which airlines and connection airports exist).
        theme: site layout, ``classic`` (train/test) or ``compact`` (ood).
        passengers: ``(first, last, date of birth YYYY-MM-DD)`` per adult.
        constraints: ``(kind, value)`` pairs; value is an int, a str or ``[lo, hi]``.
        objective: ``cheapest``, ``fastest``, ``earliest`` or ``any``.
        target: the id of the flight the expert books.
    """

    seed: int
    world: str
    theme: str
    origin: str
    destination: str
    date: str
    cabin: str
    passengers: tuple[tuple[str, str, str], ...]
    email: str
    card_number: str
    card_expiry: str
    card_name: str
    constraints: tuple[tuple[str, Any], ...]
    objective: str
    target: str

    @property
    def adults(self) -> int:
        """Number of travellers."""
        return len(self.passengers)

    def constraint(self, kind: str) -> Any:
        """The value of constraint ``kind``, or None when the task has none."""
        return next((v for k, v in self.constraints if k == kind), None)

    def flights(self) -> tuple[Flight, ...]:
        """The schedule of the task's route and date."""
        return schedule(self.seed, self.world, self.origin, self.destination, self.date)

    def to_json(self) -> dict[str, Any]:
        """Canonical form for panel hashes."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FlightTask:
        """Inverse of :meth:`to_json` (after a JSON round trip)."""
        return cls(
            **dict(
                d,
                passengers=tuple(tuple(p) for p in d["passengers"]),
                constraints=tuple((k, v) for k, v in d["constraints"]),
            )
        )


def constraint_text(kind: str, value: Any) -> str:
    """The instruction words for one constraint."""
    if kind == "stops":
        return "nonstop" if value == 0 else "with at most 1 stop"
    if kind == "airline":
        return f"on {AIRLINES[value].name}"
    if kind == "depart_after":
        return f"departing at or after {clock(value)}"
    if kind == "depart_before":
        return f"departing before {clock(value)}"
    if kind == "arrive_between":
        return f"arriving between {clock(value[0])} and {clock(value[1])} the same day"
    if kind == "max_layover":
        return f"with no layover longer than {span(value)}"
    if kind == "max_price":
        return f"under ${value} per person"
    if kind == "seat":
        return f"with {value} seats for everyone"
    raise ValueError(f"Expect a constraint kind in {ID_KINDS + OOD_KINDS}, actually: {kind!r}")


def flight_meets(kind: str, value: Any, f: Flight, cabin: str) -> bool:
    """True when flight ``f`` satisfies a flight-level constraint."""
    if kind == "stops":
        return f.stops <= value
    if kind == "airline":
        return f.airline == value
    if kind == "depart_after":
        return f.depart >= value
    if kind == "depart_before":
        return f.depart < value
    if kind == "arrive_between":
        return value[0] <= f.arrive <= value[1]
    if kind == "max_layover":
        return f.max_layover <= value
    if kind == "max_price":
        return f.prices[cabin] < value
    return True


def seat_kind(seat: str) -> str:
    """``window`` (A, F), ``aisle`` (C, D) or ``middle`` (B, E)."""
    return {"A": "window", "F": "window", "C": "aisle", "D": "aisle"}.get(seat[-1:], "middle")


def feasible(flights: tuple[Flight, ...], cabin: str, constraints) -> list[Flight]:
    """Flights of ``flights`` meeting every flight-level constraint."""
    return [f for f in flights if all(flight_meets(k, v, f, cabin) for k, v in constraints)]


def best(flights: list[Flight], objective: str, cabin: str) -> Flight:
    """The flight the objective picks (``any``: the earliest departure)."""
    key = {
        "cheapest": lambda f: (f.prices[cabin], f.id),
        "fastest": lambda f: (f.duration, f.prices[cabin], f.id),
        "earliest": lambda f: (f.depart, f.prices[cabin], f.id),
        "any": lambda f: (f.depart, f.id),
    }[objective]
    return min(flights, key=key)


def objective_met(objective: str, booked: Flight, pool: list[Flight], cabin: str) -> bool:
    """True when ``booked`` is optimal for ``objective`` among ``pool``."""
    if objective == "any" or not pool:
        return objective == "any"
    if objective == "cheapest":
        return booked.prices[cabin] == min(f.prices[cabin] for f in pool)
    if objective == "fastest":
        return booked.duration == min(f.duration for f in pool)
    return booked.depart == min(f.depart for f in pool)


OBJECTIVE_WORDS = {
    "cheapest": "the cheapest",
    "fastest": "the fastest",
    "earliest": "the earliest",
    "any": "a",
}


def _article(task: FlightTask) -> str:
    if task.objective != "any":
        return OBJECTIVE_WORDS[task.objective]
    return "an" if task.cabin[0] in "aeiou" else "a"


def instruction(task: FlightTask) -> str:
    """The task as told to the agent."""
    o, d = AIRPORTS[task.origin].label, AIRPORTS[task.destination].label
    cons = [constraint_text(k, v) for k, v in task.constraints]
    people = " and ".join(f"{f} {last} (born {dob})" for f, last, dob in task.passengers)
    n = task.adults
    return (
        f"Book {_article(task)} {task.cabin} flight from {o} to {d} on "
        f"{task.date}{', ' + ', '.join(cons) if cons else ''}, "
        f"for {n} adult{'s' if n > 1 else ''}: "
        f"{people}. Contact email: {task.email}. Pay with card {task.card_number}, expiry "
        f"{task.card_expiry}, name on card {task.card_name}."
    )


def _pick_airports(rng: np.random.Generator, split: str) -> tuple[str, str]:
    if split != "ood":
        a, b = rng.choice(len(ID_AIRPORTS), size=2, replace=False)
        return ID_AIRPORTS[int(a)].code, ID_AIRPORTS[int(b)].code
    unseen = OOD_AIRPORTS[int(rng.integers(len(OOD_AIRPORTS)))].code
    others = [a.code for a in ID_AIRPORTS + OOD_AIRPORTS if a.code != unseen]
    other = others[int(rng.integers(len(others)))]
    return (unseen, other) if rng.random() < 0.5 else (other, unseen)


def _constraint_value(kind: str, f: Flight, rng: np.random.Generator, cabin: str) -> Any:
    """A value of constraint ``kind`` that flight ``f`` meets (None when none fits)."""
    hour = int(rng.integers(0, 3)) * 60
    if kind == "stops":
        return None if f.stops > 1 else f.stops
    if kind == "airline":
        return f.airline
    if kind == "depart_after":
        return max(0, f.depart // 60 * 60 - hour)
    if kind == "depart_before":
        return min(1440, (f.depart // 60 + 1) * 60 + hour)
    if kind == "arrive_between":
        if f.arrive >= 1440 - 60:
            return None
        lo = max(0, f.arrive // 60 * 60 - hour - 60)
        hi = max(lo + int(rng.integers(3, 6)) * 60, (f.arrive // 60 + 1) * 60)
        return [lo, min(1439, hi)]
    if kind == "max_layover":
        return None if f.stops == 0 else (f.max_layover // 30 + 1 + int(rng.integers(0, 2))) * 30
    return None


def _passengers(rng: np.random.Generator, n: int) -> tuple[tuple[str, str, str], ...]:
    firsts = rng.choice(len(FIRST_NAMES), size=n, replace=False)
    lasts = rng.choice(len(LAST_NAMES), size=n, replace=False)
    out = []
    for a, b in zip(firsts, lasts, strict=True):
        y, m, d = int(rng.integers(1950, 2005)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
        out.append((FIRST_NAMES[int(a)], LAST_NAMES[int(b)], f"{y:04d}-{m:02d}-{d:02d}"))
    return tuple(out)


def _card(rng: np.random.Generator) -> tuple[str, str]:
    partial = "4" + "".join(str(int(x)) for x in rng.integers(0, 10, size=14))
    digits = partial + luhn_digit(partial)
    grouped = " ".join(digits[i : i + 4] for i in range(0, 16, 4))
    return grouped, f"{int(rng.integers(1, 13)):02d}/{int(rng.integers(28, 32))}"


def _seats_free(flight: Flight, cabin: str, kind: str) -> int:
    return sum(
        1
        for row in seat_map(flight.id, cabin)
        for s, taken in row[1]
        if not taken and seat_kind(s) == kind
    )


def _draw_constraints(rng, split, flights, cabin, adults):
    """Draw constraints from an anchor flight; return (constraints, objective, target)."""
    kinds = list(ID_KINDS[:5]) + (list(OOD_KINDS) if split == "ood" else [])
    for _ in range(200):
        anchor = flights[int(rng.integers(len(flights)))]
        n = int(rng.integers(1, 4))
        chosen = [str(k) for k in rng.choice(kinds, size=n, replace=False)]
        if split == "ood" and not set(chosen) & set(OOD_KINDS):
            chosen[0] = OOD_KINDS[int(rng.integers(len(OOD_KINDS)))]
        values = [(k, _constraint_value(k, anchor, rng, cabin)) for k in chosen if k != "max_price"]
        if any(v is None for _, v in values):
            continue
        objective = OBJECTIVES[int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15]))]
        pool = feasible(flights, cabin, values)
        target = best(pool, objective, cabin)
        if "max_price" in chosen:
            values.append(
                ("max_price", (target.prices[cabin] // 10 + 1 + int(rng.integers(0, 5))) * 10)
            )
        if rng.random() < 0.2:
            kind = "window" if rng.random() < 0.5 else "aisle"
            if _seats_free(target, cabin, kind) >= adults:
                values.append(("seat", kind))
        return (
            tuple(
                sorted(
                    values,
                    key=lambda kv: FLIGHT_KINDS.index(kv[0]) if kv[0] in FLIGHT_KINDS else 99,
                )
            ),
            objective,
            target,
        )
    raise RuntimeError("Expect a feasible constraint set within 200 draws, actually: none")


def generate_task(rng: np.random.Generator, split: str) -> FlightTask:
    """Draw a task of ``split`` (see the env card's Splits section)."""
    world = "ood" if split == "ood" else "id"
    while True:
        origin, destination = _pick_airports(rng, split)
        date = (np.datetime64("2027-01-01") + int(rng.integers(0, 365))).astype(str)
        seed = int(rng.integers(2**31))
        flights = schedule(seed, world, origin, destination, str(date))
        if flights:
            break
    cabin = CABINS[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    adults = int(rng.integers(1, 5 if split == "ood" else 4))
    constraints, objective, target = _draw_constraints(rng, split, flights, cabin, adults)
    passengers = _passengers(rng, adults)
    card_number, card_expiry = _card(rng)
    first, last, _ = passengers[0]
    return FlightTask(
        seed=seed,
        world=world,
        theme="compact" if split == "ood" else "classic",
        origin=origin,
        destination=destination,
        date=str(date),
        cabin=cabin,
        passengers=passengers,
        email=f"{first}.{last}@example.com".lower(),
        card_number=card_number,
        card_expiry=card_expiry,
        card_name=f"{first} {last}",
        constraints=constraints,
        objective=objective,
        target=target.id,
    )


def rubric(task: FlightTask, booking: dict[str, Any] | None) -> list[RubricItem]:
    """Which parts of ``task`` the booking row meets (all unmet without a booking)."""
    o, d = AIRPORTS[task.origin].label, AIRPORTS[task.destination].label
    names = ", ".join(f"{f} {last}" for f, last, _ in task.passengers)
    items: list[tuple[str, bool]] = []
    flight = find_flight(task.seed, task.world, booking["flight_id"]) if booking else None
    booked_names = sorted(p["name"].casefold() for p in booking["passengers"]) if booking else []
    want_names = sorted(f"{f} {last}".casefold() for f, last, _ in task.passengers)
    items.append(
        (
            f"route {o} to {d}",
            flight is not None
            and (flight.origin, flight.destination) == (task.origin, task.destination),
        )
    )
    items.append((f"date {task.date}", flight is not None and flight.date == task.date))
    items.append((f"cabin {task.cabin}", booking is not None and booking["cabin"] == task.cabin))
    items.append(
        (
            f"{task.adults} passenger(s)",
            booking is not None and len(booking["passengers"]) == task.adults,
        )
    )
    items.append((f"passenger names {names}", booked_names == want_names))
    cabin = booking["cabin"] if booking else task.cabin
    for kind, value in task.constraints:
        if kind == "seat":
            seats = [p.get("seat") or "" for p in booking["passengers"]] if booking else []
            met = bool(seats) and all(seat_kind(s) == value for s in seats)
        else:
            met = flight is not None and flight_meets(kind, value, flight, cabin)
        items.append((constraint_text(kind, value), met))
    if task.objective != "any":
        pool = feasible(task.flights(), cabin, [kv for kv in task.constraints if kv[0] != "seat"])
        met = (
            flight is not None
            and flight.date == task.date
            and objective_met(task.objective, flight, pool, cabin)
        )
        items.append(
            (f"{OBJECTIVE_WORDS[task.objective]} flight meeting the other conditions", met)
        )
    return [{"criterion": c, "met": bool(m)} for c, m in items]
