"""The flight site's server-side validation and escaping (Starlette test client, no browser)."""

from __future__ import annotations

import html
import re
import threading

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


class Site:
    """A test client on a fresh store; ``sid`` is the visitor's session once it has one."""

    def __init__(self, store, client):
        self.store, self.client = store, client

    @property
    def sid(self):
        return self.client.cookies.get(COOKIE)


@pytest.fixture()
def site():
    store = Store()
    client = TestClient(create_app(store, {"seed": 3, "world": "id", "theme": "classic"}))
    yield client, store, Site(store, client)
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
    assert store.count_bookings(sid.sid) == 0


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
    assert store.count_bookings(sid.sid) == 0
    r = client.post("/book/payment", data=PAYMENT)
    assert r.url.path.startswith("/confirmation/") and store.count_bookings(sid.sid) == 1


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
    (booking,) = store.bookings(sid.sid)
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
    assert store.bookings(sid.sid)[0]["passengers"][0]["seat"] == free


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


def test_there_is_no_return_field_as_no_return_leg_can_be_booked(site):
    client, _, _ = site
    for theme in ("classic", "compact"):
        with TestClient(create_app(Store(), {"seed": 3, "world": "id", "theme": theme})) as c:
            assert 'name="return"' not in c.get("/").text
    page = client.get("/results", params=dict(SEARCH, **{"return": "2027-03-20"})).text
    assert "Return flights" not in page and "2027-03-20" not in page


# ---------------------------------------------------------------------- hardening (issue 18)
def book_flow(client, adults="1", first="Ana", card=PAYMENT):
    """Search, book, fill passengers, skip seats, pay; return the last response."""
    start_booking(client, adults=adults)
    client.post("/book/passengers", data=passengers(first=first, k=int(adults)))
    client.post("/book/seats", data={"skip": "1"})
    return client.post("/book/payment", data=card)


def test_rebooking_after_the_passenger_form_never_answers_500(site):
    client, store, me = site
    start_booking(client)
    client.post("/book/passengers", data=passengers())
    page = client.get("/results", params=SEARCH).text
    flight = re.search(r'data-flight="([^"]+)"', page).group(1)
    client.post("/book", data={"flight": flight, "cabin": "economy", "adults": "2"})  # again
    assert client.post("/book/seats", data={"skip": "1"}).url.path == "/book/passengers"
    r = client.post("/book/payment", data=PAYMENT)
    assert r.status_code == 200 and r.url.path == "/book/passengers"
    assert store.count_bookings(me.sid) == 0


def random_request(client, rng, flight):
    """One request of a random kind, with good or bad form data."""
    kinds = [
        lambda: client.get("/"),
        lambda: client.get("/results", params=dict(SEARCH, adults=rng.choice(["1", "2", " 2 ", "٢", "9"]))),
        lambda: client.get(f"/flight/{flight}?cabin=economy&adults={rng.choice(['1', '2', 'x'])}"),
        lambda: client.post("/book", data={"flight": rng.choice([flight, "nope"]),
                                           "cabin": rng.choice(["economy", "first", "?"]),
                                           "adults": rng.choice(["1", "2", "7", ""])}),
        lambda: client.post("/book/passengers", data=passengers(k=rng.choice([1, 2, 3]),
                                                                 dob=rng.choice(["1990-04-02", "x"]))),
        lambda: client.post("/book/passengers", data={}),
        lambda: client.get("/book/passengers?check=1"),
        lambda: client.post("/book/seats", data=rng.choice([{"skip": "1"}, {"clear": "1"},
                                                            {"seat": "1A"}, {"seat": "99Z"}, {}])),
        lambda: client.get("/book/seats"),
        lambda: client.post("/book/payment", data=rng.choice([PAYMENT, {}, dict(PAYMENT, card_expiry="٠١/٢٩")])),
        lambda: client.get("/book/payment?check=1"),
        lambda: client.get("/bookings"),
        lambda: client.get("/confirmation/ABCDEF"),
    ]  # fmt: skip
    return kinds[int(rng.integers(len(kinds)))]()


