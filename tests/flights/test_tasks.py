"""Tasks, schedules and scoring of FlightBooking, without a browser."""

from __future__ import annotations

import numpy as np
import pytest

from earlyexp.envs.flights.data import ID_AIRLINES, ID_AIRPORTS, OOD_AIRLINES, OOD_AIRPORTS
from earlyexp.envs.flights.env import FlightBookingEnv
from earlyexp.envs.flights.schedule import find_flight, schedule
from earlyexp.envs.flights.tasks import OOD_KINDS, generate_task, rubric
from earlyexp.envs.flights.validation import check_card, luhn_ok


@pytest.fixture(scope="module")
def panels():
    env = FlightBookingEnv()
    return {s: env.panel(s) for s in ("test", "ood")}


def booking_for(task, flight_id=None, names=None, cabin=None, seat=None):
    people = names or [f"{f} {last}" for f, last, _ in task.passengers]
    return {
        "flight_id": flight_id or task.target,
        "cabin": cabin or task.cabin,
        "passengers": [{"name": n, "dob": "1990-01-01", "seat": seat} for n in people],
    }


def seat_ok(task):
    kind = task.constraint("seat")
    return {"window": "14A", "aisle": "14C"}.get(kind)


def test_schedules_are_deterministic_and_prices_unique():
    a = schedule(7, "id", "DEN", "BOS", "2027-03-14")
    schedule.cache_clear()
    b = schedule(7, "id", "DEN", "BOS", "2027-03-14")
    assert a == b and len(a) >= 12
    for cabin in ("economy", "business"):
        prices = [f.prices[cabin] for f in a]
        assert len(set(prices)) == len(prices)
    assert schedule(8, "id", "DEN", "BOS", "2027-03-14") != a
    assert find_flight(7, "id", a[3].id) == a[3]
    assert find_flight(7, "id", "nonsense") is None


def test_target_booking_meets_every_rubric_item(panels):
    for split, tasks in panels.items():
        for task in tasks[:60]:
            items = rubric(task, booking_for(task, seat=seat_ok(task)))
            assert all(i["met"] for i in items), (split, task, items)


def test_wrong_bookings_miss_items(panels):
    task = next(t for t in panels["test"] if t.objective == "cheapest")
    others = [f for f in task.flights() if f.id != task.target]
    cheaper = [
        f
        for f in others
        if f.prices[task.cabin] < find_flight(task.seed, task.world, task.target).prices[task.cabin]
    ]
    wrong = (cheaper or others)[0]
    items = {
        i["criterion"]: i["met"]
        for i in rubric(task, booking_for(task, flight_id=wrong.id, seat=seat_ok(task)))
    }
    assert not all(items.values())
    items = {
        i["criterion"]: i["met"]
        for i in rubric(task, booking_for(task, names=["Nobody Here"] * task.adults))
    }
    assert items[next(k for k in items if k.startswith("passenger names"))] is False
    assert not any(i["met"] for i in rubric(task, None))


def test_ood_shifts_the_distribution(panels):
    id_codes = {a.code for a in ID_AIRPORTS}
    ood_codes = {a.code for a in OOD_AIRPORTS}
    for task in panels["test"]:
        assert {task.origin, task.destination} <= id_codes
        assert task.theme == "classic" and not {k for k, _ in task.constraints} & set(OOD_KINDS)
        assert {f.airline for f in task.flights()} <= {a.code for a in ID_AIRLINES}
    for task in panels["ood"]:
        assert {task.origin, task.destination} & ood_codes
        assert task.theme == "compact" and {k for k, _ in task.constraints} & set(OOD_KINDS)
        assert {f.airline for f in task.flights()} <= {a.code for a in OOD_AIRLINES}


def test_train_stream_never_shows_ood_cities_or_kinds():
    ood_codes = {a.code for a in OOD_AIRPORTS}
    for i in range(300):
        task = generate_task(np.random.default_rng(i), "train")
        assert not {task.origin, task.destination} & ood_codes
        assert not {k for k, _ in task.constraints} & set(OOD_KINDS)


def test_task_cards_pass_luhn(panels):
    for task in panels["test"][:50] + panels["ood"][:50]:
        assert check_card(task.card_number) is None
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
