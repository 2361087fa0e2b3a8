"""The rollout engine: batched play, token ids kept end to end, parse failures, JSONL."""

from __future__ import annotations

from earlyexp.agents.policy import SamplingParams
from earlyexp.agents.prompting import FORMAT_ERROR, PromptConfig
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, read_jsonl, write_jsonl
from earlyexp.agents.sft import IGNORE, collate

FL = "EarlyExp/FrozenLake-v0"
SOKO = "EarlyExp/Sokoban-v0"


class Recording:
    """Wraps a policy and keeps every prompt and completion it handled."""

    def __init__(self, inner):
        self.inner, self.tokenizer, self.encoder = inner, inner.tokenizer, inner.encoder
        self.calls = []

    def complete(self, prompts, sampling):
        outs = self.inner.complete(prompts, sampling)
        self.calls.append((len(prompts), [list(p.token_ids) for p in prompts], outs))
        return outs


def test_token_ids_from_the_rollout_equal_the_ids_trained_on(policy):
    rec = Recording(policy)
    engine = RolloutEngine(rec, PromptConfig(window=1), SamplingParams(max_new_tokens=6, seed=1))
    specs = [EpisodeSpec("test", i, 0) for i in range(4)]
    trajs = engine.run(FL, specs, num_envs=4)
    assert rec.calls[0][0] == 4  # the first turn generated for all envs in one call
    seen = [
        (ctx, c.token_ids) for _, ctxs, outs in rec.calls for ctx, c in zip(ctxs, outs, strict=True)
    ]
    from_trajs = []
    retokenized_differs = False
    for traj in trajs:
        for t in range(len(traj.steps)):
            ids, mask = traj.step_example(t)
            n = sum(mask)
            assert mask == [0] * (len(ids) - n) + [1] * n  # the reply, and only the reply
            from_trajs.append((ids[: len(ids) - n], ids[len(ids) - n :]))
            labels = collate([(ids, mask)], pad_id=0)["labels"][0].tolist()
            assert [x for x in labels if x != IGNORE] == ids[len(ids) - n :]
            reply = ids[len(ids) - n :]
            text = policy.tokenizer.decode(reply)
            retokenized_differs |= (
                policy.tokenizer(text, add_special_tokens=False)["input_ids"] != reply
            )
    # every (context, sampled ids) the policy saw and produced is exactly one training example
    assert sorted(map(str, from_trajs)) == sorted(map(str, seen))
    assert retokenized_differs  # decoding and re-tokenizing would have changed the ids


def test_parse_failures_are_counted_and_shown_to_the_agent(policy):
    engine = RolloutEngine(
        policy, PromptConfig(window=2), SamplingParams(max_new_tokens=4, seed=0, stop=())
    )
    (traj,) = engine.run(SOKO, [EpisodeSpec("test", 0, 0)], num_envs=1)
    failures = [s for s in traj.steps if not s.parse_ok]
    assert traj.parse_failures == len(failures) > 0
    assert traj.invalid >= traj.parse_failures
    for prev, nxt in zip(traj.steps, traj.steps[1:], strict=False):
        assert nxt.user.startswith(FORMAT_ERROR) == (not prev.parse_ok)
    assert len(traj.steps) == 8  # the env's budget: parse failures count as steps
    # the window: system segment, the last two turns, the new user turn
    last = traj.steps[-1]
    assert last.context[0] == 0 and traj.segments[last.context[-1]].role == "user"
    roles = [traj.segments[i].role for i in last.context[1:-1]]
    assert roles.count("user") == 2 and roles.count("assistant") == 2


def test_trajectories_round_trip_through_jsonl(policy, tmp_path):
    engine = RolloutEngine(policy, sampling=SamplingParams(max_new_tokens=5, seed=2))
    trajs = engine.run(FL, [EpisodeSpec("ood", i, 0) for i in range(2)], num_envs=2)
    back = read_jsonl(write_jsonl(trajs, tmp_path / "t.jsonl"))
    assert [t.to_json() for t in back] == [t.to_json() for t in trajs]
    assert back[1].step_example(0) == trajs[1].step_example(0)
    assert engine.stats.tokens == sum(t.tokens for t in trajs) > 0
    assert 0 <= engine.stats.env_share < 1


def test_expert_policy_through_the_engine_solves_the_panels():
    from earlyexp.agents.backends.scripted import ExpertPolicy, RandomPolicy

    specs = [EpisodeSpec(s, i, 0) for s in ("test", "ood") for i in range(6)]
    for env_id in (FL, SOKO):
        trajs = RolloutEngine(ExpertPolicy()).run(env_id, specs, num_envs=4)
        assert [t.split for t in trajs] == [s.split for s in specs]  # results in episode order
        assert all(t.success and t.invalid == 0 for t in trajs)
        assert trajs[0].segments == []  # text-only policy: no token ids
    rand = RolloutEngine(RandomPolicy(0)).run(SOKO, specs, num_envs=4)
    assert sum(t.success for t in rand) < len(rand)
