"""Early Experience: branching at expert states, IWM and SR data, the filters, the budgets."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import earlyexp.envs as envs
from earlyexp.agents.branching import (
    BranchConfig,
    BranchStats,
    branch,
    choose_alternatives,
    collect_expert_states,
)
from earlyexp.agents.data import collect_expert
from earlyexp.agents.early_experience import (
    WORLD_MODEL_SYSTEM,
    ExportConfig,
    export,
    iwm_records,
    sr_filter,
    sr_records,
    sr_request,
)
from earlyexp.agents.prompting import PromptConfig, parse_action
from earlyexp.agents.reflect import GroundedReflector, Reflection
from earlyexp.agents.rollout import write_jsonl
from earlyexp.envs.core.base import text_env

FL, SOKO = "EarlyExp/FrozenLake-v0", "EarlyExp/Sokoban-v0"
PROMPT = PromptConfig(window=0, action_help=False)


def test_branching_leaves_the_expert_trajectories_as_played_without_it(tmp_path):
    plain = collect_expert(SOKO, 6, 0, PROMPT)
    trajs = collect_expert_states(SOKO, 6, 0, PROMPT)
    branch(SOKO, trajs, BranchConfig(K=3, policy_share=0.0, invalid=1), 0, 0)
    a = write_jsonl(plain, tmp_path / "a.jsonl").read_bytes()
    b = write_jsonl(trajs, tmp_path / "b.jsonl").read_bytes()
    assert a == b


def test_branching_gives_k_per_state_none_equal_to_the_expert_action():
    trajs = collect_expert_states(SOKO, 8, 1, PROMPT)
    states, stats = branch(SOKO, trajs, BranchConfig(K=3, policy_share=0.0), 0, 1)
    n = sum(len(t.steps) for t in trajs)
    assert stats.states == n == len(states) + 0  # no expert branch desynchronized
    assert stats.samples == 3 * n - stats.mismatches - stats.shortfall
    for s in states:
        acts = [o.action for o in s.alternatives]
        assert s.expert.action not in acts and len(set(acts)) == len(acts)
        assert s.expert.action == s.traj.steps[s.t].action


def test_choose_alternatives_dedupes_refills_and_counts():
    import numpy as np

    stats = BranchStats()
    cfg = BranchConfig(K=4, policy_share=0.5, invalid=1)
    alts = choose_alternatives(
        ["Up", "Up", "", "Down", "Left"], ["Up", "Down", "Left", "Right"], "Down", cfg,
        np.random.default_rng(0), stats,
    )  # fmt: skip
    assert len(alts) == 4 and "Down" not in alts and len(set(alts)) == 4
    assert alts[0] == "Up" and stats.duplicates == 1 and stats.empty_or_expert >= 1
    assert stats.invalid_added == 1 and alts[-1] not in ("Up", "Down", "Left", "Right")


def test_each_iwm_target_is_the_summary_of_the_recorded_next_state():
    trajs = collect_expert_states(FL, 4, 2, PROMPT)
    states, _ = branch(FL, trajs, BranchConfig(K=3, policy_share=0.0, invalid=1), 0, 2)
    env = gym.make(FL)
    raw = text_env(env)
    records = iwm_records(states)
    assert len(records) == sum(1 + len(s.alternatives) for s in states)
    i = 0
    for s in states:
        for o in [s.expert, *s.alternatives]:
            raw.restore(s.traj.snapshots[s.t])
            obs, _, _, _, info = raw.step(o.action)
            assert o.obs == obs and o.summary == raw.summarize(obs, info, previous=None)
            msgs = records[i]["messages"]
            assert msgs[0]["content"] == WORLD_MODEL_SYSTEM
            assert (
                msgs[1]["content"].endswith(f"Action: {o.action}") and s.user in msgs[1]["content"]
            )
            assert msgs[2]["content"] == f"Observation:\n{o.summary}"
            i += 1
    env.close()


def _state():
    trajs = collect_expert_states(FL, 2, 0, PROMPT)
    states, _ = branch(FL, trajs, BranchConfig(K=3, policy_share=0.0), 0, 0)
    return states[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The expert would go {a} here.", "label leak"),
        ("Action 2 is what I take.", "label leak"),
        ("{a} is the best move, so I take it.", "label leak"),
        ("{a} is the correct move.", "label leak"),
        ("I pick {a}. {outcome}.", "narrates the outcome as seen"),
        ("x" * 500, "over length"),
    ],
)
def test_sr_filters_drop_crafted_texts(text, reason):
    s = _state()
    req = sr_request(s)
    r = Reflection(text.format(a=s.expert.action, outcome=req.outcome), "grounded")
    assert sr_filter(r, req, 400) == reason


def test_sr_filters_keep_a_clean_text_and_drop_a_wrong_conclusion():
    s = _state()
    req = sr_request(s)
    clean = GroundedReflector().one(req)
    assert sr_filter(clean, req, 400) is None
    other = next(o.action for o in s.alternatives)
    assert sr_filter(Reflection("I go there.", "policy", action=other), req, 400) == (
        "concludes another action"
    )
    repeated = Reflection("", "policy", ok=False, error="repeated sentence: 'I go'")
    assert sr_filter(repeated, req, 400) == "failed"


def test_sr_records_end_with_the_expert_action_and_are_conditioned_on_the_state():
    trajs = collect_expert_states(FL, 3, 0, PROMPT)
    states, _ = branch(FL, trajs, BranchConfig(K=2, policy_share=0.0), 0, 0)
    records, counts = sr_records(states, GroundedReflector(max_chars=300), 400)
    assert counts["kept"] == len(records) == len(states)
    for rec, s in zip(records, states, strict=True):
        msgs = rec["messages"]
        assert msgs[:-1] == s.messages and msgs[-2]["role"] == "user"
        assert parse_action(msgs[-1]["content"]) == s.expert.action
        assert rec["provider"] == "grounded"


def test_iwm_total_steps_equal_il_budget():
    from earlyexp.agents.methods.iwm import IWMConfig, iwm_steps

    cfg = IWMConfig(steps=100, sft_batch_size=16)
    assert iwm_steps(320, cfg) == 20  # one epoch
    assert iwm_steps(10_000, cfg) == 50  # capped at max_iwm_share
    assert iwm_steps(10_000, IWMConfig(steps=3, max_iwm_share=1.0)) == 2  # IL keeps a step


def test_iwm_and_sr_cells_log_their_budgets_and_provider(tiny_path, tmp_path, monkeypatch):
    from earlyexp.agents.methods import get_method
    from earlyexp.harness.profiles import get_profile

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    for name in ("iwm", "sr"):
        m, out = get_method(name), tmp_path / name
        out.mkdir()
        config = get_profile("smoke").config_for(m, FL, {"steps": 6})
        m.run(env_id=FL, seed=0, config=config, run_dir=out, device="cpu", model="tiny:test")
        log = json.loads((out / "train_log.json").read_text())
        if name == "iwm":
            assert log["iwm_steps"] + log["il_steps"] == 6 and log["iwm_steps"] >= 1
            assert (out / "iwm_sft.jsonl").exists() and (out / "expert_sft.jsonl").exists()
        else:
            stats = json.loads((out / "sr_stats.json").read_text())
            assert stats["provider"] == "grounded" and stats["filters"]["kept"] >= 1
            assert stats["reasoning_tokens"] > 8
            assert stats["examples"] - stats["expert_examples"] == stats["filters"]["kept"]
            assert stats["budget"] == "epochs"
            assert stats["steps"] == round(6 * stats["examples"] / stats["expert_examples"]) > 6
            assert (out / "reflection_sft.jsonl").exists()


def test_alternatives_come_from_the_proposer_checkpoint_when_set(tiny_path, tmp_path, monkeypatch):
    import earlyexp.agents.branching as branching
    import earlyexp.agents.methods.iwm as iwm
    from earlyexp.agents.methods import get_method
    from earlyexp.harness.profiles import get_profile

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    seen, trained, real, sft = [], [], branching.branch, iwm.sft_stage
    monkeypatch.setattr(branching, "branch", lambda *a, **k: seen.append(a[5]) or real(*a, **k))
    monkeypatch.setattr(iwm, "sft_stage", lambda net, *a: trained.append(net) or sft(net, *a))
    m = get_method("iwm")
    for proposer in ("", str(tiny_path)):
        out = tmp_path / (proposer and "proposer" or "initial")
        out.mkdir()
        sets = {"steps": 2, "proposer": proposer}
        config = get_profile("smoke").config_for(m, FL, sets)
        m.run(env_id=FL, seed=0, config=config, run_dir=out, device="cpu", model="tiny:test")
        log = json.loads((out / "branch_stats.json").read_text())
        assert log["proposer"] == (proposer or "initial")
        assert 0 <= log["rejected"] <= log["samples"] and log["proposals"] > 0
    initial, proposer = seen
    assert initial.model is trained[0]  # the paper: the initial model proposes
    assert proposer.model is not trained[-1]  # the folder's own weights propose


def test_sr_reasoning_budget_fits_the_longest_kept_reply_unless_set():
    from earlyexp.agents.methods.sr import SRConfig, reasoning_budget

    class Chars:
        def encode(self, text):
            return list(text)

    sr = [{"messages": [{"role": "user", "content": "s"}, {"role": "assistant", "content": t}]}
          for t in ("short\nmove[left]", "a much longer reflection\nmove[down]")]  # fmt: skip
    assert reasoning_budget(SRConfig(), sr, Chars()) == len(sr[1]["messages"][1]["content"]) + 8
    assert reasoning_budget(SRConfig(reasoning_tokens=5), sr, Chars()) == 5
    assert reasoning_budget(SRConfig(), [], Chars()) == 8


def test_sr_mixes_expert_data_unless_expert_mix_is_off():
    from earlyexp.agents.methods.sr import SRConfig, training_data

    sr = [{"messages": [{"role": "assistant", "content": f"I think.\n<action>{a}</action>"}]}
          for a in ("left", "down")]  # fmt: skip
    expert = [{"messages": [{"role": "assistant", "content": "<action>up</action>"}]}]
    assert training_data(SRConfig(), sr, expert) == [r["messages"] for r in sr + expert]
    assert training_data(SRConfig(expert_mix=False), sr, expert) == [r["messages"] for r in sr]
    assert training_data(SRConfig(expert_mix=False), [], expert) == [expert[0]["messages"]]


def test_sr_trains_the_same_epochs_as_il_unless_its_budget_is_steps():
    from earlyexp.agents.methods.sr import SRConfig, sr_steps

    assert sr_steps(SRConfig(steps=600), 2000, 1000) == 1200  # mixed 1:1: twice IL's steps
    assert sr_steps(SRConfig(steps=600), 1500, 1000) == 900
    assert sr_steps(SRConfig(steps=600, budget="steps"), 2000, 1000) == 600
    assert sr_steps(SRConfig(steps=600), 10, 0) == 600
    with pytest.raises(ValueError, match="Expect budget in"):
        SRConfig(budget="tokens")


def test_sr_warns_when_its_filters_keep_no_reflection(tiny_path, tmp_path, monkeypatch):
    from earlyexp.agents.methods import get_method
    from earlyexp.harness.profiles import get_profile

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    m = get_method("sr")
    config = get_profile("smoke").config_for(m, FL, {"steps": 2, "max_reflection_chars": 1})
    with pytest.warns(RuntimeWarning, match="kept none of the .* max_reflection_chars"):
        m.run(env_id=FL, seed=0, config=config, run_dir=tmp_path, device="cpu", model="tiny:test")
    stats = json.loads((tmp_path / "sr_stats.json").read_text())
    assert stats["filters"]["kept"] == 0 and stats["filters"]["over length"] >= 1
    assert (tmp_path / "reflection_sft.jsonl").read_text() == ""


def _every_env():
    for env_id in envs.env_ids():
        marks = [pytest.mark.browser] if "browser" in envs.entry(env_id).tags else []
        yield pytest.param(env_id, marks=marks, id=env_id)


@pytest.mark.parametrize("env_id", list(_every_env()))
def test_every_env_produces_iwm_and_sr_data(env_id, tmp_path):
    episodes = 2 if "browser" in envs.entry(env_id).tags else 3
    cfg = ExportConfig(env=env_id, episodes=episodes, K=2, model="none", out=str(tmp_path))
    summary = export(cfg)
    assert summary["branch"]["mismatches"] == 0
    for name in ("expert_sft.jsonl", "iwm_sft.jsonl", "reflection_sft.jsonl"):
        lines = (tmp_path / name).read_text().splitlines()
        assert lines, name
        for line in lines:
            roles = [m["role"] for m in json.loads(line)["messages"]]
            assert roles[0] == "system" and roles[-1] == "assistant"
    assert summary["iwm"] > summary["sr"]["kept"] >= 1 and summary["reflector"] == "grounded"
