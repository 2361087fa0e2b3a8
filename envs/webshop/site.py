"""The WebShop web site: the env's engine served to people (``earlyexp serve webshop``).

An ASGI app (Starlette, run by uvicorn on 127.0.0.1, no CDN) that renders the same page
model as the env. A session id names a task: ``fixed_<i>`` pins goal ``i`` of the ``test``
panel (as the original's ``fixed_<i>``), ``ood_<i>`` goal ``i`` of the ``ood`` panel, and
any other id a ``train`` goal derived from the id. Each visitor (a cookie) has its own
episode per session id, so a class sharing one server does not collide. Every step of an
episode has its own URL, ``/<session>/<step>``: Back and Reload show that page again, and
acting from an earlier page continues the episode from there (the later steps are dropped,
as a browser's forward history). Buttons post ``action=click[label]`` to
``/<session>/<step>/act``; the search box posts ``action=search`` with ``query``. An unknown
or malformed id, a pinned task out of range or a step the visitor has not reached is a 404
page that says why.

Run: ``earlyexp serve webshop --port 3000`` or ``python -m earlyexp.envs.webshop.site``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from earlyexp import assets
from earlyexp.envs.core.base import Snapshot
from earlyexp.envs.webshop.catalog import load_catalog
from earlyexp.envs.webshop.env import WebShopEnv
from earlyexp.envs.webshop.pages import Node, Page, render_html

MAX_EPISODES = 4096
"""Episodes kept (least recently used dropped first): visitors x session ids."""
VISITOR_COOKIE = "webshop_visitor"
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_PINNED = re.compile(r"^(fixed|ood)_([0-9]+)$")


@dataclass
class SiteConfig:
    """Arguments of ``earlyexp serve webshop``."""

    host: str = "127.0.0.1"
    """Interface to bind (loopback by default; the site has no authentication)."""
    port: int = 3000
    """TCP port (0: any free port)."""
    num_products: int = 10_000
    """Catalog size (built and cached on first use)."""
    catalog_seed: int = 0
    """Catalog seed."""
    reward_mode: str = "webshop"
    """``webshop`` (the original's reward) or ``strict``."""


class NotFound(Exception):
    """A page that does not exist; the message says why (shown on the 404 page)."""


def session_task(session: str) -> tuple[str, int]:
    """Return the ``(split, index)`` a session id pins."""
    m = _PINNED.match(session)
    if m:
        return ("test" if m.group(1) == "fixed" else "ood"), int(m.group(2))
    digest = hashlib.sha256(session.encode()).digest()
    return "train", int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


Step = tuple[Snapshot, dict[str, Any]]
"""One page of an episode: the env's snapshot after the step and the step's info."""


class Sessions:
    """Episodes by (visitor, session id), each the list of its steps, on one shared env.

    The env (``html`` mode) is restored to a step's snapshot to render it or to act from it,
    under one lock; an episode costs a few small snapshots, not an env.
    """

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.env = WebShopEnv(config.num_products, config.catalog_seed, "html", config.reward_mode)
        self._episodes: OrderedDict[tuple[str, str], list[Step]] = OrderedDict()
        self._lock = threading.RLock()
        load_catalog(config.num_products, config.catalog_seed, progress=True)  # build it up front

    def _start(self, session: str) -> Step:
        """Reset the env to the task ``session`` names; NotFound for a bad id or index."""
        if not _SESSION.match(session):
            raise NotFound(f"Expect a session id of letters, digits, _ or -, actually: {session!r}")
        split, index = session_task(session)
        size = self.env.panel_sizes.get(split)
        if size is not None and index >= size:
            raise NotFound(f"Expect a {split} task index below {size}, actually: {index}")
        _, info = self.env.reset(options={"split": split, "task": index})
        return self.env.snapshot(), dict(info)

    def steps(self, visitor: str | None, session: str) -> list[Step]:
        """The visitor's episode of ``session``: its stored steps, else a fresh start (unstored)."""
        with self._lock:
            episode = self._episodes.get((visitor or "", session)) if visitor else None
            if episode is None:
                return [self._start(session)]
            self._episodes.move_to_end((visitor or "", session))
            return episode

    def restart(self, visitor: str, session: str) -> None:
        """Start the visitor's episode of ``session`` over."""
        with self._lock:
            self._store(visitor, session, [self._start(session)])

    def _store(self, visitor: str, session: str, episode: list[Step]) -> None:
        self._episodes[(visitor, session)] = episode
        self._episodes.move_to_end((visitor, session))
        while len(self._episodes) > MAX_EPISODES:
            self._episodes.popitem(last=False)

    def render(self, visitor: str | None, session: str, step: int) -> str:
        """The HTML of page ``step`` of the visitor's episode (NotFound past its last step)."""
        with self._lock:
            episode = self.steps(visitor, session)
            if not 0 <= step < len(episode):
                raise NotFound(
                    f"Step {step} of {session!r} is not a page of your episode (it has "
                    f"{len(episode)}; another visitor's link, or an episode that expired): "
                    f"start at /{session}/0"
                )
            snap, info = episode[step]
            self.env.restore(snap)
            return page_html(session, step, self.env, info)

    def act(self, visitor: str, session: str, step: int | None, action: str) -> int:
        """Act from page ``step`` (None: the last); return the step of the page it leads to."""
        with self._lock:
            episode = self.steps(visitor, session)
            step = len(episode) - 1 if step is None else step
            if not 0 <= step < len(episode):
                raise NotFound(f"Step {step} of {session!r} is not a page of your episode")
            snap, info = episode[step]
            if "score" in info:  # that page ended the episode
                return step
            self.env.restore(snap)
            *_, info = self.env.step(action)
            self._store(visitor, session, [*episode[: step + 1], (self.env.snapshot(), dict(info))])
            return step + 1


def _tail(session: str, env: WebShopEnv, info: dict[str, Any]) -> str:
    links = (
        f'<nav class="site">Session <code>{html.escape(session)}</code> · step {env.elapsed_steps}'
        f'/{env.max_steps} · <a href="/{session}/reset">start over</a> · <a href="/">home</a></nav>'
    )
    if "rubric" not in info:
        return links
    rows = "".join(
        f"<tr><td>{'✔' if r['met'] else '✘'}</td><td>{html.escape(r['criterion'])}</td></tr>"
        for r in info["rubric"]
    )
    return f'<h4 class="heading">Rubric</h4><table class="rubric">{rows}</table>{links}'


def page_html(session: str, step: int, env: WebShopEnv, info: dict[str, Any]) -> str:
    """The HTML of the page ``env`` shows at ``step`` (with the step's error, if any)."""
    page = env.page()
    if not info.get("action_valid", True):
        page = Page(
            (Node("error", f"Invalid action: {info['feedback']}"), *page.nodes), page.clicks
        )
    if "score" in info and env.state.page != "done":
        page = Page(
            (Node("header", "The episode has ended (step budget)."), *page.nodes), page.clicks
        )
    head = '<link rel="stylesheet" href="/static/site.css">'
    return render_html(page, f"/{session}/{step}/act", head, _tail(session, env, info))


INDEX = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>WebShop</title>
<link rel="stylesheet" href="/static/site.css"></head><body><h2 class="header">WebShop</h2>
<p>A catalog of {n} generated products. Each session is one shopping task (yours alone: the
site keeps one episode per visitor and session):</p><ul>
<li><a href="/fixed_0">/fixed_0</a> … <code>/fixed_499</code>: the test goals</li>
<li><a href="/ood_0">/ood_0</a> … <code>/ood_499</code>: the out-of-distribution goals</li>
<li><a href="/shopper">/any-other-name</a>: a training goal chosen by the name</li></ul>
</body></html>"""


def create_app(config: SiteConfig | None = None):
    """Build the Starlette app (imports the ``web`` extra lazily)."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, RedirectResponse, Response
        from starlette.routing import Route
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "The WebShop site needs the web extra: pip install 'earlyexp[web]'"
        ) from e
    config = config or SiteConfig()
    sessions = Sessions(config)
    css = assets.read_text("webshop", "site.css")

    def visitor_of(request: Request) -> str | None:
        v = request.cookies.get(VISITOR_COOKIE, "")
        return v if _VISITOR.match(v) else None

    def answer(request: Request, make) -> Response:
        """Run ``make(visitor)``; a 404 page for NotFound; the visitor cookie when new."""
        visitor = visitor_of(request)
        changes = request.method == "POST" or request.url.path.endswith("/reset")
        new = secrets.token_urlsafe(18) if visitor is None and changes else None
        visitor = visitor or new
        try:
            response = make(visitor)
        except NotFound as e:
            page = f"<!DOCTYPE html><title>Not found</title><p>{html.escape(str(e))}</p>"
            response = HTMLResponse(page, status_code=404)
        if new is not None:
            response.set_cookie(VISITOR_COOKIE, new, httponly=True, samesite="lax")
        return response

    def step_of(request: Request) -> int:
        raw = request.path_params["step"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
            raise NotFound(f"Expect a step number, actually: {raw[:20]!r}")
        return int(raw)

    async def index(request: Request) -> Response:
        return HTMLResponse(INDEX.format(n=f"{config.num_products:,}"))

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css")

    def latest(request: Request) -> Response:
        session = request.path_params["session"]
        return answer(request, lambda v: RedirectResponse(
            f"/{session}/{len(sessions.steps(v, session)) - 1}", status_code=303))  # fmt: skip

    def show(request: Request) -> Response:
        session = request.path_params["session"]
        return answer(request, lambda v: HTMLResponse(
            sessions.render(v, session, step_of(request)),
            headers={"Cache-Control": "no-store"}))  # fmt: skip

    def reset(request: Request) -> Response:
        session = request.path_params["session"]

        def go(visitor: str) -> Response:
            sessions.restart(visitor, session)
            return RedirectResponse(f"/{session}/0", status_code=303)

        return answer(request, go)

    async def act(request: Request) -> Response:
        session = request.path_params["session"]
        form = await request.form()
        action = str(form.get("action", ""))
        if action == "search":
            action = f"search[{form.get('query', '')}]"

        def go(visitor: str) -> Response:
            step = step_of(request) if "step" in request.path_params else None
            to = sessions.act(visitor, session, step, action)
            return RedirectResponse(f"/{session}/{to}", status_code=303)

        return answer(request, go)

    routes = [
        Route("/", index),
        Route("/static/site.css", stylesheet),
        Route("/{session}", latest),
        Route("/{session}/reset", reset, methods=["GET", "POST"]),
        Route("/{session}/act", act, methods=["POST"]),
        Route("/{session}/{step}", show),
        Route("/{session}/{step}/act", act, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sessions = sessions  # the episodes, for tests and tools
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earlyexp serve webshop", description=__doc__.split("\n")[0]
    )
    docs = _field_docs()
    for f in fields(SiteConfig):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag, type=type(f.default), default=f.default, help=docs.get(f.name, "")
        )
    return parser


def _field_docs() -> dict[str, str]:
    """The attribute docstrings of :class:`SiteConfig` (they are the ``--help``)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(SiteConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for a, b in zip(body, body[1:], strict=False):
        if (
            isinstance(a, ast.AnnAssign)
            and isinstance(b, ast.Expr)
            and isinstance(b.value, ast.Constant)
        ):
            docs[a.target.id] = str(b.value.value)  # type: ignore[union-attr]
    return docs


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` now."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running(config: SiteConfig) -> Iterator[str]:
    """Serve the site in a background thread; yield its base URL; stop it on exit."""
    import uvicorn

    if config.port == 0:
        config.port = free_port(config.host)
    uv = uvicorn.Config(create_app(config), host=config.host, port=config.port, log_level="warning")
    server = uvicorn.Server(uv)
    thread = threading.Thread(target=server.run, name="webshop-site", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Expect the site to start on port {config.port}, actually: it did not"
                )
            time.sleep(0.02)
        yield f"http://{config.host}:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Serve the site until interrupted; print its URL."""
    args = _parser().parse_args(argv)
    config = SiteConfig(**vars(args))
    if config.port == 0:
        config.port = free_port(config.host)
    try:
        import uvicorn
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "The WebShop site needs the web extra: pip install 'earlyexp[web]'"
        ) from e
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="warning")
    )
    print(
        f"WebShop ({config.num_products:,} products) at http://{config.host}:{config.port}/fixed_0",
        flush=True,
    )
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
