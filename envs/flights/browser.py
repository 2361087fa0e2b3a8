"""Headless Chromium through Playwright: one browser per process, one context per episode.

:data:`BROWSERS` launches the browser lazily (Playwright's own Chromium when installed,
else the system one) and relaunches it when it died; :class:`Tab` is one env's browser
context and page, with a spare context made in the background for the next episode. The page is read with ONE ``page.evaluate`` of :data:`READ_PAGE`,
which walks the DOM, gives every interactive element a short id (``e1``, ``e2``, ... in
document order, stored as ``data-eid``) and returns the accessibility-style text lines plus
a table of the elements. Pages are deterministic, so the ids are stable across runs.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from earlyexp.envs.flights import server as site_server
from earlyexp.envs.flights.site import COOKIE

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T = TypeVar("T")
SPARE_CTX = {"seed": 0, "world": "id", "theme": "classic"}
"""Session context of a spare context's home page, until :meth:`Tab.open` gives the real one."""
SYSTEM_CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

READ_PAGE = r"""
() => {
  const lines = [], elements = [];
  let buf = [], n = 0;
  const BLOCK = new Set(['ADDRESS','ARTICLE','ASIDE','BLOCKQUOTE','DD','DIV','DL','DT','FIELDSET',
    'FIGURE','FOOTER','FORM','HEADER','HR','LI','MAIN','NAV','OL','P','SECTION','TABLE','TR','UL',
    'BR','LEGEND','CAPTION','TBODY','THEAD']);
  const SKIP = new Set(['SCRIPT','STYLE','TEMPLATE','DATALIST','NOSCRIPT','OPTION']);
  const clean = s => (s || '').replace(/\s+/g, ' ').trim();
  const q = s => JSON.stringify(s);
  const flush = () => { const t = clean(buf.join(' ')); if (t) lines.push(t); buf = []; };
  const labelOf = el => {
    const aria = el.getAttribute('aria-label');
    if (aria) return clean(aria);
    if (el.labels && el.labels.length) return clean(el.labels[0].textContent);
    if (el.tagName === 'A' || el.tagName === 'BUTTON') return clean(el.textContent);
    return clean(el.getAttribute('placeholder') || el.getAttribute('name') || '');
  };
  const kindOf = el => {
    const tag = el.tagName;
    if (tag === 'A') return el.hasAttribute('href') ? 'link' : null;
    if (tag === 'BUTTON') return 'button';
    if (tag === 'SELECT') return 'select';
    if (tag === 'TEXTAREA') return 'textbox';
    if (tag !== 'INPUT') return null;
    const t = (el.getAttribute('type') || 'text').toLowerCase();
    if (t === 'hidden') return null;
    if (['submit', 'button', 'reset', 'image'].includes(t)) return 'button';
    if (t === 'checkbox' || t === 'radio') return t;
    return 'textbox';
  };
  const describe = (el, kind) => {
    const id = 'e' + (++n);
    el.setAttribute('data-eid', id);
    const info = {id, kind, label: labelOf(el), name: el.getAttribute('name') || '',
      disabled: !!el.disabled, value: '', options: [], values: [],
      href: el.getAttribute('href') || '', flight: el.getAttribute('data-flight') || '',
      nav: kind === 'link' ||
        (kind === 'button' && !!el.form && (el.type || 'submit') === 'submit')};
    let text = `[${id}] ${kind} ${q(info.label)}`;
    if (kind === 'textbox') {
      info.value = el.value;
      text += ` value=${q(el.value)}`;
      if (el.placeholder) text += ` placeholder=${q(el.placeholder)}`;
    } else if (kind === 'select') {
      info.options = [...el.options].map(o => clean(o.textContent));
      info.values = [...el.options].map(o => o.value);
      const s = el.selectedOptions[0];
      info.value = s ? clean(s.textContent) : '';
      text += ` selected=${q(info.value)} options=${q(info.options.join(' | '))}`;
    } else if (kind === 'checkbox' || kind === 'radio') {
      info.value = el.checked ? 'checked' : '';
      text += el.checked ? ' checked' : ' unchecked';
    }
    if (info.disabled) text += ' disabled';
    elements.push(info);
    return text;
  };
  const walk = node => {
    for (const c of node.childNodes) {
      if (c.nodeType === 3) { buf.push(c.nodeValue); continue; }
      if (c.nodeType !== 1) continue;
      const tag = c.tagName;
      if (SKIP.has(tag) || c.hidden || c.getAttribute('aria-hidden') === 'true') continue;
      if (tag === 'LABEL' && c.control) continue;
      const kind = kindOf(c);
      if (kind) { buf.push(describe(c, kind)); continue; }
      if (/^H[1-6]$/.test(tag)) {
        flush(); lines.push('heading ' + q(clean(c.textContent))); continue;
      }
      if (c.getAttribute('role') === 'alert') {
        flush(); const start = lines.length; walk(c); flush();
        for (let i = start; i < lines.length; i++) lines[i] = 'alert: ' + lines[i];
        continue;
      }
      const block = BLOCK.has(tag);
      if (block) flush();
      if (tag === 'TD' || tag === 'TH') buf.push('|');
      walk(c);
      if (block) flush();
    }
  };
  walk(document.body);
  flush();
  const errors = [...document.querySelectorAll('[role=alert] li')].map(e => clean(e.textContent));
  return {url: location.pathname + location.search, title: document.title, lines, elements, errors};
}
"""


