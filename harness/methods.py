"""The methods ``earlyexp bench`` can run, as plain functions registered by name.

A method is called once per (method, env, seed) cell, by keyword, and returns the evaluation
episodes on the ``test`` and ``ood`` panels. Extra keywords it does not use arrive in
``**kwargs`` (STYLE.md rule 8), so the harness can grow without breaking methods.

    @register_method("il", kind="llm")
    def run_il(*, env_id, seed, budget, run_dir, device, model, **kwargs) -> list[EpisodeRecord]:
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from earlyexp.harness.records import EpisodeRecord


@dataclass(frozen=True)
class Budget:
    """How much work one cell may do (set by the profile).

    Attributes:
        eval_tasks: tasks evaluated per panel (the first ``eval_tasks`` of ``test`` and ``ood``).
        train_episodes: expert or collected episodes for methods that learn from data.
        train_steps: optimizer steps (LLM methods) or environment steps (SB3) for training.
        extra: method-specific knobs from the profile (batch size, K alternatives, ...).
    """

    eval_tasks: int
    train_episodes: int
    train_steps: int
    extra: dict[str, Any]


class MethodFn(Protocol):
    """The signature of a method."""

    def __call__(
        self,
        *,
        env_id: str,
        seed: int,
        budget: Budget,
        run_dir: Path,
        device: str,
        model: str,
        **kwargs: Any,
    ) -> list[EpisodeRecord]:
        """Run the cell; return the test and ood episode records."""
        ...


@dataclass(frozen=True)
class Method:
    """A registered method: its function and what it needs (``kind``: control, sb3, llm)."""

    name: str
    fn: MethodFn
    kind: str
    description: str


METHODS: dict[str, Method] = {}


def register_method(name: str, kind: str, description: str = "") -> Callable[[MethodFn], MethodFn]:
    """Register ``fn`` under ``name`` (decorator)."""

    def deco(fn: MethodFn) -> MethodFn:
        METHODS[name] = Method(
            name, fn, kind, description or (fn.__doc__ or "").strip().split("\n")[0]
        )
        return fn

    return deco


def get_method(name: str) -> Method:
    """Return the method ``name``, loading the built-in method modules first."""
    load_builtin_methods()
    if name not in METHODS:
        raise ValueError(f"Expect a method in {sorted(METHODS)}, actually: {name!r}")
    return METHODS[name]


BUILTIN_MODULES = (
    "earlyexp.harness.baselines",  # random, expert, ppo, dqn
    "earlyexp.agents.methods",  # prompt, il, and the learning methods
)


def load_builtin_methods() -> None:
    """Import the modules that register methods; a module missing its extra is skipped."""
    import importlib

    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and (e.name == mod or mod.startswith(e.name + ".")):
                continue  # that module is not written yet
            raise
