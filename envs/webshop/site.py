"""The WebShop web site: the env's engine served to people (``earlyexp serve webshop``).

An ASGI app (Starlette, run by uvicorn on 127.0.0.1, no CDN) that renders the same page
model as the env. Each session id holds one episode: ``fixed_<i>`` pins goal ``i`` of the
``test`` panel (as the original's ``fixed_<i>``), ``ood_<i>`` goal ``i`` of the ``ood``
panel, and any other id a ``train`` goal derived from the id. Buttons post
``action=click[label]``; the search box posts ``action=search`` with ``query``.

Run: ``earlyexp serve webshop --port 3000`` or ``python -m earlyexp.envs.webshop.site``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from earlyexp import assets
from earlyexp.envs.webshop.catalog import load_catalog
from earlyexp.envs.webshop.env import WebShopEnv
from earlyexp.envs.webshop.pages import Node, Page, render_html

MAX_SESSIONS = 512
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PINNED = re.compile(r"^(fixed|ood)_(\d+)$")


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


def session_task(session: str) -> tuple[str, int]:
    """Return the ``(split, index)`` a session id pins."""
    m = _PINNED.match(session)
    if m:
        return ("test" if m.group(1) == "fixed" else "ood"), int(m.group(2))
    digest = hashlib.sha256(session.encode()).digest()
    return "train", int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Sessions:
    """Episodes by session id (LRU-bounded), each a :class:`WebShopEnv` in ``html`` mode."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self._envs: OrderedDict[str, tuple[WebShopEnv, dict[str, Any]]] = OrderedDict()
        self._lock = threading.RLock()
        load_catalog(config.num_products, config.catalog_seed, progress=True)  # build it up front

    def _start(self, session: str) -> tuple[WebShopEnv, dict[str, Any]]:
        split, index = session_task(session)
        env = WebShopEnv(
            self.config.num_products, self.config.catalog_seed, "html", self.config.reward_mode
        )
        if split != "train" and index >= env.panel_sizes[split]:
            raise ValueError(
                f"Expect a task index below {env.panel_sizes[split]}, actually: {index}"
            )
        _, info = env.reset(options={"split": split, "task": index})
        return env, dict(info)

    def get(self, session: str, restart: bool = False) -> tuple[WebShopEnv, dict[str, Any]]:
        """The episode of ``session`` (started, or restarted, on demand)."""
        with self._lock:
            if restart or session not in self._envs:
                self._envs[session] = self._start(session)
            self._envs.move_to_end(session)
            while len(self._envs) > MAX_SESSIONS:
                self._envs.popitem(last=False)
            return self._envs[session]

    def render(self, session: str) -> str:
        """The HTML of the current page of ``session``."""
        with self._lock:
            env, info = self.get(session)
            return page_html(session, env, info)

    def act(self, session: str, action: str) -> None:
        """Step the episode of ``session`` with ``action``."""
        with self._lock:
            env, info = self.get(session)
            if "score" not in info:  # the episode is still running
                *_, info = env.step(action)
                self._envs[session] = (env, dict(info))


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


def page_html(session: str, env: WebShopEnv, info: dict[str, Any]) -> str:
    """The HTML of the session's current page (with the last error, if any)."""
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
    return render_html(page, f"/{session}/act", head, _tail(session, env, info))


INDEX = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>WebShop</title>
<link rel="stylesheet" href="/static/site.css"></head><body><h2 class="header">WebShop</h2>
<p>A catalog of {n} generated products. Each session is one shopping task:</p><ul>
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

    def checked(request: Request) -> str:
        session = request.path_params["session"]
        if not _SESSION.match(session):
            raise ValueError(
                f"Expect a session id of letters, digits, _ or -, actually: {session!r}"
            )
        return session

    async def index(request: Request) -> Response:
        return HTMLResponse(INDEX.format(n=f"{config.num_products:,}"))

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css")

    def show(request: Request) -> Response:
        try:
            session = checked(request)
            return HTMLResponse(sessions.render(session))
        except ValueError as e:
            return HTMLResponse(f"<p>{html.escape(str(e))}</p>", status_code=404)

    def reset(request: Request) -> Response:
        session = checked(request)
        sessions.get(session, restart=True)
        return RedirectResponse(f"/{session}", status_code=303)

    async def act(request: Request) -> Response:
        session = checked(request)
        form = await request.form()
        action = str(form.get("action", ""))
        if action == "search":
            action = f"search[{form.get('query', '')}]"
        sessions.act(session, action)
        return RedirectResponse(f"/{session}", status_code=303)

    routes = [
        Route("/", index),
        Route("/static/site.css", stylesheet),
        Route("/{session}", show),
        Route("/{session}/reset", reset),
        Route("/{session}/act", act, methods=["POST"]),
    ]
    return Starlette(routes=routes)


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
