"""Batch builders: SFT padding as collate, trajectories as episodes or turns, log-prob alignment."""

from __future__ import annotations

import pytest
import torch

from earlyexp.agents.chat import Segment
from earlyexp.agents.rollout import Step, Trajectory
from earlyexp.agents.sft import IGNORE, collate
from earlyexp.agents.train.batch import TrainBatch, trajectory_examples


def test_from_examples_pads_exactly_as_collate():
    examples = [([5, 6, 7, 8], [0, 0, 1, 1]), ([9, 10], [0, 1]), ([11, 12, 13], [1, 0, 1])]
    batch = TrainBatch.from_examples(examples, pad_id=3)
    old = collate(examples, pad_id=3)
    assert torch.equal(batch.input_ids, old["input_ids"])
    assert torch.equal(batch.labels, old["labels"])
    assert batch.input_ids.tolist() == [[5, 6, 7, 8], [9, 10, 3, 3], [11, 12, 13, 3]]
    assert batch.labels.tolist() == [
        [IGNORE, IGNORE, 7, 8],
        [IGNORE, 10, IGNORE, IGNORE],
        [11, IGNORE, 13, IGNORE],
    ]
    assert batch.weights.tolist() == [1.0] * 3 and batch.advantages.tolist() == [0.0] * 3
    assert batch.off_policy.tolist() == [False] * 3 and batch.old_logprobs is None
    assert torch.equal(batch.to("cpu").labels, batch.labels)
    halves = batch.split(2)
    assert [h.input_ids.shape for h in halves] == [(2, 4), (1, 4)]
    assert torch.equal(torch.cat([h.labels for h in halves]), batch.labels)
    assert halves[1].weights.tolist() == [1.0] and halves[1].old_logprobs is None
    with pytest.raises(ValueError, match="Expect 3 weights"):
        TrainBatch.from_examples(examples, 3, weights=[1.0])


def two_turns(window_covers: bool = True, lp0=(-0.1, -0.2)) -> Trajectory:
    """system, user, reply (ends with eos 99), template, user, reply (no eos), template."""
    segs = [
        Segment("system", [1, 2], False),
        Segment("user", [3, 4, 5], False),
        Segment("assistant", [6, 99], True),
        Segment("template", [7], False),
        Segment("user", [8], False),
        Segment("assistant", [10, 11, 12], True),
        Segment("template", [99, 7], False),
    ]
    ctx1 = [0, 1, 2, 3, 4] if window_covers else [0, 4]
    steps = [
        Step("u1", "r1", "a", True, 0.0, "", context=[0, 1], reply=2, logprobs=list(lp0)),
        Step("u2", "r2", None, False, 1.0, "", context=ctx1, reply=5, logprobs=[-0.3, -0.4, -0.5]),
    ]
    return Trajectory("Env-v0", "train", 0, 0, "sys", steps=steps, segments=segs, score=1.0)


def test_episode_mode_masks_env_tokens_and_aligns_old_logprobs():
    batch = TrainBatch.from_trajectories([two_turns()], pad_id=0, mode="episode")
    ids = [1, 2, 3, 4, 5, 6, 99, 7, 8, 10, 11, 12, 99, 7]
    trained = [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0]
    assert batch.input_ids.tolist() == [ids]
    assert batch.labels.tolist() == [
        [t if m else IGNORE for t, m in zip(ids, trained, strict=True)]
    ]
    lp = [0, 0, 0, 0, 0, -0.1, -0.2, 0, 0, -0.3, -0.4, -0.5, 0, 0]
    assert torch.allclose(batch.old_logprobs, torch.tensor([lp]))
    # column t holds log pi_old of token t: nonzero exactly on the trained tokens
    assert ((batch.old_logprobs != 0) == batch.mask).all()


