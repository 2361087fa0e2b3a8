"""One table per env that parses actions and describes them to the agent.

An action is a name followed by zero or more bracketed arguments, e.g. ``Up``,
``search[red shoes]``, ``type[e12][Ana Ruiz]``. Names are case-insensitive. The last argument
may itself contain ``]`` (everything up to the final ``]`` belongs to it). A bare action may be
a phrase of several words (``walk away``); it then matches with any case and any runs of
whitespace between and around its words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
MAX_ECHO = 80


@dataclass(frozen=True)
class ActionSpec:
    """One action of an env's grammar.

    Attributes:
        name: the action word, matched case-insensitively.
        args: names of the bracketed arguments, in order (empty for bare words).
        description: one line for the prompt.
        examples: concrete instances shown to the agent.
    """

    name: str
    args: tuple[str, ...] = ()
    description: str = ""
    examples: tuple[str, ...] = ()

    @property
    def template(self) -> str:
        """The action's form, e.g. ``type[id][text]``."""
        return self.name + "".join(f"[{a}]" for a in self.args)


@dataclass(frozen=True)
class ParsedAction:
    """A syntactically valid action: its canonical name and its arguments."""

    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class ParseError:
    """Why an action string does not fit the grammar (shown to the agent)."""

    message: str


def echo(text: str, limit: int = MAX_ECHO) -> str:
    """Return ``text`` quoted and shortened for an error message (control chars escaped)."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def lone_surrogate(text: str) -> str | None:
    """Say where ``text`` holds a lone surrogate (U+D800..U+DFFF), or None when it has none.

    Such a ``str`` cannot be encoded as UTF-8, so it is refused as agent input: observations
    that echo it would break every consumer that encodes them.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"it holds a lone surrogate {text[err.start]!r} at position {err.start}"
    return None


class ActionGrammar:
    """Parses action strings against a table of :class:`ActionSpec` and describes the table."""

    def __init__(self, specs: tuple[ActionSpec, ...]) -> None:
        if not specs:
            raise ValueError("Expect at least one ActionSpec, actually: none")
        self.specs = specs
        self._by_name = {s.name.lower(): s for s in specs}
        self._bare = {s.name: ParsedAction(s.name, ()) for s in specs if not s.args}
        self._phrases = {
            " ".join(s.name.lower().split()): ParsedAction(s.name, ())
            for s in specs
            if not s.args and len(s.name.split()) > 1
        }  # multi-word bare names (``walk away``); empty in most grammars

    def parse(self, text: str) -> ParsedAction | ParseError:
        """Parse ``text``; never raises on any string."""
        bare = self._bare.get(text)  # the common case, an exact bare name (``Up``): no regex
        if bare is not None:
            return bare
        if self._phrases:
            phrase = self._phrases.get(" ".join(text.lower().split()))
            if phrase is not None:
                return phrase
        m = _NAME.match(text)
        if m is None:
            return ParseError(f"Invalid action {echo(text)}. {self.expected()}")
        spec = self._by_name.get(m.group(1).lower())
        if spec is None:
            return ParseError(f"Unknown action {echo(m.group(1))}. {self.expected()}")
        args = _split_args(text[m.end() :].strip(), len(spec.args))
        if args is None:
            return ParseError(f"Malformed action {echo(text)}: expected {spec.template}.")
        return ParsedAction(spec.name, args)

    def expected(self) -> str:
        """A sentence naming the valid action forms."""
        return "Expected one of: " + ", ".join(s.template for s in self.specs) + "."

    def describe(self) -> str:
        """Prompt text: one line per action with its examples."""
        lines = []
        for s in self.specs:
            ex = f" Examples: {', '.join(s.examples)}." if s.examples else ""
            lines.append(f"- {s.template}: {s.description}{ex}")
        return "\n".join(lines)


def _split_args(rest: str, n: int) -> tuple[str, ...] | None:
    """Split ``[a][b]...`` into exactly ``n`` arguments, or None when it does not fit."""
    if n == 0:
        return () if rest == "" else None
    args = []
    for i in range(n):
        if not rest.startswith("["):
            return None
        end = rest.rfind("]") if i == n - 1 else rest.find("]")
        if end < 0:
            return None
        args.append(rest[1:end].strip())
        rest = rest[end + 1 :].lstrip()
    return tuple(args) if rest == "" else None
