"""The flight-booking web site: a Starlette app with server-rendered Jinja2 pages.

Pages are a pure function of the URL and the visitor's session row (see
:mod:`earlyexp.envs.flights.store`): searches and result views are GET URLs, and every form
POST stores its values in the session and redirects (POST/redirect/GET), so reloading any
page shows the same thing. ``earlyexp serve flights`` runs :func:`main` for people.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any
from urllib.parse import urlencode

from earlyexp import assets
from earlyexp.envs.core.serving import serve_until_interrupted
from earlyexp.envs.flights import forms
from earlyexp.envs.flights.data import AIRLINES, AIRPORTS, CABINS, SITE_TODAY, find_airport
from earlyexp.envs.flights.schedule import (
    SORTS,
    STOP_FILTERS,
    TIME_FILTERS,
    ResultView,
    clock,
    find_flight,
    page_count,
    page_of,
    schedule,
    seat_map,
    span,
    stops_text,
    view_flights,
)
from earlyexp.envs.flights.store import Store
from earlyexp.envs.flights.tasks import seat_kind

COOKIE = "flights_sid"
SESSION_TTL = 24 * 3600.0
"""Seconds a visitor's session lives without use (then it and its bookings are deleted)."""
THEMES = ("classic", "compact")
BRANDS = {"classic": "SkyFind", "compact": "FlyNest"}


