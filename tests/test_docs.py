"""The README and the env cards stay true to the code."""

import re
from pathlib import Path

import gymnasium as gym
import pytest

from earlyexp.envs import ENTRIES, env_ids
from earlyexp.harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CARD_SECTIONS = (
    "## Description",
    "## Observation",
    "## Action",
    "## Reward",
    "## Episode end",
    "## Splits",
    "## Arguments",
    "## Version history",
)


@pytest.mark.parametrize("env_id", env_ids())
def test_every_env_is_in_the_readme_table(env_id):
    assert re.search(rf"^\| `{re.escape(env_id)}` \|", README, re.M), env_id


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_every_env_class_opens_with_a_full_env_card(entry):
    module, cls = entry.entry_point.split(":")
    import importlib

    doc = getattr(importlib.import_module(module), cls).__doc__ or ""
    missing = [s for s in CARD_SECTIONS if s not in doc]
    assert missing == [], f"{entry.id} env card lacks {missing}"
    assert "gym.make(" in doc


def test_readme_commands_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make ([\w-]+)", README, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_cli_subcommands_exist():
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for cmd in re.findall(r"^earlyexp (\w+)", README, re.M):
        assert cmd in sub, cmd


def test_readme_quick_start_runs():
    code = README.split("## Quick start")[1].split("```python")[1].split("```")[0]
    scope: dict = {}
    exec(compile(code, "README quick start", "exec"), scope)  # our own README, not agent input
    assert scope["info"]["success"] is True
    assert isinstance(scope["env"], gym.Env)


def _block_after(marker: str) -> str:
    return README.split(marker)[1].split("```python")[1].split("```")[0]


def test_readme_evaluate_recipe_runs():
    scope: dict = {}
    exec(compile(_block_after("**Evaluate your own policy.**"), "README evaluate", "exec"), scope)
    assert len(scope["result"].records) == 50


def test_readme_new_method_recipe_registers_a_method(monkeypatch):
    from earlyexp.agents import methods

    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))
    scope: dict = {}
    exec(compile(_block_after("**A new method in one module.**"), "README method", "exec"), scope)
    m = methods.get_method("mine")
    assert m.config is scope["MineConfig"] and m.run is scope["run"]
    assert m.config().temperature == 0.7
