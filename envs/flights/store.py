"""The site's database: sessions and bookings in SQLite (standard library).

One :class:`Store` per server. Each episode (or human visitor) is a session: a row holding
its context (schedule seed, world, theme) and its mutable state (the cart, the forms
submitted so far), plus its booking rows. Every query is parameterized; text is stored as
given. :meth:`export` / :meth:`load` copy a session's whole state, which is how the env
snapshots and restores episodes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, ctx TEXT NOT NULL, state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL, ref TEXT NOT NULL,
    flight_id TEXT NOT NULL, cabin TEXT NOT NULL, adults INTEGER NOT NULL,
    passengers TEXT NOT NULL, email TEXT NOT NULL, card_name TEXT NOT NULL,
    card_last4 TEXT NOT NULL, total INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_sid ON bookings (sid);
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
    """Sessions and bookings of one site (thread-safe: the server and the envs share it)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def create_session(self, ctx: dict[str, Any]) -> str:
        """Start a session with context ``ctx``; return its id."""
        sid = secrets.token_hex(12)
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)", (sid, _dump(ctx), _dump(EMPTY_STATE))
            )
        return sid

    def reset_session(self, sid: str, ctx: dict[str, Any]) -> None:
        """Start session ``sid`` afresh: context ``ctx``, empty state, no bookings."""
        self.load(sid, (_dump(ctx), _dump(EMPTY_STATE), "[]"))

    def drop_session(self, sid: str) -> None:
        """Delete a session and its bookings."""
        with self._lock:
            self._db.execute("DELETE FROM bookings WHERE sid = ?", (sid,))
            self._db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))

    def context(self, sid: str) -> dict[str, Any] | None:
        """The session's context, or None for an unknown session."""
        with self._lock:
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

    def add_booking(self, sid: str, row: dict[str, Any]) -> str:
        """Insert a booking for the session; return its reference (deterministic per session)."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM bookings WHERE sid = ?", (sid,)
            ).fetchone()
            ctx = self.context(sid) or {}
            key = _dump([ctx.get("seed"), n, row["flight_id"], row["passengers"]])
            ref = _reference(key)
            values = dict(row, ref=ref, passengers=_dump(row["passengers"]))
            self._db.execute(
                f"INSERT INTO bookings (sid, {', '.join(BOOKING_FIELDS)}) "
                f"VALUES (?, {', '.join('?' * len(BOOKING_FIELDS))})",
                (sid, *[values[f] for f in BOOKING_FIELDS]),
            )
        return ref

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
            self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", (sid, ctx, state))
            for b in json.loads(books):
                values = dict(b, passengers=_dump(b["passengers"]))
                self._db.execute(
                    f"INSERT INTO bookings (sid, {', '.join(BOOKING_FIELDS)}) "
                    f"VALUES (?, {', '.join('?' * len(BOOKING_FIELDS))})",
                    (sid, *[values[f] for f in BOOKING_FIELDS]),
                )

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
