"""Server-side validation of the site's forms (also used to make valid task data).

Every check returns an error message for the page, or None when the input is fine. Messages
quote the input; the templates escape it, so nothing a user types becomes markup. Numbers
are ASCII digits only (``٢`` and ``²`` are not digits here), with surrounding spaces allowed;
each field has one parser that every route uses.
"""

from __future__ import annotations

import datetime as dt
import re

from earlyexp.envs.flights.data import SALE_FIRST_DAY, SALE_LAST_DAY, SITE_TODAY

MAX_TEXT = 120
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def shown(text: str, limit: int = 40) -> str:
    """``text`` shortened for an error message."""
    return text if len(text) <= limit else text[:limit] + "..."


def parse_number(text: str, low: int, high: int) -> int | None:
    """Return the whole number ``text`` writes in ASCII digits when in [low, high], else None."""
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or len(t) > 9:
        return None
    n = int(t)
    return n if low <= n <= high else None


def parse_iso(text: str) -> dt.date | None:
    """Return the date written ``YYYY-MM-DD``, or None."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


def parse_dmy(text: str) -> dt.date | None:
    """Return the date written ``DD/MM/YYYY``, or None."""
    m = re.fullmatch(r"([0-9]{2})/([0-9]{2})/([0-9]{4})", text.strip())
    if m is None:
        return None
    try:
        return dt.date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
    except ValueError:
        return None


def check_travel_date(text: str, what: str = "Departure date") -> str | None:
    """Error for a travel date: ``YYYY-MM-DD`` within the sale window."""
    if not text.strip():
        return f"{what} is required."
    day = parse_iso(text)
    if day is None:
        return f"Invalid date '{shown(text)}': use YYYY-MM-DD, e.g. 2027-03-14."
    if not (SALE_FIRST_DAY <= day.isoformat() <= SALE_LAST_DAY):
        return f"{what} {day.isoformat()} is not on sale: choose a date in 2027."
    return None


def check_name(text: str, what: str) -> str | None:
    """Error for a name field: required, at most ``MAX_TEXT`` characters."""
    if not text.strip():
        return f"{what} is required."
    if len(text) > MAX_TEXT:
        return f"{what} is too long (at most {MAX_TEXT} characters)."
    return None


def check_birth_date(day: dt.date | None, text: str, travel: str, fmt: str) -> str | None:
    """Error for a date of birth (already parsed as ``day``): a real date, adult at travel."""
    if not text.strip():
        return "Date of birth is required."
    if day is None:
        return f"Invalid date of birth '{shown(text)}': use {fmt}."
    if day.isoformat() > SITE_TODAY:
        return f"Date of birth {day.isoformat()} is in the future."
    t = dt.date.fromisoformat(travel)
    age = t.year - day.year - ((t.month, t.day) < (day.month, day.day))
    if age < 18:
        return f"Passengers must be adults (18 or older on {travel}); this one is {age}."
    return None


def check_email(text: str) -> str | None:
    """Error for an email address."""
    if not text.strip():
        return "Email is required."
    if len(text) > MAX_TEXT or not _EMAIL.match(text.strip()):
        return f"Invalid email address '{shown(text)}'."
    return None


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_digit(partial: str) -> str:
    """The check digit that makes ``partial + digit`` pass the Luhn checksum."""
    return next(str(d) for d in range(10) if luhn_ok(partial + str(d)))


def check_card(text: str) -> str | None:
    """Error for a card number: 13-19 digits (spaces allowed) with a valid Luhn checksum."""
    digits = text.replace(" ", "").replace("-", "")
    if not digits:
        return "Card number is required."
    if not digits.isdigit() or not 13 <= len(digits) <= 19 or not digits.isascii():
        return f"Invalid card number '{shown(text)}': enter 13 to 19 digits."
    if not luhn_ok(digits):
        return "Invalid card number: the checksum does not match. Check the digits."
    return None


def check_expiry(month: int | None, year: int | None, text: str) -> str | None:
    """Error for a card expiry (month 1-12, two-digit year 20YY, not before 2027-01)."""
    if not text.strip():
        return "Expiry date is required."
    if month is None or year is None or not 1 <= month <= 12:
        return f"Invalid expiry date '{shown(text)}'."
    if (2000 + year, month) < (2027, 1):
        return f"The card expired ({month:02d}/{year:02d})."
    return None


def parse_expiry(text: str) -> tuple[int | None, int | None]:
    """Return (month, two-digit year) of ``MM/YY``, or Nones."""
    m = re.fullmatch(r"\s*([0-9]{1,2})\s*/\s*([0-9]{2})\s*", text)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)