def test_turn_mode_gives_one_example_per_step_with_the_reply_trained():
    batch = TrainBatch.from_trajectories([two_turns()], pad_id=0, mode="turn")
    assert batch.input_ids.tolist() == [
        [1, 2, 3, 4, 5, 6, 99, 0, 0, 0, 0, 0],
        [1, 2, 3, 4, 5, 6, 99, 7, 8, 10, 11, 12],
    ]
    I = IGNORE  # noqa: E741
    assert batch.labels.tolist() == [
        [I, I, I, I, I, 6, 99, I, I, I, I, I],
        [I, I, I, I, I, I, I, I, I, 10, 11, 12],  # the earlier reply is context here
    ]
    lp = [[0, 0, 0, 0, 0, -0.1, -0.2, 0, 0, 0, 0, 0], [0] * 9 + [-0.3, -0.4, -0.5]]
    assert torch.allclose(batch.old_logprobs, torch.tensor(lp))
    assert [(e.source, sum(e.mask)) for e in trajectory_examples([two_turns()], "turn")] == [
        (0, 2),
        (0, 3),
    ]


def test_per_trajectory_values_are_broadcast_to_its_examples():
    trajs = [two_turns(), two_turns(), two_turns()]
    batch = TrainBatch.from_trajectories(
        trajs,
        0,
        "turn",
        advantages=[0.5, -1.0, 0.0],
        weights=[1.0, 0.0, 2.0],
        off_policy=[False, True, False],
    )
    assert batch.advantages.tolist() == [0.5, 0.5, -1.0, -1.0, 0.0, 0.0]
    assert batch.weights.tolist() == [1.0, 1.0, 0.0, 0.0, 2.0, 2.0]
    assert batch.off_policy.tolist() == [False, False, True, True, False, False]
    episodes = TrainBatch.from_trajectories(trajs, 0, "episode", advantages=[0.5, -1.0, 0.0])
    assert episodes.advantages.tolist() == [0.5, -1.0, 0.0]
    with pytest.raises(ValueError, match="Expect 3 advantages"):
        TrainBatch.from_trajectories(trajs, 0, "turn", advantages=[1.0])


def test_builders_refuse_what_they_cannot_align():
    with pytest.raises(ValueError, match="whole episode so far"):
        TrainBatch.from_trajectories([two_turns(window_covers=False)], 0, "episode")
    windowed = TrainBatch.from_trajectories([two_turns(window_covers=False)], 0, "turn")
    assert windowed.input_ids.tolist()[1] == [1, 2, 8, 10, 11, 12, 0]  # padded
    with pytest.raises(ValueError, match="one log-prob per sampled token of step 0"):
        TrainBatch.from_trajectories([two_turns(lp0=(-0.1,))], 0, "episode")
    with pytest.raises(ValueError, match="mode in"):
        TrainBatch.from_trajectories([two_turns()], 0, "steps")
    text_only = Trajectory("Env-v0", "train", 0, 0, "sys", steps=[Step("u", "r", "a", True, 0, "")])
    with pytest.raises(ValueError, match="token ids"):
        TrainBatch.from_trajectories([text_only], 0, "turn")
    no_lp = two_turns()
    for step in no_lp.steps:
        step.logprobs = []
    assert TrainBatch.from_trajectories([no_lp], 0, "episode").old_logprobs is None
    with pytest.raises(ValueError, match="every example of a batch or on none"):
        TrainBatch.from_trajectories([two_turns(), no_lp], 0, "turn")


def test_old_logprobs_of_a_real_rollout_match_the_trainers_forward(policy):
    from earlyexp.agents.policy import SamplingParams
    from earlyexp.agents.prompting import PromptConfig
    from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine
    from earlyexp.agents.train.losses import reference_logprobs

    engine = RolloutEngine(
        policy, PromptConfig(window=16), SamplingParams(max_new_tokens=5, seed=3)
    )
    trajs = engine.run("EarlyExp/FrozenLake-v0", [EpisodeSpec("test", i, 0) for i in range(2)], 2)
    for mode in ("episode", "turn"):
        batch = TrainBatch.from_trajectories(trajs, policy.pad_id, mode)
        assert batch.mask.sum() > 0
        again = reference_logprobs(policy.model, batch)  # right-padded, one forward
        assert torch.allclose(again, batch.old_logprobs, atol=1e-4), mode
