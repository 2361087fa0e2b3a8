"""Function tables, the prompt text generated from them, and a safe parser for calls.

An action is one or more calls in Python syntax, ``mkdir(path="/docs"); cd(path="docs")``
(separated by ``;`` or new lines) or a list ``[mkdir(path="/docs"), cd(path="docs")]``.
It is parsed with :func:`ast.parse` and the tree is walked: only calls of a plain function
name with literal arguments (strings, numbers, booleans, None, and lists/dicts of those) are
accepted. Nothing is ever evaluated. Each call is then checked against the same
:class:`ToolSpec` table that :meth:`ToolTable.describe` turns into the prompt.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from earlyexp.envs.core.actions import echo, lone_surrogate

MAX_ACTION_CHARS = 20_000
MAX_CALLS = 16
TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


@dataclass(frozen=True)
class Param:
    """One typed parameter of a function (``type`` is ``str``, ``int``, ``float`` or ``bool``)."""

    name: str
    type: str
    doc: str
    required: bool = True
    default: Any = None

    def accepts(self, value: Any) -> bool:
        """True when ``value`` has this parameter's type (bools are not numbers)."""
        if isinstance(value, bool) and self.type != "bool":
            return False
        return isinstance(value, TYPES[self.type])


@dataclass(frozen=True)
class ToolSpec:
    """A function the agent may call: its signature, docs and implementation.

    ``fn(state, **kwargs)`` returns the text result or raises :class:`ToolError`.
    ``mutates`` is True when the function changes the scored state (a file, a balance, a
    booking); ``cd`` changes the state but not the scored part, so it is not marked.
    """

    name: str
    doc: str
    params: tuple[Param, ...]
    fn: Callable[..., str] = field(compare=False, repr=False)
    mutates: bool = False

    def signature(self) -> str:
        """``name(a: str, b: int = 10)``."""
        parts = []
        for p in self.params:
            parts.append(f"{p.name}: {p.type}" + ("" if p.required else f" = {p.default!r}"))
        return f"{self.name}({', '.join(parts)})"


class ToolError(Exception):
    """A domain error a real API would return ("No such file: /x"); the action is undone."""


