"""The site's forms: which fields each theme shows and how their values are validated.

Field names differ by theme (the OOD theme asks for a full name and a DD/MM/YYYY birth date,
and the card expiry as two menus), so the form code lives in one place that the site and the
expert both read.
"""

from __future__ import annotations

from typing import Any

from earlyexp.envs.flights.data import CABINS, find_airport, suggest_airports
from earlyexp.envs.flights.validation import (
    check_birth_date,
    check_card,
    check_email,
    check_expiry,
    check_name,
    check_travel_date,
    parse_dmy,
    parse_expiry,
    parse_iso,
    parse_number,
    shown,
)

SEARCH_FIELDS = ("origin", "destination", "date", "adults", "cabin")
MAX_ADULTS = 6


def parse_travellers(text: str) -> int | None:
    """The number of travellers, 1 to ``MAX_ADULTS`` in ASCII digits, else None (every route)."""
    return parse_number(text, 1, MAX_ADULTS)


def parse_cabin(text: str) -> str | None:
    """The cabin named by ``text`` (one of ``CABINS``), else None (every route)."""
    return text if text in CABINS else None


def _airport_error(text: str, what: str) -> str | None:
    if not text.strip():
        return f"{what} is required."
    if find_airport(text) is not None:
        return None
    hints = ", ".join(a.label for a in suggest_airports(text))
    return f"Unknown airport '{shown(text)}' in {what}." + (
        f" Did you mean: {hints}?" if hints else ""
    )


def check_search(values: dict[str, str]) -> list[str]:
    """Errors of a flight search (empty when it can run)."""
    errors = [
        e
        for e in (
            _airport_error(values["origin"], "From"),
            _airport_error(values["destination"], "To"),
        )
        if e
    ]
    o, d = find_airport(values["origin"]), find_airport(values["destination"])
    if o is not None and o == d:
        errors.append("From and To must be different airports.")
    err = check_travel_date(values["date"])
    if err:
        errors.append(err)
    if parse_travellers(values["adults"]) is None:
        errors.append(
            f"Travellers must be a number from 1 to {MAX_ADULTS}, not '{shown(values['adults'])}'."
        )
    if parse_cabin(values["cabin"]) is None:
        errors.append(f"Choose a cabin: {', '.join(CABINS)}.")
    return errors


def passenger_fields(theme: str, k: int) -> tuple[str, ...]:
    """Field names of passenger ``k`` (1-based) in ``theme``."""
    return (
        (f"name_{k}", f"dob_{k}") if theme == "compact" else (f"first_{k}", f"last_{k}", f"dob_{k}")
    )


def check_passengers(
    theme: str, values: dict[str, str], adults: int, travel: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """Errors of the passenger form and the parsed passengers ``{name, dob}``."""
    errors, people = [], []
    for k in range(1, adults + 1):
        who = f"Passenger {k}"
        if theme == "compact":
            name = values.get(f"name_{k}", "")
            errs = [check_name(name, f"{who}: full name")]
            if not errs[0] and len(name.split()) < 2:
                errs = [f"{who}: enter a first and a last name."]
            dob_text = values.get(f"dob_{k}", "")
            dob, fmt = parse_dmy(dob_text), "DD/MM/YYYY"
        else:
            first, last = values.get(f"first_{k}", ""), values.get(f"last_{k}", "")
            errs = [check_name(first, f"{who}: first name"), check_name(last, f"{who}: last name")]
            name = f"{first.strip()} {last.strip()}"
            dob_text = values.get(f"dob_{k}", "")
            dob, fmt = parse_iso(dob_text), "YYYY-MM-DD"
        err = check_birth_date(dob, dob_text, travel, fmt)
        errs.append(f"{who}: {err}" if err else None)
        errors += [e for e in errs if e]
        people.append({"name": " ".join(name.split()), "dob": dob.isoformat() if dob else ""})
    err = check_email(values.get("email", ""))
    if err:
        errors.append(err)
    return errors, people


def payment_fields(theme: str) -> tuple[str, ...]:
    """Field names of the payment form in ``theme``."""
    if theme == "compact":
        return ("card_number", "exp_month", "exp_year", "card_name")
    return ("card_name", "card_number", "card_expiry")


def check_payment(theme: str, values: dict[str, str]) -> list[str]:
    """Errors of the payment form."""
    errors = [
        check_name(values.get("card_name", ""), "Name on card"),
        check_card(values.get("card_number", "")),
    ]
    if theme == "compact":
        m, y = values.get("exp_month", ""), values.get("exp_year", "")
        month, year = parse_number(m, 0, 99), parse_number(y, 2000, 2099)
        year = None if year is None else year % 100
        errors.append(check_expiry(month, year, f"{m}/{y}" if m or y else ""))
    else:
        text = values.get("card_expiry", "")
        errors.append(check_expiry(*parse_expiry(text), text))
    return [e for e in errors if e]


def task_passenger_values(theme: str, passengers, email: str) -> dict[str, str]:
    """The passenger form as the expert fills it for a task's travellers."""
    out = {"email": email}
    for k, (first, last, dob) in enumerate(passengers, start=1):
        if theme == "compact":
            y, m, d = dob.split("-")
            out[f"name_{k}"], out[f"dob_{k}"] = f"{first} {last}", f"{d}/{m}/{y}"
        else:
            out[f"first_{k}"], out[f"last_{k}"], out[f"dob_{k}"] = first, last, dob
    return out


def task_payment_values(theme: str, number: str, expiry: str, name: str) -> dict[str, str]:
    """The payment form as the expert fills it."""
    if theme == "compact":
        m, y = expiry.split("/")
        return {"card_number": number, "exp_month": m, "exp_year": f"20{y}", "card_name": name}
    return {"card_name": name, "card_number": number, "card_expiry": expiry}