def test_forms_replayed_in_random_orders_never_answer_500(site):
    import numpy as np

    client, store, me = site
    page = client.get("/results", params=SEARCH).text
    flight = re.search(r'data-flight="([^"]+)"', page).group(1)
    rng = np.random.default_rng(0)
    for _ in range(400):  # the test client raises on any server error
        assert random_request(client, rng, flight).status_code == 200
    for b in store.bookings(me.sid) if me.sid else []:
        assert len(b["passengers"]) == b["adults"] and b["email"]


def test_threads_sharing_one_session_never_get_500():
    httpx = pytest.importorskip("httpx")
    from concurrent.futures import ThreadPoolExecutor

    from earlyexp.envs.flights.server import SiteServer

    server = SiteServer(Store(), {"seed": 3, "world": "id", "theme": "classic"})
    try:
        with httpx.Client(base_url=server.url, follow_redirects=True, timeout=30) as first:
            start_booking(first)
            sid = first.cookies.get(COOKIE)
        statuses, lock = [], threading.Lock()

        def worker(i: int) -> None:
            with httpx.Client(base_url=server.url, cookies={COOKIE: sid},
                              follow_redirects=True, timeout=30) as c:  # fmt: skip
                adults = str(1 + i % 2)  # the carts of the threads overwrite each other:
                page = c.get("/results", params=dict(SEARCH, adults=adults)).text
                flight = re.search(r'data-flight="([^"]+)"', page).group(1)
                rs = [  # each step may land anywhere, but never on a server error
                    c.post("/book", data={"flight": flight, "cabin": "economy", "adults": adults}),
                    c.post("/book/passengers", data=passengers(first=f"Ana{i}", k=int(adults))),
                    c.post("/book/seats", data={"skip": "1"}),
                    c.post("/book/payment", data=PAYMENT),
                ]
                with lock:
                    statuses.extend(r.status_code for r in rs)

        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(worker, range(40)))  # 40 flows of 5 requests (plus redirects)
        assert len(statuses) == 160
        assert statuses and set(statuses) == {200}
        for b in server.store.bookings(sid):
            assert len(b["passengers"]) == b["adults"]  # every row is one coherent cart
            assert len({p["name"].split()[0] for p in b["passengers"]}) == 1
        refs = [b["ref"] for b in server.store.bookings(sid)]
        assert len(refs) == len(set(refs)) >= 1
    finally:
        server.stop()


def test_anonymous_visitors_create_no_session_until_they_change_state(site):
    client, store, me = site
    for _ in range(50):
        r = client.get("/")
        assert "set-cookie" not in r.headers
        client.get("/results", params=SEARCH)
        client.get("/bookings")
        client.post("/book/passengers", data=passengers())  # no cart: nothing to change
        client.cookies.clear()
    assert store.session_count() == 0
    start_booking(client)
    assert store.session_count() == 1 and me.sid
    book_flow(client)
    assert store.session_count() == 1


def test_visitor_sessions_expire_with_their_bookings_env_sessions_do_not():
    now = [1000.0]
    store = Store(clock=lambda: now[0])
    app = create_app(store, {"seed": 3, "world": "id", "theme": "classic"}, session_ttl=60)
    env_sid = store.create_session({"seed": 1, "world": "id", "theme": "classic"})
    with TestClient(app) as client:
        book_flow(client)
        sid = client.cookies.get(COOKIE)
        assert store.count_bookings(sid) == 1
        now[0] += 50
        assert "DEN → BOS" in client.get("/bookings").text  # use renews the session
        now[0] += 50
        assert store.context(sid) is not None
        now[0] += 61
        assert store.context(sid) is None and store.count_bookings(sid) == 0
        assert store.context(env_sid) is not None
        assert client.get("/book/payment").url.path == "/"  # an expired cookie: a new visitor
        start_booking(client)
        assert client.cookies.get(COOKIE) != sid and store.session_count() == 2


@pytest.mark.parametrize("adults, ok", [("2", True), (" 2 ", True), ("٢", False),
                                        ("²", False), ("2.0", False), ("+2", False)])  # fmt: skip
