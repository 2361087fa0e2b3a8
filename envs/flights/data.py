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
    """An airport: IATA code, the city it serves and its position (degrees)."""

    code: str
    city: str
    lat: float
    lon: float

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
    out = []
    for row in rows.split(","):
        code, city, lat, lon = row.split(":")
        out.append(Airport(code, city, float(lat), float(lon)))
    return tuple(out)


ID_AIRPORTS = _airports(
    "ATL:Atlanta:33.64:-84.43,BOS:Boston:42.36:-71.01,ORD:Chicago:41.98:-87.90,"
    "DFW:Dallas:32.90:-97.04,DEN:Denver:39.86:-104.67,DTW:Detroit:42.21:-83.35,"
    "HNL:Honolulu:21.32:-157.92,IAH:Houston:29.98:-95.34,LAS:Las Vegas:36.08:-115.15,"
    "LAX:Los Angeles:33.94:-118.41,MIA:Miami:25.79:-80.29,MSP:Minneapolis:44.88:-93.22,"
    "JFK:New York:40.64:-73.78,MCO:Orlando:28.43:-81.31,PHL:Philadelphia:39.87:-75.24,"
    "PHX:Phoenix:33.43:-112.01,PDX:Portland:45.59:-122.60,SLC:Salt Lake City:40.79:-111.98,"
    "SAN:San Diego:32.73:-117.19,SFO:San Francisco:37.62:-122.38,SEA:Seattle:47.45:-122.31,"
    "TPA:Tampa:27.98:-82.53,DCA:Washington:38.85:-77.04,YYZ:Toronto:43.68:-79.63,"
    "YVR:Vancouver:49.19:-123.18,MEX:Mexico City:19.44:-99.07"
)
OOD_AIRPORTS = _airports(
    "ANC:Anchorage:61.17:-149.99,BNA:Nashville:36.12:-86.68,MSY:New Orleans:29.99:-90.26,"
    "RDU:Raleigh:35.88:-78.79,AUS:Austin:30.19:-97.67,CLE:Cleveland:41.41:-81.85,"
    "PIT:Pittsburgh:40.49:-80.23,STL:St. Louis:38.75:-90.37,BOI:Boise:43.56:-116.22,"
    "ABQ:Albuquerque:35.04:-106.61,OMA:Omaha:41.30:-95.89,YUL:Montreal:45.47:-73.74,"
    "CUN:Cancun:21.04:-86.87,SJU:San Juan:18.44:-66.00"
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
