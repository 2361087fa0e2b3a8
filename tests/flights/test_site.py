"""The flight site's server-side validation and escaping (Starlette test client, no browser)."""

from __future__ import annotations

import html
import re

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from earlyexp.envs.flights.site import COOKIE, create_app  # noqa: E402
from earlyexp.envs.flights.store import Store  # noqa: E402

SEARCH = {
    "origin": "Denver",
    "destination": "BOS",
    "date": "2027-03-14",
    "adults": "2",
    "cabin": "economy",
}
INJECTIONS = [
    "Robert'); DROP TABLE bookings;--",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' OR '1'='1",
]


@pytest.fixture()
def site():
    store = Store()
    client = TestClient(create_app(store, {"seed": 3, "world": "id", "theme": "classic"}))
    client.get("/")
    sid = client.cookies.get(COOKIE)
    yield client, store, sid
    client.close()
    store.close()


def errors(page: str) -> list[str]:
    block = re.search(r'role="alert".*?</div>', page, re.S)
    return (
        [html.unescape(e) for e in re.findall(r"<li>(.*?)</li>", block.group(0), re.S)]
        if block
        else []
    )


def start_booking(client, adults="2") -> None:
    page = client.get("/results", params=dict(SEARCH, adults=adults)).text
    flight = re.search(r'data-flight="([^"]+)"', page).group(1)
    r = client.post("/book", data={"flight": flight, "cabin": "economy", "adults": adults})
    assert r.url.path == "/book/passengers"


def passengers(first="Ana", last="Ruiz", dob="1990-04-02", email="ana@example.com", k=2) -> dict:
    data = {"email": email}
    for i in range(1, k + 1):
        data.update({f"first_{i}": first, f"last_{i}": last, f"dob_{i}": dob})
    return data


PAYMENT = {"card_name": "Ana Ruiz", "card_number": "4111 1111 1111 1111", "card_expiry": "08/29"}


@pytest.mark.parametrize(
    "date, message",
    [
        ("2027-02-30", "Invalid date"),
        ("14/03/2027", "Invalid date"),
        ("2026-05-01", "not on sale"),
        ("", "required"),
    ],
)
def test_bad_search_dates_show_errors(site, date, message):
    client, _, _ = site
    page = client.get("/results", params=dict(SEARCH, date=date)).text
    assert any(message in e for e in errors(page)), errors(page)
    assert "data-flight" not in page


def test_unknown_airport_suggests_names(site):
    client, _, _ = site
    page = client.get("/results", params=dict(SEARCH, origin="Denvr")).text
    assert any("Unknown airport 'Denvr'" in e and "Denver (DEN)" in e for e in errors(page))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("first_1", "", "first name is required"),
        ("last_2", "  ", "last name is required"),
        ("dob_1", "1990-13-01", "Invalid date of birth"),
        ("dob_2", "2015-01-01", "must be adults"),
        ("email", "not-an-email", "Invalid email"),
    ],
)
def test_bad_passenger_details_show_errors_and_book_nothing(site, field, value, message):
    client, store, sid = site
    start_booking(client)
    data = passengers()
    data[field] = value
    r = client.post("/book/passengers", data=data)
    assert r.url.path == "/book/passengers"
    assert any(message in e for e in errors(r.text)), errors(r.text)
    assert client.get("/book/payment").url.path != "/book/payment"
    assert store.count_bookings(sid) == 0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("card_number", "4111 1111 1111 1112", "checksum"),
        ("card_number", "1234", "13 to 19 digits"),
        ("card_number", "", "required"),
        ("card_expiry", "13/29", "Invalid expiry"),
        ("card_expiry", "08/21", "expired"),
        ("card_name", "", "Name on card is required"),
    ],
)
def test_bad_payment_shows_errors_and_books_nothing(site, field, value, message):
    client, store, sid = site
    start_booking(client)
    client.post("/book/passengers", data=passengers())
    client.post("/book/seats", data={"skip": "1"})
    r = client.post("/book/payment", data=dict(PAYMENT, **{field: value}))
    assert r.url.path == "/book/payment"
    assert any(message in e for e in errors(r.text)), errors(r.text)
    assert store.count_bookings(sid) == 0
    r = client.post("/book/payment", data=PAYMENT)
    assert r.url.path.startswith("/confirmation/") and store.count_bookings(sid) == 1


