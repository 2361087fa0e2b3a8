"""The site's database: sessions and bookings in SQLite (standard library).

One :class:`Store` per server. Each episode (or human visitor) is a session: a row holding
its context (schedule seed, world, theme) and its mutable state (the cart, the forms
submitted so far), plus its booking rows. Every query is parameterized; text is stored as
given. :meth:`export` / :meth:`load` copy a session's whole state, which is how the env
snapshots and restores episodes.

Visitor sessions (the site's, created on a visitor's first change of state) expire after
``ttl`` seconds without use and are then deleted with their bookings; env sessions do not
expire. Booking references are unique (a ``UNIQUE`` index): derived from the booking, the
next candidate is taken while one is in use, so an env's references stay deterministic.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, ctx TEXT NOT NULL, state TEXT NOT NULL, ttl REAL, expires REAL
);
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL, ref TEXT NOT NULL,
    flight_id TEXT NOT NULL, cabin TEXT NOT NULL, adults INTEGER NOT NULL,
    passengers TEXT NOT NULL, email TEXT NOT NULL, card_name TEXT NOT NULL,
    card_last4 TEXT NOT NULL, total INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_sid ON bookings (sid);
"""
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS bookings_ref ON bookings (ref);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
"""
BOOKING_FIELDS = (
    "ref",
    "flight_id",
    "cabin",
    "adults",
    "passengers",
    "email",
    "card_name",
    "card_last4",
    "total",
)
EMPTY_STATE: dict[str, Any] = {"cart": None, "forms": {}}


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class Store:
    """Sessions and bookings of one site (thread-safe: the server and the envs share it).

    Args:
        path: the SQLite file (``:memory:``: in memory).
        clock: the time in seconds (``time.time``; tests pass a fake one for expiry).
    """

    def __init__(self, path: str = ":memory:", clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._db.executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring a database file written by an earlier version up to this schema."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(sessions)")}
        for name in ("ttl", "expires"):
            if name not in columns:
                self._db.execute(f"ALTER TABLE sessions ADD COLUMN {name} REAL")
        try:
            self._db.executescript(INDEXES)
        except sqlite3.IntegrityError:
            raise ValueError(
                f"Expect unique booking references in {self.path}, actually: some repeat "
                "(written by an earlier version); use another --db file"
            ) from None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def create_session(self, ctx: dict[str, Any], ttl: float | None = None) -> str:
        """Start a session with context ``ctx``; return its id.

        ``ttl``: seconds without use after which the session expires (None: never, as env
        sessions). Creating one also deletes the sessions that have expired.
        """
        sid = secrets.token_hex(12)
        now = self.clock()
        with self._lock:
            self.purge_expired()
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (sid, _dump(ctx), _dump(EMPTY_STATE), ttl, None if ttl is None else now + ttl),
            )
        return sid

    def purge_expired(self) -> int:
        """Delete the expired sessions and their bookings; return how many sessions."""
        now = self.clock()
        with self._lock:
            gone = [r[0] for r in self._db.execute(
                "SELECT sid FROM sessions WHERE expires IS NOT NULL AND expires < ?", (now,)
            )]  # fmt: skip
            for sid in gone:
                self.drop_session(sid)
        return len(gone)

    def _live(self, sid: str) -> bool:
        """True for a session that exists and has not expired (its expiry is then renewed)."""
        row = self._db.execute("SELECT ttl, expires FROM sessions WHERE sid = ?", (sid,)).fetchone()
        if row is None:
            return False
        ttl, expires = row
        if expires is None:
            return True
        now = self.clock()
        if expires < now:
            self.drop_session(sid)
            return False
        self._db.execute("UPDATE sessions SET expires = ? WHERE sid = ?", (now + ttl, sid))
        return True

    def session_count(self) -> int:
        """Number of session rows (tests check anonymous traffic adds none)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def reset_session(self, sid: str, ctx: dict[str, Any]) -> None:
        """Start session ``sid`` afresh: context ``ctx``, empty state, no bookings."""
        self.load(sid, (_dump(ctx), _dump(EMPTY_STATE), "[]"))

    def drop_session(self, sid: str) -> None:
        """Delete a session and its bookings."""
        with self._lock:
            self._db.execute("DELETE FROM bookings WHERE sid = ?", (sid,))
            self._db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))

    def context(self, sid: str) -> dict[str, Any] | None:
        """The session's context, or None for an unknown or expired session (use renews it)."""
        with self._lock:
            if not self._live(sid):
                return None
            row = self._db.execute("SELECT ctx FROM sessions WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else json.loads(row[0])

    def state(self, sid: str) -> dict[str, Any]:
        """The session's mutable state (a fresh copy)."""
        with self._lock:
            row = self._db.execute("SELECT state FROM sessions WHERE sid = ?", (sid,)).fetchone()
        return json.loads(row[0]) if row else json.loads(_dump(EMPTY_STATE))

    def set_state(self, sid: str, state: dict[str, Any]) -> None:
        """Replace the session's mutable state."""
        with self._lock:
            self._db.execute("UPDATE sessions SET state = ? WHERE sid = ?", (_dump(state), sid))

    @contextmanager
    def editing(self, sid: str) -> Iterator[dict[str, Any]]:
        """Read the session's state, let the block change it, write it back: all atomically.

        Concurrent requests of one session (a shared cookie, two tabs) then never act on a
        state another one is changing. Nothing is written if the block raises.
        """
        with self._lock:
            state = self.state(sid)
            yield state
            self.set_state(sid, state)

    def add_booking(self, sid: str, row: dict[str, Any]) -> str:
        """Insert a booking for the session; return its reference (unique in the database).

        The reference is derived from the session's seed, its booking count and the booking;
        while that one is taken (another session made the same booking) the next candidate
        is tried, so it is deterministic given the database.
        """
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM bookings WHERE sid = ?", (sid,)
            ).fetchone()
            ctx = self.context(sid) or {}
            key = _dump([ctx.get("seed"), n, row["flight_id"], row["passengers"]])
            values = dict(row, passengers=_dump(row["passengers"]))
            return self._insert_booking(sid, values, key)

    def _insert_booking(
        self, sid: str, values: dict[str, Any], key: str, first: str | None = None
    ) -> str:
        """Insert with ``first``, else the first free reference derived from ``key``."""
        for attempt in range(1000):
            ref = _reference(key if attempt == 0 else f"{key}#{attempt}")
            ref = first if first is not None and attempt == 0 else ref
            try:
                self._db.execute(
                    f"INSERT INTO bookings (sid, {', '.join(BOOKING_FIELDS)}) "
                    f"VALUES (?, {', '.join('?' * len(BOOKING_FIELDS))})",
                    (sid, *[dict(values, ref=ref)[f] for f in BOOKING_FIELDS]),
                )
            except sqlite3.IntegrityError as err:
                if "bookings.ref" not in str(err):
                    raise
                continue  # the reference is in use
            return ref
        raise RuntimeError("Expect a free booking reference, actually: 1000 candidates taken")

    def bookings(self, sid: str) -> list[dict[str, Any]]:
        """The session's bookings, oldest first, passengers decoded."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(BOOKING_FIELDS)} FROM bookings WHERE sid = ? ORDER BY id",
                (sid,),
            ).fetchall()
        out = []
        for r in rows:
            b = dict(zip(BOOKING_FIELDS, r, strict=True))
            b["passengers"] = json.loads(b["passengers"])
            out.append(b)
        return out

    def count_bookings(self, sid: str) -> int:
        """Number of bookings of the session."""
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM bookings WHERE sid = ?", (sid,)).fetchone()[
                    0
                ]
            )

    def export(self, sid: str) -> tuple[str, str, str]:
        """The session's whole state as JSON strings ``(ctx, state, bookings)``."""
        with self._lock:
            row = self._db.execute(
                "SELECT ctx, state FROM sessions WHERE sid = ?", (sid,)
            ).fetchone()
            books = self.bookings(sid)
        ctx, state = row if row else ("null", _dump(EMPTY_STATE))
        return ctx, state, _dump(books)

    def load(self, sid: str, saved: tuple[str, str, str]) -> None:
        """Make session ``sid`` hold exactly the state ``saved`` by :meth:`export`."""
        ctx, state, books = saved
        with self._lock:
            self._db.execute("DELETE FROM bookings WHERE sid = ?", (sid,))
            self._db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, NULL, NULL)", (sid, ctx, state)
            )
            for b in json.loads(books):
                values = dict(b, passengers=_dump(b["passengers"]))
                self._insert_booking(sid, values, b["ref"], first=b["ref"])  # unless in use

    def table_names(self) -> list[str]:
        """Names of the database's tables (tests check injections dropped none)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).fetchall()
        return sorted(r[0] for r in rows)


def _reference(key: str) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    n = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    out = []
    for _ in range(6):
        n, r = divmod(n, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)
