"""Method knobs: defaults, registry-tag defaults, budget.extra on top; model resolution."""

from __future__ import annotations

import pytest

from earlyexp.agents.methods import LLMKnobs, prompt_config
from earlyexp.agents.models import resolve_model
from earlyexp.harness.methods import get_method


def test_knobs_layer_defaults_tags_and_extra():
    plain = LLMKnobs.from_extra({})
    assert plain == LLMKnobs()
    control = LLMKnobs.from_extra({"lr": 0.01, "not_ours": 1}, "EarlyExp/FrozenLake-v0")
    assert (control.window, control.max_new_tokens, control.lr) == (0, 8, 0.01)
    assert LLMKnobs.from_extra({"window": 3}, "EarlyExp/Sokoban-v0").window == 3


def test_prompt_config_turns_action_help_off_only_for_tiny():
    assert prompt_config(LLMKnobs(), "tiny").action_help is False
    assert prompt_config(LLMKnobs(), "/models/qwen").action_help is True
    assert prompt_config(LLMKnobs(action_help=True), "tiny").action_help is True


def test_methods_are_registered_as_llm():
    for name in ("prompt", "il"):
        assert get_method(name).kind == "llm"


def test_resolve_model_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        resolve_model(str(tmp_path))