ACT = (
    r"""
([eid, op, value, read]) => {
  const el = document.querySelector(`[data-eid="${eid}"]`);
  if (!el) throw new Error(`element ${eid} is gone`);
  if (op === 'click') {
    el.click();
  } else {
    el.focus();
    el.value = value;
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
  }
  if (!read) return null;
  return ("""
    + READ_PAGE.strip()
    + """)();
}
"""
)
"""One ``page.evaluate`` that performs an action on element ``eid`` and (except for clicks,
that navigate) returns the page read by :data:`READ_PAGE`. Clicks use the element's
activation behaviour (``el.click()``: follow the link, submit the form with its button)."""

DRIVE_CLICK = (
    r"""
async (eid) => {
  if (!window.drive) return null;
  const el = document.querySelector(`[data-eid="${eid}"]`);
  if (!el) throw new Error(`element ${eid} is gone`);
  window.drivePending = null;
  el.click();
  if (window.drivePending) await window.drivePending;
  return ("""
    + READ_PAGE.strip()
    + """)();
}
"""
)
"""Click a link or submit button on a page with the site's ``drive.js`` (which fetches the
next page and swaps the body in place, see ``assets/flights/static/drive.js``), wait for the
new page and read it, in one ``page.evaluate``; ``null`` when the page has no drive."""

DRIVE_VISIT = (
    r"""
async (url) => {
  if (!window.drive) return null;
  await window.drive.visit(url, {});
  return ("""
    + READ_PAGE.strip()
    + """)();
}
"""
)
"""Load ``url`` through the site's drive and read the new page (``null`` without a drive)."""


def _system_chromium() -> str | None:
    for exe in (
        *SYSTEM_CHROMIUMS,
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ):
        if exe and os.path.exists(exe):
            return exe
    return None


class _Worker:
    """A daemon thread running the asyncio loop that owns Playwright (its async API).

    Every browser call of the process runs on this loop: Playwright ties its objects to one
    loop, and its sync API refuses to run where an asyncio loop is running (a Jupyter cell).
    The loop keeps running between calls, so background work (the next episode's spare
    context, closing the last one) goes on while the caller thinks.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.launching = asyncio.Lock()
        self.thread = threading.Thread(target=self._main, name="flights-browser", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        left = asyncio.all_tasks(self.loop)
        for task in left:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self.loop.close()

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run coroutine ``fn()`` on the loop and return its result (or raise its error)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("Expect a call from outside the browser thread, actually: inside")
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result()

    def stop(self) -> None:
        """Stop the loop (cancelling what is left) and end the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(10)


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def _quietly(aw: Awaitable[Any], timeout_s: float = 10.0) -> None:
    """Await ``aw`` ignoring its failure (closing what the browser may already have lost)."""
    try:
        await asyncio.wait_for(aw, timeout_s)
    except Exception:  # noqa: BLE001 - the browser or driver may already be gone
        pass