@dataclass(frozen=True)
class Call:
    """A parsed call: function name, positional and keyword literal arguments."""

    name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class BoundCall:
    """A call checked against its spec: every parameter bound (defaults filled in)."""

    spec: ToolSpec
    values: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The bound arguments by name."""
        return dict(self.values)

    def canonical(self) -> str:
        """The call with every argument by keyword, in signature order."""
        return f"{self.spec.name}({', '.join(f'{k}={v!r}' for k, v in self.values)})"


class CallError(ValueError):
    """Why an action is not a list of acceptable calls (shown to the agent)."""


def call_str(name: str, **kwargs: Any) -> str:
    """Render a call in the accepted syntax (used for expert plans)."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def _literal(node: ast.AST) -> Any:
    """Return the value of a literal node; raise CallError for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        bad = lone_surrogate(node.value)
        if bad is not None:
            raise CallError(
                f"Invalid argument: the string {echo(node.value)} is not valid Unicode text "
                f"({bad}); write the character itself or a \\U escape."
            )
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) in (int, float):
            number: int | float = inner.value  # type: ignore[assignment]
            return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(
            k is None or not isinstance(k, ast.Constant) or not isinstance(k.value, str)
            for k in node.keys
        ):
            raise CallError("Dictionary keys must be string literals.")
        return {k.value: _literal(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[union-attr]
    raise CallError(_why_not_literal(node))


def _why_not_literal(node: ast.AST) -> str:
    reasons = {
        ast.Call: "nested calls are not allowed as arguments",
        ast.Name: "variables are not allowed; pass literal values",
        ast.Attribute: "attribute access is not allowed",
        ast.JoinedStr: "f-strings are not allowed; pass a plain string",
        ast.Lambda: "lambdas are not allowed",
        ast.Starred: "starred arguments are not allowed",
    }
    for kind, why in reasons.items():
        if isinstance(node, kind):
            return f"Invalid argument: {why}."
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return "Invalid argument: comprehensions are not allowed."
    return f"Invalid argument: only literal values are allowed (got {type(node).__name__})."


def _call(node: ast.AST) -> Call:
    if not isinstance(node, ast.Call):
        raise CallError(f"Expected a function call like f(x=1), got a {type(node).__name__}.")
    if not isinstance(node.func, ast.Name):
        what = "attribute access" if isinstance(node.func, ast.Attribute) else "a computed function"
        raise CallError(f"Call a function by its plain name; {what} is not allowed.")
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise CallError("Invalid argument: starred arguments are not allowed.")
    if any(k.arg is None for k in node.keywords):
        raise CallError("Invalid argument: **kwargs unpacking is not allowed.")
    args = tuple(_literal(a) for a in node.args)
    kwargs = tuple((str(k.arg), _literal(k.value)) for k in node.keywords)
    return Call(node.func.id, args, kwargs)


def parse_calls(text: str) -> list[Call]:
    """Parse an action into calls; raise :class:`CallError` saying what is wrong."""
    if len(text) > MAX_ACTION_CHARS:
        raise CallError(f"Action too long ({len(text)} characters; at most {MAX_ACTION_CHARS}).")
    try:
        tree = ast.parse(text.strip(), mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as err:
        raise CallError(
            f"Could not parse {echo(text)} as Python calls ({type(err).__name__}). "
            'Write calls like mkdir(path="/docs") or respond(message="...").'
        ) from None
    nodes: list[ast.AST] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise CallError(f"Expected only function calls, got a {type(stmt).__name__} statement.")
        if isinstance(stmt.value, (ast.List, ast.Tuple)) and len(tree.body) == 1:
            nodes.extend(stmt.value.elts)
        else:
            nodes.append(stmt.value)
    if not nodes:
        raise CallError('Expected at least one call, e.g. respond(message="...").')
    if len(nodes) > MAX_CALLS:
        raise CallError(f"Too many calls in one action ({len(nodes)}; at most {MAX_CALLS}).")
    return [_call(n) for n in nodes]


class ToolTable:
    """The functions available in an episode: validation and prompt text from one table."""

    def __init__(self, specs: tuple[ToolSpec, ...]) -> None:
        self.specs = specs
        self.by_name = {s.name: s for s in specs}

    def bind(self, call: Call) -> BoundCall:
        """Check ``call`` against its signature; raise CallError like Python's TypeError would."""
        spec = self.by_name.get(call.name)
        if spec is None:
            raise CallError(
                f"No such function {call.name!r}. Available: {', '.join(self.by_name)}."
            )
        if len(call.args) > len(spec.params):
            raise CallError(
                f"{spec.name}() takes {len(spec.params)} arguments, got {len(call.args)}."
            )
        given: dict[str, Any] = {}
        for p, v in zip(spec.params, call.args, strict=False):
            given[p.name] = v
        names = {p.name for p in spec.params}
        for k, v in call.kwargs:
            if k not in names:
                raise CallError(f"{spec.name}() got an unexpected argument {k!r}.")
            if k in given:
                raise CallError(f"{spec.name}() got multiple values for argument {k!r}.")
            given[k] = v
        values = []
        for p in spec.params:
            if p.name not in given:
                if p.required:
                    raise CallError(f"{spec.name}() missing required argument {p.name!r}.")
                given[p.name] = p.default
            elif not p.accepts(given[p.name]):
                got = type(given[p.name]).__name__
                raise CallError(f"{spec.name}() argument {p.name!r} must be {p.type}, got {got}.")
            values.append((p.name, given[p.name]))
        return BoundCall(spec, tuple(values))

    def describe(self) -> str:
        """Prompt text: each function's signature, what it does and its parameters."""
        lines = []
        for s in self.specs:
            lines.append(f"- {s.signature()}: {s.doc}")
            for p in s.params:
                lines.append(
                    f"    {p.name} ({p.type}{'' if p.required else ', optional'}): {p.doc}"
                )
        return "\n".join(lines)

    def templates(self) -> list[str]:
        """One example call per function, placeholders for its required arguments."""
        out = []
        for s in self.specs:
            args = ", ".join(f"{p.name}={_placeholder(p)}" for p in s.params if p.required)
            out.append(f"{s.name}({args})")
        return out


def _placeholder(p: Param) -> str:
    return {"str": f'"<{p.name}>"', "int": "1", "float": "1.0", "bool": "True"}[p.type]
