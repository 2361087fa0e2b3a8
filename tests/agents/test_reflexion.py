"""Reflexion: the memory holds the last reflections, trial k sees trials < k, success@k, a cell."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from earlyexp.agents.evaluation import as_policy
from earlyexp.agents.methods.reflexion import (
    ReflexionConfig,
    TaskTrials,
    attempt_request,
    play_trials,
    success_at,
)
from earlyexp.agents.policy import Completion
from earlyexp.agents.prompting import CONTEXT_TITLES, PromptConfig, format_action
from earlyexp.agents.reflect import GroundedReflector, Reflection
from earlyexp.agents.rollout import RolloutEngine

FL = "EarlyExp/FrozenLake-v0"


class Numbered:
    """Writes "R<n>" for its n-th request, and keeps the requests."""

    name = "numbered"

    def __init__(self) -> None:
        self.requests: list = []

    def reflect(self, requests):
        self.requests += requests
        return [Reflection(f"R{len(self.requests) - len(requests) + i + 1}", self.name)
                for i in range(len(requests))]  # fmt: skip


def test_memory_holds_the_last_3_and_trial_k_sees_only_trials_before_k():
    engine = RolloutEngine(as_policy(lambda obs, info: "Jump"), PromptConfig(window=0))
    tasks = [TaskTrials("test", 0, 0)]
    reflector = Numbered()
    counts = play_trials(engine, FL, tasks, k=6, memory=3, reflector=reflector, num_envs=2)
    trials = tasks[0].trials
    assert len(trials) == 6 and counts.written == 5  # no reflection after the last trial
    for k, traj in enumerate(trials, start=1):
        seen = [b.text for b in traj.context]
        assert seen == [f"(trial {j}) R{j}" for j in range(max(1, k - 3), k)], (k, seen)
        assert all(b.kind == "reflection" for b in traj.context) and traj.label == f"trial{k}"
    assert len(tasks[0].memory) == 3
    # the reflection on trial j is about trial j: its steps are that trial's
    assert [len(r.steps) for r in reflector.requests] == [len(t.steps) for t in trials[:5]]


def test_a_repeated_reflection_replaces_its_copy_in_the_memory():
    t = TaskTrials("test", 0, 0)
    for text in ["A", "B", "A", "A"]:
        t.trials.append(None)  # only the count matters here
        t.remember(text, 3)
        assert len(t.memory) == len(set(t.memory))
    assert t.memory == ["(trial 2) B", "(trial 4) A"]


class ExpertAfterReflection:
    """Fails (an invalid action) until a reflection is in its context, then plays the expert."""

    tokenizer = None
    needs_expert = True

    def complete(self, prompts, sampling):
        title = CONTEXT_TITLES["reflection"]
        return [Completion(format_action(p.expert_action if title in p.messages[0]["content"]
                                         else "Jump")) for p in prompts]  # fmt: skip


def test_a_solved_task_stops_and_success_at_k_counts_within_j_trials():
    engine = RolloutEngine(ExpertAfterReflection(), PromptConfig(window=0))
    tasks = [TaskTrials("test", i, 0) for i in range(3)]
    play_trials(engine, FL, tasks, k=4, memory=3, reflector=GroundedReflector(), num_envs=3)
    assert [len(t.trials) for t in tasks] == [2, 2, 2]
    assert success_at(tasks, 4) == [0.0, 1.0, 1.0, 1.0]
    memory = tasks[0].trials[1].context[0].text
    assert memory.startswith("(trial 1) My last attempt scored 0.00") and "Strategy:" in memory


def test_attempt_request_reads_the_task_steps_and_rubric():
    engine = RolloutEngine(as_policy(lambda obs, info: "Jump"), PromptConfig(window=0))
    (traj,) = engine.run(FL, [TaskTrials("test", 0, 0).next_spec()], 1)
    env = gym.make(FL)
    _, info = env.reset(seed=0, options={"split": "test", "task": 0})
    req = attempt_request(traj)
    assert req.kind == "attempt" and req.task == info["task"] and req.rubric == traj.rubric
    assert [s.action for s in req.steps] == ["Jump"] * len(traj.steps)
    assert not any(s.valid for s in req.steps) and req.score == 0.0
    assert attempt_request(traj, "revision", rubric=False).rubric == []


def test_config_errors():
    with pytest.raises(ValueError, match="k >= 1"):
        ReflexionConfig(k=0)
    with pytest.raises(ValueError, match="reflector"):
        ReflexionConfig(reflector="oracle")


def test_reflexion_cell_writes_success_at_k_and_the_report_section(
    tiny_path, tmp_path, monkeypatch
):
    from earlyexp.harness.bench import BenchConfig, run_bench

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    out = tmp_path / "run"
    run_bench(BenchConfig(profile="smoke", envs=[FL], methods=["reflexion"], init=["il"],
                          set=["reflexion.k=3"], model="tiny:test", device="cpu",
                          out=str(out)))  # fmt: skip
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert all(c["status"] == "done" for c in cells.values()), [
        c.get("trace") for c in cells.values()
    ]
    name = "reflexion+il__EarlyExp_FrozenLake-v0__s0"
    data = json.loads((out / "cells" / name / "success_at_k.json").read_text())
    assert data["provider"] == "grounded" and set(data["splits"]) == {"test", "ood"}
    for s in data["splits"].values():
        assert s["n"] == 3 and len(s["success"]) == 3 and s["success"] == sorted(s["success"])
    episodes = cells[name]["episodes"]
    assert len(episodes) == 6  # one record per task: its final trial (success@k)
    test_wins = sum(e["success"] for e in episodes if e["split"] == "test")
    assert test_wins == round(3 * data["splits"]["test"]["success"][-1])
    table = (out / "table.md").read_text()
    assert "## Reflexion success@1..k" in table and "| @1 | @2 | @3 |" in table
    assert "| FrozenLake-v0 | reflexion+il | test | 3 |" in table
    assert table.index("## Reflexion") < table.index("Cells:")