@dataclasses.dataclass
class SiteConfig:
    """Arguments of ``earlyexp serve flights``.

    Attributes:
        host: interface to bind (loopback by default).
        port: TCP port (0 picks a free one).
        theme: site layout for new visitors, ``classic`` or ``compact``.
        seed: schedule seed for new visitors.
        world: ``id`` or ``ood`` airlines and connections.
        db: SQLite file for bookings (default: in memory).
        task: ``SPLIT:INDEX`` (e.g. ``test:3``) to play a panel task: its instruction is shown
            on every page, its schedule and layout are used, and the confirmation page scores
            the booking with the env's rubric.
        session_ttl: seconds a visitor's session (cart and bookings) lives without use.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    theme: str = "classic"
    seed: int = 0
    world: str = "id"
    db: str = ":memory:"
    task: str = ""
    session_ttl: float = SESSION_TTL


def _jinja():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(assets.path("flights", "templates"))),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        clock=clock, span=span, stops_text=stops_text, airports=AIRPORTS, airlines=AIRLINES
    )
    env.globals.update(
        cabins=CABINS, sorts=SORTS, stop_filters=STOP_FILTERS, time_filters=TIME_FILTERS
    )
    env.globals.update(seat_kind=seat_kind)
    return env


def create_app(
    store: Store, default_ctx: dict[str, Any] | None = None, session_ttl: float = SESSION_TTL
):
    """Build the ASGI app over ``store``; visitors without a session get ``default_ctx``.

    A visitor's session expires ``session_ttl`` seconds after its last use.
    """
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    ctx = dict(default_ctx or {"seed": 0, "world": "id", "theme": "classic"})
    site = _Site(store, ctx, session_ttl)
    routes = [
        Route("/", site.home),
        Route("/results", site.results),
        Route("/flight/{fid}", site.details),
        Route("/book", site.book, methods=["POST"]),
        Route("/book/passengers", site.passengers, methods=["GET", "POST"]),
        Route("/book/seats", site.seats, methods=["GET", "POST"]),
        Route("/book/payment", site.payment, methods=["GET", "POST"]),
        Route("/confirmation/{ref}", site.confirmation),
        Route("/bookings", site.my_bookings),
        Mount(
            "/static", StaticFiles(directory=str(assets.path("flights", "static"))), name="static"
        ),
    ]
    return Starlette(routes=routes)


class _Site:
    """Request handlers; each reads the session, renders or redirects.

    A visitor without a session sees the default context and gets a session (a row and a
    cookie) only when it first changes state (``POST /book``). A POST reads its form first,
    then reads, checks and writes the session state in one atomic step
    (:meth:`Store.editing`), so requests sharing a session never see a half-made change.
    """

    def __init__(self, store: Store, default_ctx: dict[str, Any], ttl: float) -> None:
        self.store = store
        self.default_ctx = default_ctx
        self.ttl = ttl
        self.jinja = _jinja()

    # ------------------------------------------------------------------ plumbing
    def _session(self, request) -> tuple[str | None, dict[str, Any]]:
        """``(sid, ctx)`` of the visitor; ``sid`` is None (default context) without a session."""
        cached = getattr(request.state, "session", None)
        if cached is None:
            sid = request.cookies.get(COOKIE, "")
            ctx = self.store.context(sid) if sid else None
            cached = (sid, ctx) if ctx is not None else (None, dict(self.default_ctx))
            request.state.session = cached
        return cached

    def _new_session(self, request) -> str:
        """The visitor's session id, creating the session (and its cookie) when it has none."""
        sid, ctx = self._session(request)
        if sid is None:
            sid = self.store.create_session(ctx, ttl=self.ttl)
            request.state.session = (sid, ctx)
            request.state.new_sid = sid
        return sid

    def _finish(self, request, response):
        new = getattr(request.state, "new_sid", None)
        if new is not None:
            response.set_cookie(COOKIE, new, max_age=int(self.ttl), httponly=True, samesite="lax")
        return response

    def _page(self, request, name: str, **values: Any):
        from starlette.responses import HTMLResponse

        _, ctx = self._session(request)
        theme = ctx.get("theme", "classic")
        template = self.jinja.get_template(name.replace("@", theme))
        html = template.render(theme=theme, brand=BRANDS[theme], banner=ctx.get("banner"), **values)
        return self._finish(request, HTMLResponse(html))

    def _redirect(self, request, url: str):
        from starlette.responses import RedirectResponse

        return self._finish(request, RedirectResponse(url, status_code=303))

    # ------------------------------------------------------------------ search and results
    async def home(self, request):
        """The search form, prefilled from the query (``Modify search`` links)."""
        values = {k: request.query_params.get(k, "") for k in forms.SEARCH_FIELDS}
        values["adults"] = values["adults"] or "1"
        values["cabin"] = values["cabin"] or "economy"
        return self._page(
            request, "search_@.html", values=values, errors=[], title="Search flights"
        )

    async def results(self, request):
        """Result list of a search, or the search form with its errors."""
        q = dict(request.query_params)
        values = {k: q.get(k, "") for k in forms.SEARCH_FIELDS}
        errors = forms.check_search(values)
        if errors:
            return self._page(
                request, "search_@.html", values=values, errors=errors, title="Search flights"
            )
        _, ctx = self._session(request)
        o, d = find_airport(values["origin"]), find_airport(values["destination"])
        assert o is not None and d is not None  # check_search found both
        adults = forms.parse_travellers(values["adults"])
        base = {"origin": o.code, "destination": d.code, "date": values["date"].strip(),
                "adults": str(adults), "cabin": values["cabin"]}  # fmt: skip
        everything = schedule(ctx["seed"], ctx["world"], o.code, d.code, base["date"])
        return self._page(
            request, "results_@.html", title=f"Flights {o.code} to {d.code}",
            origin=o, destination=d, date=base["date"], cabin=base["cabin"],
            adults=adults, base=base, modify="/?" + urlencode(base),
            airline_codes=sorted({f.airline for f in everything}),
            **_result_page(everything, base, q),
        )  # fmt: skip

    async def details(self, request):
        """One flight: legs, layovers, fares; a button to book it."""
        _, ctx = self._session(request)
        flight = find_flight(ctx["seed"], ctx["world"], request.path_params["fid"])
        cabin = forms.parse_cabin(request.query_params.get("cabin", "economy"))
        adults = forms.parse_travellers(request.query_params.get("adults", "1"))
        if flight is None or cabin is None or adults is None:
            return self._page(
                request, "message.html", title="Not found", message="This flight does not exist."
            )
        back = "/results?" + urlencode(
            {"origin": flight.origin, "destination": flight.destination, "date": flight.date,
             "adults": adults, "cabin": cabin}
        )  # fmt: skip
        return self._page(
            request, "details.html", title=f"Flight {flight.code}", flight=flight,
            cabin=cabin, adults=adults, back=back,
        )  # fmt: skip

    # ------------------------------------------------------------------ booking flow
    async def book(self, request):
        """Start a booking (the cart) for a flight, cabin and number of travellers."""
        form = await request.form()
        _, ctx = self._session(request)
        flight = find_flight(ctx["seed"], ctx["world"], str(form.get("flight", "")))
        cabin = forms.parse_cabin(str(form.get("cabin", "")))
        adults = forms.parse_travellers(str(form.get("adults", "")))
        if flight is None or cabin is None or adults is None:
            return self._redirect(request, "/")
        with self.store.editing(self._new_session(request)) as state:
            state["cart"] = {"flight": flight.id, "cabin": cabin, "adults": adults,
                             "people": None, "email": None, "seats": [], "seats_done": False}  # fmt: skip
            state["forms"] = {}
        return self._redirect(request, "/book/passengers")

    def _cart(self, request, state: dict[str, Any]):
        """The session's cart and its flight when the cart is well formed, else (None, None)."""
        _, ctx = self._session(request)
        cart = state.get("cart")
        if not isinstance(cart, dict) or not isinstance(
            cart.get("people", None), (list, type(None))
        ):
            return None, None
        flight = find_flight(ctx["seed"], ctx["world"], str(cart.get("flight", "")))
        return (cart, flight) if flight is not None else (None, None)

    async def passengers(self, request):
        """Traveller names, birth dates and the contact email."""
        form = await request.form() if request.method == "POST" else None
        sid, ctx = self._session(request)
        theme = ctx.get("theme", "classic")
        with self.store.editing(sid or "") as state:
            cart, flight = self._cart(request, state)
            if cart is None:
                return self._redirect(request, "/")
            if form is not None:
                names = [f for k in range(1, cart["adults"] + 1)
                         for f in forms.passenger_fields(theme, k)]  # fmt: skip
                values = {k: str(form.get(k, "")) for k in (*names, "email")}
                errors, people = forms.check_passengers(theme, values, cart["adults"], flight.date)
                state.setdefault("forms", {})["passengers"] = values
                cart["people"] = None if errors else people
                cart["email"] = None if errors else values["email"].strip()
                cart["seats"], cart["seats_done"] = [], False
                return self._redirect(
                    request, "/book/passengers?check=1" if errors else "/book/seats"
                )
        values = state.get("forms", {}).get("passengers", {})
        errors = []
        if request.query_params.get("check"):
            errors, _ = forms.check_passengers(theme, values, cart["adults"], flight.date)
        return self._page(
            request, "passengers_@.html", title="Passenger details", flight=flight, cart=cart,
            values=values, errors=errors,
        )  # fmt: skip

    async def seats(self, request):
        """The seat map: one seat per traveller, or skip."""
        form = await request.form() if request.method == "POST" else None
        sid, _ = self._session(request)
        with self.store.editing(sid or "") as state:
            cart, flight = self._cart(request, state)
            if cart is None or not cart["people"]:
                return self._redirect(request, "/book/passengers" if cart else "/")
            seatmap = seat_map(flight.id, cart["cabin"])
            if form is not None:
                _choose_seat(cart, form, seatmap)
                return self._redirect(
                    request, "/book/payment" if cart["seats_done"] else "/book/seats"
                )
        people = cart["people"]
        current = people[len(cart["seats"])]["name"] if len(cart["seats"]) < len(people) else None
        return self._page(
            request, "seats.html", title="Choose seats", flight=flight, cart=cart,
            seatmap=seatmap, people=people, current=current,
        )  # fmt: skip

    async def payment(self, request):
        """Card details; a valid payment creates the booking row."""
        form = await request.form() if request.method == "POST" else None
        sid, ctx = self._session(request)
        theme = ctx.get("theme", "classic")
        with self.store.editing(sid or "") as state:
            cart, flight = self._cart(request, state)
            if cart is None or not cart["people"] or not cart["seats_done"]:
                return self._redirect(request, "/book/seats" if cart else "/")
            total = flight.prices[cart["cabin"]] * cart["adults"]
            if form is not None:
                values = {k: str(form.get(k, "")) for k in forms.payment_fields(theme)}
                state.setdefault("forms", {})["payment"] = values
                if forms.check_payment(theme, values):
                    return self._redirect(request, "/book/payment?check=1")
                ref = self._create_booking(str(sid), state, cart, flight, values, total)
                return self._redirect(request, f"/confirmation/{ref}")
        values = state.get("forms", {}).get("payment", {})
        errors = forms.check_payment(theme, values) if request.query_params.get("check") else []
        return self._page(
            request, "payment_@.html", title="Payment", flight=flight, cart=cart,
            values=values, errors=errors, total=total, people=cart["people"],
        )  # fmt: skip

    def _create_booking(self, sid, state, cart, flight, values, total) -> str:
        """Insert the booking row of the cart; empty the cart (in the caller's edit)."""
        people = [
            dict(p, seat=cart["seats"][i] if i < len(cart["seats"]) else None)
            for i, p in enumerate(cart["people"])
        ]
        digits = values["card_number"].replace(" ", "").replace("-", "")
        row = {
            "flight_id": flight.id, "cabin": cart["cabin"], "adults": cart["adults"],
            "passengers": people, "email": cart["email"], "card_name": values["card_name"].strip(),
            "card_last4": digits[-4:], "total": total,
        }  # fmt: skip
        ref = self.store.add_booking(sid, row)
        state["cart"], state["forms"] = None, {}
        return ref

    async def confirmation(self, request):
        """The booking's confirmation page with its reference."""
        sid, ctx = self._session(request)
        mine = self.store.bookings(sid) if sid else []
        booking = next((b for b in mine if b["ref"] == request.path_params["ref"]), None)
        if booking is None:
            return self._page(
                request, "message.html", title="Not found", message="No such booking."
            )
        flight = find_flight(ctx["seed"], ctx["world"], booking["flight_id"])
        score = None
        if ctx.get("task"):
            from earlyexp.envs.flights.tasks import FlightTask, rubric

            score = rubric(FlightTask.from_json(ctx["task"]), booking)
        return self._page(
            request,
            "confirmation.html",
            title="Booking confirmed",
            booking=booking,
            flight=flight,
            score=score,
        )

    async def my_bookings(self, request):
        """The visitor's bookings."""
        sid, ctx = self._session(request)
        rows = [
            (b, find_flight(ctx["seed"], ctx["world"], b["flight_id"]))
            for b in (self.store.bookings(sid) if sid else [])
        ]
        return self._page(request, "bookings.html", title="My bookings", rows=rows)


