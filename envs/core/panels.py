"""Fixed, hashed task panels and the procedural train stream.

Task ``i`` of split ``s`` of a family is generated from a seed derived only from
``(family, s, i)`` with SHA-256, so a panel is the same in every process, on every machine
and for any number of workers. A panel's hash is the SHA-256 of its tasks' canonical JSON.

Private panels (course assignments): inside :func:`salted_panels`, the seeds of the fixed
splits (``test``, ``ood``) are an HMAC-SHA256 of ``(family, s, i)`` keyed by an instructor's
secret, so the panels are other fixed draws from the same task distribution, and their hashes
differ from the public ones without telling the secret. The train stream never changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from earlyexp.envs.core.types import SPLITS

_SALT: bytes | None = None
"""The salt of the fixed panels in this process (None: the public panels); see salted_panels."""


@contextmanager
def salted_panels(salt: str | None) -> Iterator[None]:
    """Within the block, the ``test`` and ``ood`` panels of every env come from ``salt``.

    ``salt`` is an instructor's secret (None or ``""``: the public panels). Envs made or reset
    in this process inside the block (threads included; not Ray workers) draw their fixed
    panel tasks, and hash their panels, from it; the train stream is unchanged.
    """
    global _SALT
    saved, _SALT = _SALT, (salt.encode() if salt else None)
    try:
        yield
    finally:
        _SALT = saved


def panels_salted() -> bool:
    """Whether the fixed panels of this process are salted now (inside :func:`salted_panels`)."""
    return _SALT is not None


def task_seed(family: str, split: str, index: int) -> int:
    """Return the 64-bit seed of task ``index`` of ``split`` in ``family``."""
    key = f"{family}/{split}/{index}".encode()
    if _SALT is not None and split != "train":
        digest = hmac.new(_SALT, key, hashlib.sha256).digest()
    else:
        digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "little")


def task_rng(family: str, split: str, index: int) -> np.random.Generator:
    """Return the generator from which task ``index`` of ``split`` is built."""
    return np.random.default_rng(task_seed(family, split, index))


def canonical_json(obj: Any) -> str:
    """Serialize ``obj`` deterministically (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_to_jsonable)


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"Expect a JSON-serializable task, actually: {type(obj).__name__}")


def panel_hash(tasks: Sequence[Any]) -> str:
    """Return the first 16 hex digits of the SHA-256 over the tasks' canonical JSON."""
    h = hashlib.sha256()
    for task in tasks:
        h.update(canonical_json(task).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def check_split(split: Any) -> str:
    """Return ``split`` if it names a split, else raise a ValueError that lists them."""
    if split not in SPLITS:
        raise ValueError(f"Expect split in {SPLITS}, actually: {split!r}")
    return str(split)


def check_index(split: str, index: Any, size: int | None) -> int:
    """Return ``index`` if it is a valid task index for a panel of ``size`` (None: a stream)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"Expect options['task'] to be an int, actually: {index!r}")
    limit = "a non-negative int" if size is None else f"in [0, {size})"
    if index < 0 or (size is not None and index >= size):
        raise ValueError(f"Expect options['task'] {limit} for split {split!r}, actually: {index}")
    return int(index)


def build_panel(
    family: str, split: str, size: int, make: Callable[[np.random.Generator, str], Any]
) -> list[Any]:
    """Return the ``size`` tasks of a fixed panel, each built by ``make(rng, split)``."""
    return [make(task_rng(family, split, i), split) for i in range(size)]