def test_every_route_validates_the_traveller_count_alike(site, adults, ok):
    client, _, _ = site
    page = client.get("/results", params=dict(SEARCH, adults=adults)).text
    assert ("data-flight" in page) == ok
    flight = re.search(r'data-flight="([^"]+)"', client.get("/results", params=SEARCH).text)
    detail = client.get(f"/flight/{flight.group(1)}", params={"cabin": "economy", "adults": adults})
    assert ("does not exist" not in detail.text) == ok
    r = client.post("/book", data={"flight": flight.group(1), "cabin": "economy", "adults": adults})
    assert (r.url.path == "/book/passengers") == ok


@pytest.mark.parametrize(
    "field, value",
    [
        ("card_expiry", "٠١/٢٩"),
        ("card_expiry", "０８/２９"),
        ("card_number", "４１１１ １１１１ １１１１ １１１１"),
    ],
)
def test_non_ascii_digits_are_refused_in_payment(site, field, value):
    client, store, me = site
    r = book_flow(client, card=dict(PAYMENT, **{field: value}))
    assert r.url.path == "/book/payment" and errors(r.text)
    assert store.count_bookings(me.sid) == 0


def test_non_ascii_digits_are_refused_in_dates(site):
    client, store, me = site
    page = client.get("/results", params=dict(SEARCH, date="٢٠٢٧-٠٣-١٤")).text
    assert any("Invalid date" in e for e in errors(page))
    start_booking(client, adults="1")
    r = client.post("/book/passengers", data=passengers(k=1, dob="١٩٩٠-٠٤-٠٢"))
    assert any("Invalid date of birth" in e for e in errors(r.text))
    with TestClient(create_app(Store(), {"seed": 3, "world": "id", "theme": "compact"})) as c:
        start_booking(c, adults="1")
        data = {"name_1": "Ana Ruiz", "dob_1": "٠٢/٠٤/١٩٩٠", "email": "ana@example.com"}
        assert any(
            "Invalid date of birth" in e for e in errors(c.post("/book/passengers", data=data).text)
        )
        c.post("/book/passengers", data=dict(data, dob_1="02/04/1990"))
        c.post("/book/seats", data={"skip": "1"})
        pay = {"card_number": PAYMENT["card_number"], "exp_month": "٠٨", "exp_year": "2029",
               "card_name": "Ana Ruiz"}  # fmt: skip
        assert any("Invalid expiry" in e for e in errors(c.post("/book/payment", data=pay).text))


def test_booking_references_are_unique_by_a_database_constraint():
    import sqlite3

    store = Store()
    app = create_app(store, {"seed": 3, "world": "id", "theme": "classic"})
    refs = []
    for _ in range(5):  # five visitors make the very same booking
        with TestClient(app) as client:
            r = book_flow(client)
            refs.append(r.url.path.rsplit("/", 1)[-1])
    assert len(set(refs)) == 5
    sid = store.create_session({"seed": 3, "world": "id", "theme": "classic"})
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute(
            "INSERT INTO bookings (sid, ref, flight_id, cabin, adults, passengers, email, "
            "card_name, card_last4, total) VALUES (?, ?, 'f', 'economy', 1, '[]', 'e', 'n', "
            "'1111', 1)", (sid, refs[0]),
        )  # fmt: skip
    # restoring a saved session whose reference another session holds gets a free one
    owner = next(
        s for (s,) in store._db.execute("SELECT sid FROM bookings WHERE ref = ?", (refs[0],))
    )
    saved = store.export(owner)
    store.load(sid, saved)
    (copy,) = store.bookings(sid)
    assert copy["ref"] != refs[0] and copy["flight_id"] == store.bookings(owner)[0]["flight_id"]


def test_a_database_file_of_the_earlier_schema_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE sessions (sid TEXT PRIMARY KEY, ctx TEXT NOT NULL, state TEXT NOT NULL);"
        "INSERT INTO sessions VALUES ('abc', '{\"seed\": 3}', '{\"cart\": null, \"forms\": {}}');"
    )
    db.close()
    store = Store(str(path))
    assert store.context("abc") == {"seed": 3}  # an old session: kept, never expires
    assert store.create_session({"seed": 1}, ttl=10)
    store.close()
