"""Progress bars and first-use build notices, one style for every long piece of work.

Bars go to stderr through ``tqdm`` (never into results), refresh at most once a second and
leave no line behind when done unless asked. ``EARLYEXP_PROGRESS=0`` turns every bar and
notice off (logs of batch jobs); the bench's per-cell bar stays as the bench writes it.

:func:`building` announces work that happens once and is then cached (the tiny model, an
index), with what is built and how long it usually takes, so a first run that sits for a
minute says why.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    """False when ``EARLYEXP_PROGRESS`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get("EARLYEXP_PROGRESS", "1").strip().lower() not in OFF


def bar(
    iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, unit: str = "it",
    leave: bool = False, delay: float = 1.0, **kwargs: Any,
) -> Any:  # fmt: skip
    """A ``tqdm`` bar over ``iterable`` (or a manual one: ``bar(total=n, ...)`` + ``update``).

    It appears once the work has taken ``delay`` seconds, so quick work draws nothing.
    """
    from tqdm.auto import tqdm

    return tqdm(
        iterable, desc=desc, total=total, unit=unit, leave=leave, delay=delay, mininterval=1.0,
        dynamic_ncols=True, disable=not enabled(), **kwargs,
    )  # fmt: skip


def note(text: str) -> None:
    """A line on stderr that does not break a bar being drawn (nothing when disabled)."""
    if enabled():
        from tqdm.auto import tqdm

        tqdm.write(f"earlyexp: {text}", file=sys.stderr)


@contextmanager
def building(what: str, usually: str) -> Iterator[None]:
    """Announce a one-time build: ``building WHAT (usually USUALLY)`` then the time it took."""
    note(f"building {what} (usually {usually}; cached for later runs)")
    start = time.perf_counter()
    yield
    note(f"built {what} in {time.perf_counter() - start:.1f} s")
