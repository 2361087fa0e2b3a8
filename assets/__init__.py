"""Data shipped with earlyexp: vocabularies, templates and site files.

Load files with :func:`earlyexp.assets.path`, never relative to the working directory.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def path(*parts: str) -> Traversable:
    """Return the packaged asset at ``parts`` (e.g. ``path("webshop", "vocab.json")``)."""
    node = resources.files(__name__)
    for part in parts:
        node = node / part
    return node


def read_text(*parts: str) -> str:
    """Return the text of the packaged asset at ``parts``."""
    return path(*parts).read_text(encoding="utf-8")
