"""EarlyExp/FlightBooking-v0: a flight-booking web site driven by Playwright in Chromium.

Modules: :mod:`data` (airports, airlines), :mod:`schedule` (flights, result views),
:mod:`tasks` (tasks and rubric), :mod:`validation` and :mod:`forms` (server-side checks),
:mod:`store` (SQLite), :mod:`site` (the Starlette app, ``earlyexp serve flights``),
:mod:`server` (uvicorn thread), :mod:`browser` (Playwright), :mod:`expert`, :mod:`env`.
Heavy dependencies (starlette, uvicorn, jinja2, playwright) are imported lazily.
"""
