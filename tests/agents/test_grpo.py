"""GRPO: advantages, zero gradients where there must be none, the first update, and learning."""

from __future__ import annotations

import json

import pytest
import torch

from earlyexp.agents.chat import Segment
from earlyexp.agents.methods.grpo import (
    GRPOConfig,
    PolicyUpdater,
    advantages,
    group_rewards,
    pick_mode,
)
from earlyexp.agents.policy import Prompt, SamplingParams
from earlyexp.agents.rollout import Step, Trajectory
from earlyexp.agents.train.losses import clipped_pg

FL = "EarlyExp/FrozenLake-v0"


def test_advantages_by_hand():
    r = [1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]
    A = advantages(r, 4, scale_std=True)
    std = (0.75**2 + 3 * 0.25**2) / 3  # unbiased variance of group 1
    assert A[0] == pytest.approx(0.75 / (std**0.5 + 1e-6)) and A[1] == pytest.approx(
        -0.25 / (std**0.5 + 1e-6)
    )
    assert A[4:] == [0.0] * 4  # a uniform group gives no gradient
    assert advantages(r, 4, scale_std=False)[:2] == [0.75, -0.25]
    traj = Trajectory(FL, "train", 0, 0, "s", score=1.0)
    traj.steps = [Step("u", "c", "a", False, 0.0, "")] * 2
    assert group_rewards([traj], 0.1) == [pytest.approx(0.8)]


def test_env_tokens_and_zero_advantage_rows_get_exactly_zero_gradient():
    logp = torch.randn(3, 6, requires_grad=True)  # (B, T-1)
    old = logp.detach() + 0.05 * torch.randn(3, 6)
    mask = torch.tensor([[0, 1, 1, 0, 1, 0]] * 3, dtype=torch.bool)  # env tokens: 0
    A = torch.tensor([1.0, 0.0, -0.5])
    loss, _ = clipped_pg(logp, old, A, mask)
    loss.backward()
    assert torch.all(logp.grad[~mask] == 0)  # env tokens
    assert torch.all(logp.grad[1] == 0)  # the zero-advantage row
    assert torch.any(logp.grad[0][mask[0]] != 0) and torch.any(logp.grad[2][mask[2]] != 0)


def test_pick_mode():
    t = Trajectory(FL, "train", 0, 0, "s")
    t.steps = [Step("u", "c", "a", True, 0.0, "")] * 3
    assert pick_mode("auto", [t], window=2) == "episode"
    assert pick_mode("auto", [t], window=0) == "turn"
    assert pick_mode("turn", [t], window=9) == "turn"
    with pytest.raises(ValueError, match="loss_agg"):
        GRPOConfig(loss_agg="sum")


def _bandit_rollouts(policy, n, seed):
    """One-turn rollouts on a fixed prompt; reward 1 when the first token is in TARGET."""
    enc = policy.encoder
    system, user = "Pick.", "Observation:\nAB"
    sys_seg, user_seg = enc.system(system), enc.user(system, user)
    prompt = Prompt([{"role": "system", "content": system}, {"role": "user", "content": user}],
                    token_ids=sys_seg.ids + user_seg.ids)  # fmt: skip
    comps = policy.complete([prompt] * n, SamplingParams(max_new_tokens=3, stop=(), seed=seed))
    trajs = []
    for c in comps:
        t = Trajectory(FL, "train", 0, 0, system)
        t.segments = [sys_seg, user_seg, Segment("assistant", list(c.token_ids), True)]
        t.steps = [Step(user, c.text, "x", True, 0.0, "", context=[0, 1], reply=2,
                        logprobs=list(c.logprobs))]  # fmt: skip
        t.score = float(c.token_ids[0] in TARGET)
        trajs.append(t)
    return trajs


TARGET: set[int] = set()


def test_grpo_update_learns_a_bandit_and_starts_with_kl_0_and_ratio_1(tiny_path, tmp_path):
    from earlyexp.agents.backends.hf import HFPolicy, load_model

    net, tok = load_model(tiny_path, "cpu", training=True)
    net.eval()
    policy = HFPolicy(net, tok, batch_size=64)
    first = [t.segments[2].ids[0] for t in _bandit_rollouts(policy, 256, 123)]
    counts = {i: first.count(i) for i in set(first)}
    TARGET.clear()
    for i in sorted(counts, key=counts.get, reverse=True):  # the likeliest ~25% of first tokens
        if sum(counts[j] for j in TARGET) >= 0.25 * len(first):
            break
        TARGET.add(i)
    config = GRPOConfig(iterations=12, G=8, lr=3e-3, beta=0.001, updates_per_iter=1, minibatch=64)
    updater = PolicyUpdater(net, tok, config, seed=0, state_dir=tmp_path / "state")
    rewards = []
    for it in range(config.iterations):
        trajs = _bandit_rollouts(policy, 64, it)
        r = [t.score for t in trajs]
        rewards.append(sum(r) / len(r))
        m = updater.update(trajs, advantages(r, config.G, True), "turn")
        if it == 0:
            assert m["kl"] == pytest.approx(0.0, abs=1e-7) and m["clip_frac"] == 0.0
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.25, rewards


def test_grpo_cell_from_an_il_checkpoint_writes_its_learning_curve(
    tiny_path, tmp_path, monkeypatch
):
    from earlyexp.harness.bench import BenchConfig, run_bench

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    out = tmp_path / "run"
    sets = ["grpo.iterations=2", "grpo.tasks_per_iter=2", "grpo.G=2", "grpo.eval_every=1",
            "grpo.eval_subset=2"]  # fmt: skip
    run_bench(BenchConfig(profile="smoke", envs=[FL], methods=["grpo"], init=["il"], set=sets,
                          model="tiny:test", device="cpu", out=str(out)))  # fmt: skip
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert set(cells) == {"il__EarlyExp_FrozenLake-v0__s0", "grpo+il__EarlyExp_FrozenLake-v0__s0"}
    assert all(c["status"] == "done" for c in cells.values()), [
        c.get("trace") for c in cells.values()
    ]
    curve = json.loads(
        (out / "cells" / "grpo+il__EarlyExp_FrozenLake-v0__s0" / "curve.json").read_text()
    )
    assert [e["iteration"] for e in curve["eval"]] == [0, 1, 2]
    assert len(curve["train"]) == 2 and curve["train"][0]["samples"] == 4
    assert "grpo+il" in (out / "table.md").read_text()
    assert (out / "plots" / "curves.png").stat().st_size > 1000  # every RL row in one figure
    kept = json.loads((out / "results.json").read_text())["cell_files"]
    assert kept["grpo+il__EarlyExp_FrozenLake-v0__s0"]["curve"] == curve
