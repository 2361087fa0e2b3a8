"""Command-line parsing from one config dataclass per entry point (STYLE.md rule 6).

Each field's docstring (the string literal under it) is its ``--help`` text, as in cleanrl's
``Args``. Lists are comma-separated on the command line.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def field_docs(cls: type) -> dict[str, str]:
    """Return ``{field: docstring}`` read from the source of dataclass ``cls``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _parser_for(tp: Any) -> tuple[Any, bool]:
    """Return (converter, is_flag) for a field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _parser_for(args[0])
    if tp is bool:
        return None, True
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        conv = inner if inner in (int, float, str) else str
        return (lambda s: [conv(x) for x in s.split(",") if x.strip()]), False
    return (tp if tp in (int, float, str) else str), False


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` to ``parser``."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        conv, is_flag = _parser_for(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = f"{docs.get(f.name, '')} (default: {shown})"
        if is_flag:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(flag, dest=f.name, type=conv, default=None, help=help_text)


def from_args(cls: type[C], ns: argparse.Namespace, **base: Any) -> C:
    """Build ``cls`` from parsed args; flags not given keep ``base`` values or defaults."""
    values = dict(base)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(ns, f.name, None)
        if v is not None:
            values[f.name] = v
    return cls(**values)