class _Browsers:
    """The process's Playwright driver and browser, counted by users, in one worker thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.worker: _Worker | None = None
        self.pw: Any = None
        self.browser: Any = None
        self.users = 0

    def acquire(self) -> None:
        with self.lock:
            self.users += 1
            if self.worker is None:
                self.worker = _Worker()

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run coroutine ``fn()`` in the browser thread."""
        worker = self.worker
        if worker is None:
            raise RuntimeError("Expect an acquired browser, actually: every user released it")
        return worker.run(fn)

    async def get(self) -> Any:
        """The live browser, (re)launched when missing or dead (call in the browser thread)."""
        assert self.worker is not None
        async with self.worker.launching:
            if self.browser is None or not self.browser.is_connected():
                await self._shutdown()
                await self._launch()
        return self.browser

    async def _launch(self) -> None:
        try:
            from playwright.async_api import async_playwright
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("FlightBooking needs Playwright: pip install 'earlyexp[web]'") from e
        self.pw = await async_playwright().start()
        exe = os.environ.get("EARLYEXP_CHROMIUM") or None
        if exe is None and not os.path.exists(self.pw.chromium.executable_path):
            exe = _system_chromium()
            if exe is None:
                await self._shutdown()
                raise RuntimeError(
                    "Expect a Chromium (Playwright's or /usr/bin/chromium), actually: none found. "
                    "Run `make install`, `playwright install chromium` or "
                    "`apt-get install chromium`."
                )
        self.browser = await self.pw.chromium.launch(
            executable_path=exe, headless=True, args=CHROMIUM_ARGS
        )

    async def _shutdown(self) -> None:
        if self.browser is not None:
            await _quietly(self.browser.close())
        if self.pw is not None:
            await _quietly(self.pw.stop())
        self.browser, self.pw = None, None

    def release(self) -> None:
        """Drop one user; the last one closes the browser and ends the thread."""
        with self.lock:
            self.users = max(0, self.users - 1)
            if self.users == 0:
                self._stop()

    def shutdown_all(self) -> None:
        """Close everything (at exit)."""
        with self.lock:
            self.users = 0
            self._stop()

    def _stop(self) -> None:
        if self.worker is not None:
            self.worker.run(self._shutdown)
            self.worker.stop()
            self.worker = None


BROWSERS = _Browsers()
atexit.register(BROWSERS.shutdown_all)


class _Context(NamedTuple):
    """A browser context with one page on the site, and the site session of its cookie."""

    sid: str
    context: Any
    page: Any
    browser: Any


