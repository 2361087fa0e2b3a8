"""Summary statistics for success rates."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Return the Wilson score interval (95% by default) for ``successes`` out of ``n``.

    Wilson (1927): centre ``(p + z^2/2n) / (1 + z^2/n)``, half-width
    ``z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)``. For ``n == 0`` the interval is ``(0, 1)``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"Expect 0 <= successes <= n, actually: successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi
