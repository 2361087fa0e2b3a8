"""A permissive text space: any Python ``str`` is a member.

Gymnasium's :class:`gymnasium.spaces.Text` only admits a fixed charset (alphanumerics by
default), which would reject the pages, JSON and Unicode that text agents read and write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

_SAMPLE_ALPHABET = tuple(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 []_-.,:;!?"
)


class AnyText(spaces.Space[str]):
    """Every ``str`` of at most ``max_length`` characters (``None``: no bound).

    ``sample()`` draws short printable strings from the seeded ``np_random``; an env may pass
    ``examples`` (valid actions, say) which ``sample()`` then mixes in half of the time, so
    random exploration also exercises legal actions.
    """

    def __init__(
        self,
        max_length: int | None = None,
        examples: tuple[str, ...] = (),
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if max_length is not None and max_length < 1:
            raise ValueError(f"Expect max_length >= 1 or None, actually: {max_length!r}")
        self.max_length = max_length
        self.examples = tuple(examples)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Text has no fixed-size numeric form."""
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """Return a random string (an example half the time, when there are examples)."""
        rng = self.np_random
        if self.examples and rng.random() < 0.5:
            return self.examples[int(rng.integers(len(self.examples)))]
        limit = 12 if self.max_length is None else min(12, self.max_length)
        n = int(rng.integers(0, limit + 1))
        return "".join(
            _SAMPLE_ALPHABET[int(i)] for i in rng.integers(len(_SAMPLE_ALPHABET), size=n)
        )

    def contains(self, x: Any) -> bool:
        """Return True for any ``str`` within the length bound."""
        return isinstance(x, str) and (self.max_length is None or len(x) <= self.max_length)

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and other.max_length == self.max_length