class Tab:
    """One env's browser context and page on the shared site and browser.

    Every method runs its Playwright calls in the browser thread (see :class:`_Worker`).
    With ``warm`` the tab keeps a spare context made in the background: a fresh context
    whose page already shows the site's home page under its own new session, so that
    :meth:`open` only hands the session the episode's context (the renderer process, the
    costly part of a new context, is already up).

    Args:
        timeout_ms: Playwright timeout for every browser call.
        warm: keep a spare context ready for the next :meth:`open`.
    """

    def __init__(self, timeout_ms: int = 10_000, warm: bool = True) -> None:
        self.timeout_ms = timeout_ms
        self.warm = warm
        self.server = site_server.acquire()
        BROWSERS.acquire()
        self.context: Any = None
        self.page: Any = None
        self.sid: str | None = None
        self.closed = False
        self._spare: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

    @property
    def store(self):
        """The site's database."""
        return self.server.store

    def open(self, ctx: dict[str, Any]) -> str:
        """Start a fresh session (and browser context, on the home page) with context ``ctx``."""
        return BROWSERS.run(lambda: self._open(ctx))

    async def _open(self, ctx: dict[str, Any]) -> str:
        self._drop_later()
        fresh = await self._take_spare()
        if fresh is None:
            fresh = await self._new_context()
        self.sid, self.context, self.page = fresh.sid, fresh.context, fresh.page
        self.store.reset_session(fresh.sid, ctx)
        if self.warm:
            self._spare = asyncio.create_task(self._make_spare())
        return fresh.sid

    async def _new_context(self) -> _Context:
        """A new context with a new session's cookie, its page on the home page."""
        sid = self.store.create_session(SPARE_CTX)
        cookie = {
            "name": COOKIE,
            "value": sid,
            "domain": self.server.host,
            "path": "/",
            "expires": -1,
            "httpOnly": True,
            "secure": False,
            "sameSite": "Lax",
        }
        made: list[Any] = []  # the context once created, for cleanup on failure

        async def build(browser: Any) -> tuple[Any, Any]:
            context = await browser.new_context(
                base_url=self.server.url, storage_state={"cookies": [cookie], "origins": []}
            )
            made.append(context)
            page = await context.new_page()
            page.set_default_timeout(self.timeout_ms)
            await page.goto("/", wait_until="domcontentloaded")
            await page.evaluate(READ_PAGE)  # Playwright's first evaluate sets the page up
            return context, page

        try:
            browser = await BROWSERS.get()
            # a call in flight when the browser dies may never be answered: bound them all
            # (asyncio.wait_for rather than asyncio.timeout, which needs Python 3.11)
            context, page = await asyncio.wait_for(build(browser), self.timeout_ms / 1000)
        except BaseException:
            self._discard_later(made[0] if made else None, sid)
            raise
        return _Context(sid, context, page, browser)

    async def _make_spare(self) -> _Context | None:
        try:
            return await self._new_context()
        except Exception:  # noqa: BLE001 - the next open() makes one in the foreground
            return None

    async def _take_spare(self) -> _Context | None:
        """The spare context (waiting for it if still in the making), None if none or dead."""
        task, self._spare = self._spare, None
        if task is None:
            return None
        browser = BROWSERS.browser
        if browser is None or not browser.is_connected():
            task.cancel()  # made on a browser that died: its calls may hang
        try:
            spare = await task
        except asyncio.CancelledError:
            return None
        if spare is None or (spare.browser is browser and browser.is_connected()):
            return spare
        self._discard_later(spare.context, spare.sid)
        return None

    def _discard_later(self, context: Any, sid: str | None) -> None:
        """Close ``context`` and drop session ``sid`` in the background."""
        if context is None and sid is None:
            return
        task = asyncio.create_task(self._discard(context, sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _discard(self, context: Any, sid: str | None) -> None:
        if context is not None:
            await _quietly(context.close())
        if sid is not None:
            self.store.drop_session(sid)

    def _drop_later(self) -> None:
        """Close the current context and drop its session in the background."""
        self._discard_later(self.context, self.sid)
        self.context = self.page = self.sid = None

    def evaluate(self, script: str, arg: Any = None) -> Any:
        """Run ``script`` in the page (tests use it to inspect the DOM)."""
        return BROWSERS.run(lambda: self.page.evaluate(script, arg))

    def goto(self, path: str, fresh: bool = False) -> dict[str, Any]:
        """Load ``path`` (e.g. ``/results?...``) and return the page.

        Through the site's drive when the current page has it, else (or when ``fresh``) by
        a plain navigation.
        """

        async def go() -> dict[str, Any]:
            page = None if fresh else await self.page.evaluate(DRIVE_VISIT, path)
            if page is None:
                await self.page.goto(path, wait_until="domcontentloaded")
                page = await self.page.evaluate(READ_PAGE)
            return page

        return BROWSERS.run(go)

    def read(self) -> dict[str, Any]:
        """The page as ``{url, title, lines, elements, errors}`` (one evaluate)."""
        return self.evaluate(READ_PAGE)

    def click(self, eid: str, nav: bool) -> dict[str, Any]:
        """Click element ``eid`` (waiting for the page it loads when ``nav``); return the page."""
        if not nav:
            return self.evaluate(ACT, [eid, "click", "", True])

        async def click_and_wait() -> dict[str, Any]:
            page = await self.page.evaluate(DRIVE_CLICK, eid)
            if page is None:  # no drive on this page: a plain navigation
                async with self.page.expect_navigation(wait_until="domcontentloaded"):
                    await self.page.evaluate(ACT, [eid, "click", "", False])
                page = await self.page.evaluate(READ_PAGE)
            return page

        return BROWSERS.run(click_and_wait)

    def fill(self, eid: str, text: str) -> dict[str, Any]:
        """Replace the text of text box ``eid``; return the page."""
        return self.evaluate(ACT, [eid, "fill", text, True])

    def select(self, eid: str, value: str) -> dict[str, Any]:
        """Choose the option with ``value`` in menu ``eid``; return the page."""
        return self.evaluate(ACT, [eid, "select", value, True])

    async def _close_all(self) -> None:
        self._drop_later()
        spare = await self._take_spare()
        if spare is not None:
            self._discard_later(spare.context, spare.sid)
        await asyncio.gather(*self._closing)

    def close(self) -> None:
        """Close the contexts, drop the sessions, release the shared browser and server."""
        if self.closed:
            return
        self.closed = True
        BROWSERS.run(self._close_all)
        BROWSERS.release()
        site_server.release()
