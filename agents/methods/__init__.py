"""The method registry: every method ``earlyexp bench`` can run, by name.

A method is one module of this package: a config dataclass (its field docstrings are the
method's ``--help-method`` text) and one ``run`` function, registered with :func:`register`::

    @register("il", config=ILConfig, kind="llm", trains=True)
    def run(*, env_id, seed, config, run_dir, device, model, **kwargs) -> list[EpisodeRecord]:
        ...

``run`` is called once per (method, env, seed) cell, by keyword, and returns the episode
records of the ``test`` and ``ood`` panels. Keywords it does not use arrive in ``**kwargs``
(``pool``: where the envs run), so the harness can grow without breaking methods. A method
outside this package is named as ``module:function`` (``--methods mypkg.mymod:run``); its
config is its registered one, or the function's ``config`` attribute, else
:class:`~earlyexp.agents.methods.common.MethodConfig`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODULES = ("scripted", "sb3", "prompt", "il", "iwm", "sr", "grpo", "herl", "reflexion", "erl")
"""The built-in method modules, ``earlyexp.agents.methods.<name>``."""

KINDS = ("scripted", "sb3", "llm", "custom")


@dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
        name: the ``--methods`` name.
        run: the function the harness calls by keyword.
        config: its config dataclass.
        kind: ``scripted`` (no model), ``sb3``, ``llm`` or ``custom``.
        trains: it changes model weights (so it needs a local model, not an HTTP one).
        requires: registry tags an env must have (``sb3``: ``control``, a numeric view).
        description: one line for listings.
    """

    name: str
    run: Callable[..., Any]
    config: type
    kind: str
    trains: bool = False
    requires: tuple[str, ...] = ()
    description: str = ""

    def runs_on(self, tags: tuple[str, ...]) -> bool:
        """Whether an env with registry ``tags`` suits this method."""
        return all(t in tags for t in self.requires)


METHODS: dict[str, Method] = {}


def register(
    name: str,
    *,
    config: type,
    kind: str,
    trains: bool = False,
    requires: tuple[str, ...] = (),
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``run`` under ``name`` (decorator)."""
    if kind not in KINDS:
        raise ValueError(f"Expect a method kind in {KINDS}, actually: {kind!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        METHODS[name] = Method(name, fn, config, kind, trains, requires, doc)
        return fn

    return deco


def load_builtin_methods() -> None:
    """Import the built-in method modules (each registers its methods)."""
    for mod in MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def get_method(name: str) -> Method:
    """The method ``name``: a registered name, or ``module:function`` of any importable module."""
    load_builtin_methods()
    if name in METHODS:
        return METHODS[name]
    if ":" not in name:
        raise ValueError(
            f"Expect a method in {sorted(METHODS)} or module:function, actually: {name!r}"
        )
    return _external(name)


def _external(spec: str) -> Method:
    from earlyexp.agents.methods.common import MethodConfig

    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ModuleNotFoundError, AttributeError) as e:
        raise ValueError(
            f"Expect an importable method module:function, actually: {spec!r} ({e})"
        ) from e
    for m in METHODS.values():
        if m.run is fn:
            return m
    if not callable(fn):
        raise ValueError(f"Expect {spec!r} to be a function, actually: {type(fn).__name__}")
    config = getattr(fn, "config", MethodConfig)
    return Method(spec, fn, config, "custom", description=(fn.__doc__ or "").strip()[:80])
