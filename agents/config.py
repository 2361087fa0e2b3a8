"""Command-line parsing from one config dataclass per entry point.

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
    docs = field_docs_all(cls)
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


def field_names(cls: type) -> list[str]:
    """The field names of dataclass ``cls``, in order."""
    return [f.name for f in dataclasses.fields(cls)]


def check_fields(cls: type, values: dict[str, Any], where: str = "") -> None:
    """Raise a ValueError naming the valid fields when ``values`` has a key ``cls`` lacks."""
    valid = field_names(cls)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        at = f" ({where})" if where else ""
        raise ValueError(
            f"Expect fields of {cls.__name__}{at}: {', '.join(valid)}; "
            f"actually unknown: {', '.join(unknown)}"
        )


def with_values(config: C, values: dict[str, Any], where: str = "") -> C:
    """A copy of dataclass ``config`` with ``values`` replaced (unknown names: ValueError)."""
    check_fields(type(config), values, where)
    return dataclasses.replace(config, **values)  # type: ignore[type-var]


def parse_value(cls: type, name: str, text: str) -> Any:
    """Convert the command-line text of field ``name`` of ``cls`` to the field's type."""
    check_fields(cls, {name: text})
    conv, is_flag = _parser_for(typing.get_type_hints(cls)[name])
    if is_flag:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"Expect true or false for {cls.__name__}.{name}, actually: {text!r}")
        return text.lower() in ("true", "1", "yes")
    try:
        return conv(text)
    except ValueError as e:
        raise ValueError(
            f"Expect a valid value for {cls.__name__}.{name}, actually: {text!r}"
        ) from e


def describe_fields(cls: type) -> str:
    """One line per field of ``cls``: name, type, default and docstring (a method's help)."""
    docs = field_docs_all(cls)
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        tp = getattr(hints[f.name], "__name__", str(hints[f.name]))
        lines.append(f"  {f.name} ({tp}, default {default!r}): {docs.get(f.name, '')}")
    return "\n".join(lines)


def field_docs_all(cls: type) -> dict[str, str]:
    """:func:`field_docs` of ``cls`` and its dataclass bases (a subclass's text wins)."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    return docs
