"""``self_play``: both sides of ``bargain_v0`` played by policies in one batched run."""

from __future__ import annotations

import pytest

from earlyexp.agents.backends.scripted import ExpertPolicy, RandomPolicy
from earlyexp.agents.prompting import parse_action
from earlyexp.agents.rollout import EpisodeSpec, read_jsonl, self_play, write_jsonl
from earlyexp.envs.bargain.game import ROLES, dollars

pytest.importorskip("pettingzoo")
from earlyexp.envs import bargain_v0  # noqa: E402


class Counting:
    """Wraps a policy; records the size of every ``complete`` call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []
        self.tokenizer = None
        self.needs_expert = getattr(inner, "needs_expert", False)

    def complete(self, prompts, sampling):
        self.calls.append(len(prompts))
        return self.inner.complete(prompts, sampling)


def specs(n: int, split: str = "test") -> list[EpisodeSpec]:
    return [EpisodeSpec(split, i, seed=i) for i in range(n)]


def test_scripted_self_play_records_one_trajectory_per_agent():
    policy = Counting(ExpertPolicy())
    runs = self_play(bargain_v0.env, {"buyer": policy, "seller": policy}, specs(6), num_envs=4)
    assert len(runs) == 6
    for i, run in enumerate(runs):
        buyer, seller = run["buyer"], run["seller"]
        assert (buyer.label, seller.label) == ("buyer", "seller") and buyer.task == i
        assert buyer.success and seller.success and buyer.score > 0 and seller.score > 0
        assert "You are the buyer" in buyer.system and "You are the seller" in seller.system
        assert len(buyer.steps) - len(seller.steps) in (0, 1)  # the buyer moves first
        assert all(s.action_valid for s in buyer.steps + seller.steps)
        assert buyer.steps[0].user.count("The seller asks the list price") == 1
        assert "The buyer offered" in seller.steps[0].user
    # one batched call per turn for both agents: never more prompts than tables
    assert max(policy.calls) == 4 and len(policy.calls) < sum(
        len(r["buyer"].steps) + len(r["seller"].steps) for r in runs
    )


def test_two_policies_and_invalid_actions():
    buyer, seller = Counting(RandomPolicy(seed=1)), Counting(ExpertPolicy())
    runs = self_play(bargain_v0.env, {"buyer": buyer, "seller": seller}, specs(12, "ood"), 3)
    assert buyer.calls and seller.calls and max(buyer.calls + seller.calls) <= 3
    for run in runs:
        for agent in ROLES:
            traj = run[agent]
            assert all(parse_action(s.completion) == s.action for s in traj.steps)
            assert 0.0 <= traj.score <= 1.0 and traj.rubric
    # the seller's scripted side never loses on a deal, whatever the random buyer does
    assert all(r["seller"].rubric[1]["met"] for r in runs)


def test_self_play_prompts_keep_each_sides_private_value():
    policy = ExpertPolicy()
    env = bargain_v0.raw_env()
    runs = self_play(bargain_v0.env, {"buyer": policy, "seller": policy}, specs(8))
    for i, run in enumerate(runs):
        env.reset(options={"split": "test", "task": i})
        task = env.unwrapped.task
        budget, cost = dollars(task.budget_cents), dollars(task.cost_cents)
        seller_text = run["seller"].system + "".join(s.user for s in run["seller"].steps)
        assert budget in run["buyer"].system and cost in run["seller"].system
        assert budget not in seller_text or budget in "".join(
            s.action or "" for s in run["seller"].steps
        )  # only a price the seller itself offered can coincide


def test_self_play_trajectories_round_trip_and_check_arguments(tmp_path):
    policy = ExpertPolicy()
    runs = self_play(bargain_v0.env, {"buyer": policy, "seller": policy}, specs(2))
    trajs = [t for run in runs for t in run.values()]
    back = read_jsonl(write_jsonl(trajs, tmp_path / "selfplay.jsonl"))
    assert [t.to_json() for t in back] == [t.to_json() for t in trajs]
    assert back[0].env_id == "bargain_v0"
    with pytest.raises(ValueError, match="seller"):
        self_play(bargain_v0.env, {"buyer": policy}, specs(1))
    with pytest.raises(ValueError, match="num_envs"):
        self_play(bargain_v0.env, {"buyer": policy, "seller": policy}, specs(1), num_envs=0)
    assert self_play(bargain_v0.env, {"buyer": policy, "seller": policy}, []) == []
