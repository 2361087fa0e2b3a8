"""The world of the flight site: airports, airlines and traveller names, split ID vs OOD.

In-distribution (``id``) tasks use :data:`ID_AIRPORTS` and :data:`ID_AIRLINES`; out-of-
distribution (``ood``) tasks fly between :data:`OOD_AIRPORTS` on :data:`OOD_AIRLINES`, which
no train or test task ever shows. The site knows every airport, so a person (or an agent) can
search any route.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Airport:
    """An airport: IATA-style code and the city it serves."""

    code: str
    city: str

    @property
    def label(self) -> str:
        """``Denver (DEN)``: how the site names the airport."""
        return f"{self.city} ({self.code})"


@dataclass(frozen=True)
class Airline:
    """An airline: two-letter code, name and a price factor (1.0 = average)."""

    code: str
    name: str
    factor: float


def _airports(rows: str) -> tuple[Airport, ...]:
    return tuple(Airport(*row.split(":")) for row in rows.split(","))


ID_AIRPORTS = _airports(
    "ATL:Atlanta,BOS:Boston,ORD:Chicago,DFW:Dallas,DEN:Denver,DTW:Detroit,HNL:Honolulu,"
    "IAH:Houston,LAS:Las Vegas,LAX:Los Angeles,MIA:Miami,MSP:Minneapolis,JFK:New York,"
    "MCO:Orlando,PHL:Philadelphia,PHX:Phoenix,PDX:Portland,SLC:Salt Lake City,"
    "SAN:San Diego,SFO:San Francisco,SEA:Seattle,TPA:Tampa,DCA:Washington,YYZ:Toronto,"
    "YVR:Vancouver,MEX:Mexico City"
)
OOD_AIRPORTS = _airports(
    "ANC:Anchorage,BNA:Nashville,MSY:New Orleans,RDU:Raleigh,AUS:Austin,CLE:Cleveland,"
    "PIT:Pittsburgh,STL:St. Louis,BOI:Boise,ABQ:Albuquerque,OMA:Omaha,YUL:Montreal,"
    "CUN:Cancun,SJU:San Juan"
)
AIRPORTS: dict[str, Airport] = {a.code: a for a in ID_AIRPORTS + OOD_AIRPORTS}

ID_AIRLINES = (
    Airline("SK", "Skyline Airways", 1.00),
    Airline("NW", "Northwind", 0.92),
    Airline("PC", "Pacific Crest", 1.08),
    Airline("BJ", "Bluejay Air", 0.85),
    Airline("AU", "Aurora Airlines", 1.15),
    Airline("SW", "Summit West", 0.97),
)
OOD_AIRLINES = (
    Airline("HX", "Heron Express", 0.90),
    Airline("QT", "Quill Transatlantic", 1.12),
    Airline("MV", "Maverick Air", 0.95),
    Airline("LZ", "Lazuli Jet", 1.05),
)
AIRLINES: dict[str, Airline] = {a.code: a for a in ID_AIRLINES + OOD_AIRLINES}

FIRST_NAMES = (
    "Ana Li Omar Sara Kenji Maya Lucas Priya Noah Elena Tariq Chloe Mateo Aisha Jonas Mei "
    "Diego Freya Ravi Zoe Ivan Leila Hugo Nia Samuel Yuki Amara Felix Ines Kofi"
).split()
LAST_NAMES = (
    "Ruiz Wei Haddad Novak Tanaka Okafor Silva Sharma Becker Rossi Khan Dubois Garcia Mensah "
    "Larsen Chen Moreno Andersen Patel Martin Petrov Nasser Laurent Adeyemi Cohen Sato Boateng "
    "Weber Costa Owusu"
).split()

CABINS = ("economy", "premium economy", "business")
CABIN_FACTORS = {"economy": 1.0, "premium economy": 1.65, "business": 3.1}

SALE_FIRST_DAY = "2027-01-01"
"""The site sells flights departing in 2027 only; the site's 'today' is the day before."""
SALE_LAST_DAY = "2027-12-31"
SITE_TODAY = "2026-12-31"


def find_airport(text: str) -> Airport | None:
    """Return the airport named by ``text``: a code, a city, or ``City (CODE)``; else None."""
    t = " ".join(text.split()).strip()
    if t.endswith(")") and "(" in t:
        t = t[t.rfind("(") + 1 : -1]
    key = t.casefold()
    for a in AIRPORTS.values():
        if key in (a.code.casefold(), a.city.casefold()):
            return a
    return None


def suggest_airports(text: str, limit: int = 3) -> list[Airport]:
    """Return up to ``limit`` airports whose city or code resembles ``text`` (for errors)."""
    from rapidfuzz import fuzz, process

    choices = {a.code: f"{a.city} {a.code}" for a in AIRPORTS.values()}
    hits = process.extract(text[:60], choices, scorer=fuzz.WRatio, limit=limit)
    return [AIRPORTS[key] for _, score, key in hits if score >= 60]
