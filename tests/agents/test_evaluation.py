"""The public evaluation call and episodes that carry context (a reflection, a snapshot)."""

from __future__ import annotations

import json

import pytest

from earlyexp.agents import ContextBlock, EpisodeSpec, RolloutEngine, evaluate
from earlyexp.agents.backends.scripted import ExpertPolicy, RandomPolicy
from earlyexp.agents.rollout import read_jsonl, write_jsonl

FL = "EarlyExp/FrozenLake-v0"


def test_evaluate_takes_a_function_or_a_policy():
    seen = []

    def act(obs, info):
        seen.append((obs, info["task"]))
        return "Right"

    result = evaluate(FL, act, split="test", n=5)
    assert len(result.records) == 5 and {r.split for r in result.records} == {"test"}
    assert seen and all(isinstance(o, str) and t for o, t in seen)
    expert = evaluate(FL, ExpertPolicy(), split="ood", n=5)
    assert expert.success_rate == 1.0 and expert.mean_score == 1.0
    with pytest.raises(ValueError, match="Policy or a function"):
        evaluate(FL, 42, n=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="panel split"):
        evaluate(FL, act, split="train", n=1)


def test_evaluate_caps_n_at_the_panel_size():
    import earlyexp.envs  # noqa: F401
    from earlyexp.agents.evaluation import panel_size

    assert len(evaluate(FL, RandomPolicy(0), n=10_000, num_envs=64).records) == panel_size(
        FL, "test"
    )


def test_an_episode_can_replace_the_system_prompt_and_carry_context(tmp_path):
    reflection = ContextBlock("reflection", "Holes are C. Go around them.")
    specs = [
        EpisodeSpec("test", 0, 0),
        EpisodeSpec("test", 0, 0, context=(reflection,), label="attempt2"),
        EpisodeSpec("test", 0, 0, system="You move a letter A.", context=(reflection,)),
    ]
    plain, ctx, replaced = RolloutEngine(ExpertPolicy()).run(FL, specs, 2)
    assert ctx.system.startswith(plain.system)
    assert ctx.system.endswith("Reflection on your previous attempt:\nHoles are C. Go around them.")
    assert (
        replaced.system.startswith("You move a letter A.\n\n") and "Holes are C" in replaced.system
    )
    assert [s.action for s in ctx.steps] == [s.action for s in plain.steps]
    path = write_jsonl([ctx], tmp_path / "t.jsonl")
    line = json.loads(path.read_text())
    assert line["context"] == [{"kind": "reflection", "text": reflection.text}]
    assert line["label"] == "attempt2"
    (back,) = read_jsonl(path)
    assert back.context == [reflection] and back.label == "attempt2"
    with pytest.raises(ValueError, match="context kind"):
        ContextBlock("wish", "x")


def test_an_episode_can_start_from_a_snapshot():
    (full,) = RolloutEngine(ExpertPolicy()).run(FL, [EpisodeSpec("test", 3, 0)], snapshots=True)
    assert len(full.snapshots) == len(full.steps) + 1
    k = 2
    (rest,) = RolloutEngine(ExpertPolicy()).run(
        FL, [EpisodeSpec("test", 3, 0, snapshot=full.snapshots[k])]
    )
    assert rest.steps[0].user == full.steps[k].user  # the same state, not the task's start
    assert [s.action for s in rest.steps] == [s.action for s in full.steps[k:]]
    assert rest.success