@pytest.mark.parametrize("attack", INJECTIONS)
def test_injections_are_stored_and_shown_as_plain_text(site, attack):
    client, store, sid = site
    page = client.get("/results", params=dict(SEARCH, origin=attack, date=attack)).text
    assert attack not in page and html.escape(attack, quote=False) in page.replace(
        "&#39;", "'"
    ).replace("&#34;", '"')
    start_booking(client, adults="1")
    client.post(
        "/book/passengers",
        data=passengers(first=attack, last=attack, email=f"x{attack.replace(' ', '')}@e.co", k=1),
    )
    client.post("/book/seats", data={"skip": "1"})
    r = client.post("/book/payment", data=dict(PAYMENT, card_name=attack))
    assert r.url.path.startswith("/confirmation/"), errors(r.text)
    (booking,) = store.bookings(sid)
    assert (
        booking["passengers"][0]["name"] == f"{attack} {attack}" and booking["card_name"] == attack
    )
    assert attack not in r.text
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert html.unescape(r.text).count(attack) >= 1
    assert store.table_names() == ["bookings", "sessions", "sqlite_sequence"]


def test_seat_map_records_seats_and_refuses_taken_ones(site):
    client, store, sid = site
    start_booking(client, adults="1")
    client.post("/book/passengers", data=passengers(k=1))
    page = client.get("/book/seats").text
    taken = re.search(r'value="(\w+)" aria-label="[^"]*\(taken\)"', page).group(1)
    free = re.search(r'value="(\w+)" aria-label="\w+ \w+">', page).group(1)
    assert client.post("/book/seats", data={"seat": taken}).url.path == "/book/seats"
    assert client.post("/book/seats", data={"seat": free}).url.path == "/book/payment"
    client.post("/book/payment", data=PAYMENT)
    assert store.bookings(sid)[0]["passengers"][0]["seat"] == free


def test_pages_are_a_function_of_url_and_session(site):
    client, _, _ = site
    a = client.get("/results", params=dict(SEARCH, sort="price", page="2")).text
    b = client.get("/results", params=dict(SEARCH, sort="price", page="2")).text
    assert a == b
    start_booking(client)
    client.post("/book/passengers", data=passengers(first=""))
    assert (
        client.get("/book/passengers?check=1").text == client.get("/book/passengers?check=1").text
    )


def test_a_person_can_play_a_panel_task_and_see_the_score():
    from earlyexp.envs.flights.site import task_context
    from earlyexp.envs.flights.tasks import FlightTask

    ctx = task_context("test:5")
    task = FlightTask.from_json(ctx["task"])
    store = Store()
    with TestClient(create_app(store, ctx)) as client:
        assert ctx["banner"] in html.unescape(client.get("/").text)
        data = {"flight": task.target, "cabin": task.cabin, "adults": str(task.adults)}
        client.post("/book", data=data)
        people = {"email": task.email}
        for k, (first, last, dob) in enumerate(task.passengers, start=1):
            people.update({f"first_{k}": first, f"last_{k}": last, f"dob_{k}": dob})
        client.post("/book/passengers", data=people)
        page = client.get("/book/seats").text
        kind = task.constraint("seat")
        for _ in range(task.adults if kind else 0):
            page = client.get("/book/seats").text
            seat = re.search(rf'value="(\w+)" aria-label="\w+ {kind}">', page).group(1)
            client.post("/book/seats", data={"seat": seat})
        if not kind:
            client.post("/book/seats", data={"skip": "1"})
        pay = {"card_name": task.card_name, "card_number": task.card_number}
        r = client.post("/book/payment", data=dict(pay, card_expiry=task.card_expiry))
        assert r.url.path.startswith("/confirmation/"), errors(r.text)
        n = len(re.findall(r"<li>met: ", r.text))
        assert f"Task score: {n} of {n}" in r.text and "not met" not in r.text
    with pytest.raises(ValueError, match="SPLIT:INDEX"):
        task_context("train:1")


@pytest.mark.parametrize(
    "path",
    [
        "/flight/DENBOS20270314-01?cabin=economy&adults=%C2%B2",
        "/flight/DENBOS2027031%C2%B2-01?cabin=economy&adults=1",
        "/results?origin=DEN&destination=BOS&date=2027-03-14&adults=%C2%B2&cabin=economy",
        "/results?origin=DEN&destination=BOS&date=2027-03-14&adults=1&cabin=economy&page=%C2%B2",
        "/confirmation/NOPE",
        "/book/payment",
    ],
)
def test_odd_urls_never_crash_the_site(site, path):
    client, _, _ = site
    assert client.get(path).status_code == 200
    assert (
        client.post("/book", data={"flight": "x", "cabin": "economy", "adults": "²"}).status_code
        == 200
    )


def test_return_date_links_to_the_way_back(site):
    client, _, _ = site
    page = client.get("/results", params=dict(SEARCH, **{"return": "2027-03-20"})).text
    link = html.unescape(re.search(r'href="([^"]+)">Return flights on 2027-03-20', page).group(1))
    back = client.get(link).text
    assert "Boston to Denver" in back and "2027-03-20" in back
    bad = client.get("/results", params=dict(SEARCH, **{"return": "2027-03-01"})).text
    assert any("Return date must not be before" in e for e in errors(bad))