def _choose_seat(cart: dict[str, Any], form: Any, seatmap) -> None:
    """Apply the seat form to the cart: skip, clear, or take a free seat for the next traveller."""
    free = {s for _, row in seatmap for s, taken in row if not taken} - set(cart["seats"])
    seat = str(form.get("seat", ""))
    if form.get("skip") is not None:
        cart["seats"], cart["seats_done"] = [], True
    elif form.get("clear") is not None:
        cart["seats"], cart["seats_done"] = [], False
    elif seat in free and len(cart["seats"]) < cart["adults"]:
        cart["seats"].append(seat)
        cart["seats_done"] = len(cart["seats"]) == cart["adults"]


def _result_page(flights, base: dict[str, str], q: dict[str, str]) -> dict[str, Any]:
    """The template values of one result page: flights, paging, sort/filter links."""
    cabin = base["cabin"]
    shown = view_flights(flights, ResultView.from_query(q), cabin)
    pages = page_count(len(shown))
    view = ResultView.from_query(q)
    view = dataclasses.replace(view, page=min(view.page, pages))
    state = dict(base, **{f.name: str(getattr(view, f.name)) for f in dataclasses.fields(view)})

    def link(**changes: Any) -> str:
        query = dict(state, **{k: str(v) for k, v in changes.items()})
        if "page" not in changes:
            query["page"] = "1"
        return "/results?" + urlencode(query)

    details = urlencode({"cabin": cabin, "adults": base["adults"]})
    return {
        "view": view, "flights": page_of(shown, view.page), "total": len(shown), "pages": pages,
        "link": link, "flight_link": {f.id: f"/flight/{f.id}?{details}" for f in shown},
    }  # fmt: skip


