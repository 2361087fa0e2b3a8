"""Gymnasium shared memory for :class:`AnyText`, so ``make_vec(..., "async")`` works as is.

``AsyncVectorEnv`` (``shared_memory=True``, its default) asks the single observation space for
a fixed-size buffer that the worker processes write their observations into. A text
observation has no fixed size, so each sub-env gets a slot of :data:`SLOT_BYTES` bytes
(``4 * max_length`` when the space has a smaller bound) holding its latest observation as
UTF-8, and a length cell; an observation longer than the slot goes to a file in a temporary
folder made with the buffer (its length cell then reads ``-1``), so any ``str`` gets through.
Texts round-trip exactly (``surrogatepass``: even a lone surrogate).

``read_from_shared_memory`` returns :class:`SharedTexts`, a live view that reads the slots
when indexed. ``deepcopy`` turns it into a ``tuple[str, ...]``, so ``AsyncVectorEnv``'s default
(``copy=True``) returns the same type as ``SyncVectorEnv``; with ``copy=False`` the view itself
comes back and shows each later step's observations.

Registration happens on import of ``earlyexp.envs.core`` (every env imports it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from gymnasium.vector.utils import (
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

from earlyexp.envs.core.spaces import AnyText

SLOT_BYTES = 1 << 16
"""Bytes of one sub-env's in-memory slot (64 KiB); longer observations go through a file."""

SPILLED = -1
"""Length cell value: this slot's text is in the spill file."""


@dataclass(frozen=True)
class TextBuffer:
    """The shared memory of ``n`` text observations (what ``create_shared_memory`` returns).

    Attributes:
        lengths: ``n`` int64 cells, the UTF-8 byte length of each slot's text (-1: spilled).
        data: ``n * slot`` bytes, slot ``i`` at ``[i * slot, (i + 1) * slot)``.
        slot: bytes per slot.
        spill_dir: folder of the spill files, one per sub-env, named by its index.
    """

    lengths: Any
    data: Any
    slot: int
    spill_dir: str


def _remove_spill_dir(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # a forked worker never removes its parent's folder
        shutil.rmtree(path, ignore_errors=True)


@create_shared_memory.register(AnyText)
def _create_text_buffer(space: AnyText, n: int = 1, ctx: Any = mp) -> TextBuffer:
    slot = SLOT_BYTES if space.max_length is None else min(SLOT_BYTES, 4 * space.max_length)
    buffer = TextBuffer(
        lengths=ctx.Array("q", n, lock=False),
        data=ctx.Array("B", n * slot, lock=False),
        slot=slot,
        spill_dir=tempfile.mkdtemp(prefix="earlyexp-vector-"),
    )
    weakref.finalize(buffer, _remove_spill_dir, buffer.spill_dir, os.getpid())
    return buffer


@write_to_shared_memory.register(AnyText)
def _write_text(space: AnyText, index: int, value: Any, shared_memory: TextBuffer) -> None:
    if not isinstance(value, str):
        raise ValueError(f"Expect a str observation, actually: {type(value).__name__}")
    raw = value.encode("utf-8", "surrogatepass")
    buf = shared_memory
    if len(raw) <= buf.slot:
        start = index * buf.slot
        memoryview(buf.data).cast("B")[start : start + len(raw)] = raw
        buf.lengths[index] = len(raw)
    else:
        Path(buf.spill_dir, str(index)).write_bytes(raw)
        buf.lengths[index] = SPILLED


@read_from_shared_memory.register(AnyText)
def _read_texts(space: AnyText, shared_memory: TextBuffer, n: int = 1) -> SharedTexts:
    return SharedTexts(shared_memory, n)


class SharedTexts(Sequence[str]):
    """A live, read-only view of the ``n`` text observations in a :class:`TextBuffer`."""

    def __init__(self, buffer: TextBuffer, n: int) -> None:
        self._buffer = buffer
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        """The current text of sub-env ``index`` (a tuple for a slice)."""
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._n)))
        i = range(self._n)[index]  # IndexError past the end, negative indices count back
        buf = self._buffer
        size = int(buf.lengths[i])
        if size == SPILLED:
            raw = Path(buf.spill_dir, str(i)).read_bytes()
        else:
            raw = bytes(memoryview(buf.data).cast("B")[i * buf.slot : i * buf.slot + size])
        return raw.decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(self._n))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # mutable view

    def __repr__(self) -> str:
        return f"SharedTexts({tuple(self)!r})"
