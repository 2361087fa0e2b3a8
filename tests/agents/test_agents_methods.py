"""The method registry: every registered method runs with the smoke profile on FrozenLake.

One registration earns a method this test.
"""

from __future__ import annotations

import pytest

from earlyexp.agents.methods import METHODS, get_method, load_builtin_methods
from earlyexp.agents.methods.common import LLMConfig, prompt_config
from earlyexp.agents.models import parse_model, resolve_model

FL = "EarlyExp/FrozenLake-v0"
load_builtin_methods()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_the_smoke_profile_and_returns_test_and_ood_records(
    name, tiny_path, tmp_path, monkeypatch
):
    from earlyexp.harness.profiles import get_profile

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))  # reuse the built model
    method = get_method(name)
    if method.kind == "sb3":
        pytest.importorskip("stable_baselines3")
    config = get_profile("smoke").config_for(method, FL)
    records = method.run(
        env_id=FL, seed=0, config=config, run_dir=tmp_path, device="cpu", model="tiny:test"
    )
    assert sorted({r.split for r in records}) == ["ood", "test"]
    assert len(records) == 2 * config.eval_tasks
    assert all(r.steps >= 1 for r in records)


def test_prompt_config_turns_action_help_off_only_for_tiny():
    assert prompt_config(LLMConfig(), "tiny").action_help is False
    assert prompt_config(LLMConfig(), "/models/qwen").action_help is True
    assert prompt_config(LLMConfig(action_help=True), "tiny").action_help is True


def test_registry_kinds_and_third_party_methods():
    assert get_method("il").trains and not get_method("prompt").trains
    assert get_method("ppo").requires == ("control",)
    ext = get_method("earlyexp.agents.methods.scripted:run_expert")
    assert ext is METHODS["expert"]  # a registered function keeps its registration
    with pytest.raises(ValueError, match="module:function"):
        get_method("telepathy")
    with pytest.raises(ValueError, match="importable"):
        get_method("no_such_module_xyz:run")


def test_model_specs():
    spec = parse_model("http://127.0.0.1:8000/v1#qwen")
    assert spec.is_remote and spec.url == "http://127.0.0.1:8000/v1" and spec.name == "qwen"
    with pytest.raises(ValueError, match="#MODEL"):
        parse_model("http://127.0.0.1:8000/v1")
    assert parse_model("tiny").is_tiny


def test_resolve_model_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        resolve_model(str(tmp_path))