def task_context(spec: str) -> dict[str, Any]:
    """Session context of panel task ``SPLIT:INDEX`` for people (instruction and scoring)."""
    from earlyexp.envs.core.panels import check_index, check_split, task_rng
    from earlyexp.envs.flights.env import FlightBookingEnv
    from earlyexp.envs.flights.tasks import generate_task, instruction

    split, _, index = spec.partition(":")
    if split not in ("test", "ood") or not (index.isdigit() and index.isascii()):
        raise ValueError(f"Expect --task SPLIT:INDEX with SPLIT test or ood, actually: {spec!r}")
    size = FlightBookingEnv.panel_sizes[check_split(split)]
    task = generate_task(
        task_rng("FlightBooking-v0", split, check_index(split, int(index), size)), split
    )
    return {
        "seed": task.seed,
        "world": task.world,
        "theme": task.theme,
        "banner": instruction(task),
        "task": task.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    """``earlyexp serve flights``: run the site for people on 127.0.0.1 and print its URL."""
    parser = argparse.ArgumentParser(
        prog="earlyexp serve flights", description=__doc__.splitlines()[0]
    )
    defaults = SiteConfig()
    parser.add_argument(
        "--host", default=defaults.host, help="interface to bind (default: loopback)"
    )
    parser.add_argument(
        "--port", type=int, default=defaults.port, help="TCP port (0: any free port)"
    )
    parser.add_argument("--theme", choices=THEMES, default=defaults.theme, help="site layout")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="schedule seed")
    parser.add_argument(
        "--world", choices=("id", "ood"), default=defaults.world, help="airlines and hubs"
    )
    parser.add_argument(
        "--db", default=defaults.db, help="SQLite file for bookings (default: memory)"
    )
    parser.add_argument("--task", default="", help="play a panel task, e.g. test:3 or ood:0")
    parser.add_argument(
        "--session-ttl", type=float, default=defaults.session_ttl,
        help="seconds a visitor's session (cart, bookings) lives without use (default: 1 day)",
    )  # fmt: skip
    cfg = SiteConfig(**vars(parser.parse_args(argv)))
    from earlyexp.envs.flights.server import SiteServer

    ctx = task_context(cfg.task) if cfg.task else {}
    default = {"seed": cfg.seed, "world": cfg.world, "theme": cfg.theme}
    server = SiteServer(
        Store(cfg.db), dict(default, **ctx), host=cfg.host, port=cfg.port,
        session_ttl=cfg.session_ttl,
    )  # fmt: skip
    banner = (
        f"Flight booking site on {server.url}/ (flights in 2027; 'today' is {SITE_TODAY}). "
        "Ctrl-C stops it."
    )
    if ctx:
        banner = f"Task {cfg.task}: {ctx['banner']}\n{banner}"
    serve_until_interrupted(server.wait, server.stop, banner)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
