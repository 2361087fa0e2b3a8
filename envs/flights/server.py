"""Run the site with uvicorn in a daemon thread on 127.0.0.1, shared by the envs of a process.

:func:`acquire` returns the process's server (starting it on first use) and counts users;
:func:`release` stops it (thread joined, socket closed) when the last user is gone.
"""

from __future__ import annotations

import atexit
import socket
import threading
import time
from typing import Any

from earlyexp.envs.flights.store import Store


class SiteServer:
    """The site served by uvicorn from a daemon thread.

    Args:
        store: the database the site reads and writes.
        default_ctx: session context of visitors without a session (people).
        host: interface (loopback by default).
        port: TCP port; 0 picks a free one.
        session_ttl: seconds a visitor's session lives without use.
    """

    def __init__(
        self,
        store: Store,
        default_ctx: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        session_ttl: float | None = None,
    ) -> None:
        import uvicorn

        from earlyexp.envs.flights.site import SESSION_TTL, create_app

        self.store = store
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(
            create_app(store, default_ctx, session_ttl or SESSION_TTL),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="flights-site",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "Expect the flight site to start within 20 s, actually: it did not"
                )
            time.sleep(0.005)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    def wait(self) -> None:
        """Block until the server thread ends (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Stop serving, join the thread, close the socket and the database."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self._sock.close()
        self.store.close()


_lock = threading.Lock()
_shared: SiteServer | None = None
_users = 0


def acquire() -> SiteServer:
    """Return the process's shared server, starting it on first use."""
    global _shared, _users
    with _lock:
        if _shared is None:
            _shared = SiteServer(Store())
        _users += 1
        return _shared


def release() -> None:
    """Drop one user; stop the server when none is left."""
    global _shared, _users
    with _lock:
        _users = max(0, _users - 1)
        if _users == 0 and _shared is not None:
            _shared.stop()
            _shared = None


@atexit.register
def _stop_at_exit() -> None:
    global _shared, _users
    with _lock:
        if _shared is not None:
            _shared.stop()
            _shared, _users = None, 0
