"""HeRL: who is revised, the bonus, the replacement, the shaped loss's gradient, and a cell."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch

from earlyexp.agents.methods.grpo import advantages
from earlyexp.agents.methods.herl import (
    HeRLConfig,
    HeRLUpdater,
    Revision,
    bonus,
    herl_iteration,
    hindsight_batch,
    revision_candidates,
)
from earlyexp.agents.policy import Completion
from earlyexp.agents.prompting import CONTEXT_TITLES, ContextBlock, PromptConfig, format_action
from earlyexp.agents.reflect import GroundedReflector
from earlyexp.agents.rollout import Trajectory
from earlyexp.agents.train.batch import TrainBatch
from earlyexp.agents.train.losses import IGNORE

FL = "EarlyExp/FrozenLake-v0"


def _traj(score: float, met: int = 0, items: int = 2) -> Trajectory:
    rubric = [{"criterion": f"c{i}", "met": i < met} for i in range(items)]
    return Trajectory(FL, "train", None, 0, "s", score=score, success=score >= 1, rubric=rubric)


def test_only_groups_without_a_full_score_are_revised_best_failures_most_met_first():
    group1 = [_traj(1.0, 2), _traj(0.0), _traj(0.0)]  # a member met the whole rubric
    group2 = [_traj(0.5, 1), _traj(0.0), _traj(0.5, 0), _traj(0.5, 1)]
    trajs = group1 + [_traj(0.0)] + group2  # groups of 4: [0..3], [4..7]
    assert revision_candidates(trajs, 4, tau=1.0, limit=8) == [4, 7, 6]
    assert revision_candidates(trajs, 4, tau=1.0, limit=2) == [4, 7]
    assert revision_candidates(trajs, 4, tau=0.5, limit=8) == []  # tau: the threshold
    assert revision_candidates([_traj(1.0)] * 4, 4, 1.0, 8) == []


def test_bonus_formula():
    assert bonus(0.2, 1.0, 0.05) == pytest.approx(0.2 + 0.05 * 0.8)
    assert bonus(0.6, 0.2, 0.05) == pytest.approx(0.6 - 0.05 * 0.4)  # a worse revision lowers r
    assert bonus(0.3, 1.0, 0.0) == 0.3  # the no-bonus ablation
    r = [0.0, 0.0, 0.5, 0.0]
    revs = [Revision(0, ContextBlock("guide", "g"), _traj(0.0), 0.0),
            Revision(2, ContextBlock("guide", "g"), _traj(0.9), 0.9)]  # fmt: skip
    batch = hindsight_batch([_traj(x) for x in r], r, revs, 4, 0.05, random.Random(0))
    assert batch.r[0] == 0.0 and batch.bonus_applied == 1  # r_revised == r: no change
    assert batch.replaced == 1 and 0.9 in batch.r


def test_the_best_revision_replaces_one_random_member_and_keeps_the_group_size():
    G, r = 4, [0.0, 0.2, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0]
    trajs = [_traj(x) for x in r]
    winner, tie = _traj(1.0), _traj(0.5)
    revs = [Revision(1, ContextBlock("guide", "a"), _traj(0.6), 0.6),
            Revision(2, ContextBlock("guide", "b"), winner, 1.0),
            Revision(4, ContextBlock("guide", "c"), tie, 0.5)]  # fmt: skip
    batch = hindsight_batch(trajs, r, revs, G, 0.05, random.Random(7))
    assert len(batch.trajs) == len(batch.r) == len(batch.off_policy) == len(trajs)
    slot = random.Random(7).randrange(G)  # seeded: the same slot each time
    assert batch.trajs[slot] is winner and batch.r[slot] == 1.0 and batch.off_policy[slot]
    assert sum(batch.off_policy) == 1 and not any(t is tie for t in batch.trajs)
    assert all(a is b for a, b in zip(batch.trajs[4:], trajs[4:], strict=True))  # 0.5 ties 0.5
    kept = [t is x for t, x in zip(batch.trajs, trajs, strict=True)]
    assert batch.replaced == 1 and kept.count(False) == 1
    A = advantages(batch.r, G, scale_std=True)  # computed in the group after replacement
    assert A[slot] == max(A[:G]) > 0


class OneParam(torch.nn.Module):
    """A 1-parameter LM over a 2-token vocabulary: logits (theta, 0) at every position."""

    config = SimpleNamespace(model_type="one-param")

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(theta))

    def forward(self, input_ids):
        B, T = input_ids.shape
        logits = torch.stack([self.theta.expand(B, T), torch.zeros(B, T)], -1)  # (B, T, 2)
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("gamma", [1.0, 0.1])
def test_the_revision_row_gradient_is_the_shaped_loss_by_hand(tmp_path, gamma):
    theta, old_p, A = 0.7, 0.3, 1.5
    net = OneParam(theta)
    config = HeRLConfig(beta=0.0, gamma=gamma, iterations=1, updates_per_iter=1)
    updater = HeRLUpdater(net, SimpleNamespace(pad_token_id=1), config, 0, tmp_path / "s")

    def grad(off_policy: bool) -> float:
        batch = TrainBatch(
            input_ids=torch.tensor([[1, 0]]), labels=torch.tensor([[IGNORE, 0]]),
            weights=torch.ones(1), advantages=torch.tensor([A]),
            off_policy=torch.tensor([off_policy]),
            old_logprobs=torch.tensor([[0.0, math.log(old_p)]]),
        )  # fmt: skip
        net.zero_grad()
        loss, _ = updater.trainer.loss_fn(net, batch)
        loss.backward()
        return net.theta.grad.item()

    # L = -A rho / (rho + gamma), rho = sigmoid(theta) / p_old; d log p / d theta = 1 - p
    p = 1 / (1 + math.exp(-theta))
    rho = p / old_p
    dL_dlogp = -A * gamma * rho / (rho + gamma) ** 2  # the closed form w.r.t. the log-prob
    assert grad(True) == pytest.approx(dL_dlogp * (1 - p), rel=1e-5)
    assert rho > 1 + config.eps_high and grad(False) == 0.0  # on-policy: clipped, no gradient


def test_update_flags_the_revision_off_policy(tiny_path, tmp_path, monkeypatch):
    from earlyexp.agents.backends.hf import HFPolicy, load_model
    from earlyexp.agents.policy import SamplingParams
    from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine

    net, tok = load_model(tiny_path, "cpu", training=True)
    net.eval()
    engine = RolloutEngine(HFPolicy(net, tok), PromptConfig(window=0, action_help=False),
                           SamplingParams(max_new_tokens=4, seed=0))  # fmt: skip
    trajs = engine.run(FL, [EpisodeSpec("train", None, 3)] * 2, 2)
    seen = []
    original = TrainBatch.from_trajectories.__func__

    def spy(cls, *args, **kwargs):
        seen.append(list(kwargs["off_policy"]))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(TrainBatch, "from_trajectories", classmethod(spy))
    config = HeRLConfig(iterations=1, updates_per_iter=1, beta=0.001)
    updater = HeRLUpdater(net, tok, config, 0, tmp_path / "state")
    m = updater.update(trajs, [1.0, -1.0], "turn", [True, False])
    assert seen == [[True, False]] and math.isfinite(m["loss"]) and m["kl"] == pytest.approx(0)


class GuidedExpert:
    """Acts as the expert only under a revision guide; otherwise an invalid action."""

    tokenizer = None
    needs_expert = True

    def complete(self, prompts, sampling):
        guided = [CONTEXT_TITLES["guide"] in p.messages[0]["content"] for p in prompts]
        return [Completion(format_action(p.expert_action if g else "Jump"))
                for p, g in zip(prompts, guided, strict=True)]  # fmt: skip


def test_an_iteration_revises_failed_groups_and_trains_the_winner_off_policy():
    config = HeRLConfig(tasks_per_iter=2, G=3, candidate_limit=2, batch_size=4)
    step = herl_iteration(0, GuidedExpert(), GroundedReflector(), FL, config, 0,
                          PromptConfig(window=0), None)  # fmt: skip
    s = step.stats
    assert (s.groups, s.groups_revised, s.candidates, s.revisions) == (2, 2, 4, 4)
    assert s.revisions_solved == 4 and s.replacements == 2 and s.bonus_applied > 0
    assert len(step.trajs) == 6 and sum(step.off_policy) == 2 and s.samples == 10
    for g in (0, 3):
        (i,) = [j for j in range(g, g + 3) if step.off_policy[j]]
        assert step.trajs[i].label == "revision" and step.trajs[i].success
        assert step.trajs[i].context[0].kind == "guide" and step.A[i] == max(step.A[g : g + 3])
    guide = step.trajs[i].context[0].text
    assert "- [ ] reach the goal" in guide and "previous attempt's actions" in guide
    naive = herl_iteration(0, GuidedExpert(), GroundedReflector(), FL,
                           HeRLConfig(**{**vars(config), "rubric_guide": False}), 0,
                           PromptConfig(window=0), None)  # fmt: skip
    (j,) = [j for j in range(3) if naive.off_policy[j]]
    assert "reach the goal" not in naive.trajs[j].context[0].text  # naive HE: no rubric


def test_config_errors():
    with pytest.raises(ValueError, match="alpha"):
        HeRLConfig(alpha=2.0)
    with pytest.raises(ValueError, match="reflector"):
        HeRLConfig(reflector="oracle")


def test_herl_cell_from_an_il_checkpoint(tiny_path, tmp_path, monkeypatch):
    from earlyexp.harness.bench import BenchConfig, run_bench

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    out = tmp_path / "run"
    sets = ["herl.iterations=2", "herl.tasks_per_iter=2", "herl.G=2", "herl.eval_every=0",
            "herl.eval_subset=2"]  # fmt: skip
    run_bench(BenchConfig(profile="smoke", envs=[FL], methods=["herl"], init=["il"], set=sets,
                          model="tiny:test", device="cpu", out=str(out)))  # fmt: skip
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert all(c["status"] == "done" for c in cells.values()), [
        c.get("trace") for c in cells.values()
    ]
    cell = out / "cells" / "herl+il__EarlyExp_FrozenLake-v0__s0"
    stats = json.loads((cell / "herl_stats.json").read_text())
    assert stats["provider"] == "grounded" and len(stats["iterations"]) == 2
    total = stats["total"]
    assert set(total) >= {"groups_revised", "revisions", "replacements", "bonus_applied",
                          "samples", "tokens"}  # fmt: skip
    assert total["samples"] == 8 + total["revisions"]
    curve = json.loads((cell / "curve.json").read_text())
    assert [e["iteration"] for e in curve["eval"]] == [2] and len(curve["train"]) == 2
    assert "herl+il" in (out / "table.md").read_text()
