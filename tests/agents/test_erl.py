"""ERL: the gate, the memory, reflection rewards, internalization, the ablations, the cell."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest

from earlyexp.agents import reflect
from earlyexp.agents.chat import ChatEncoder, flatten
from earlyexp.agents.methods.erl import (
    ERLConfig,
    ERLRun,
    ERLUpdater,
    IterationStats,
    Revision,
    RoleBatch,
    attempt_of,
    erl_round,
    internalized,
    reflection_rewards,
    role_loss,
    training_set,
    update_memory,
    with_reminder,
)
from earlyexp.agents.policy import Completion
from earlyexp.agents.prompting import REPLY_FORMAT, PromptConfig
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine

FL, SOKO = "EarlyExp/FrozenLake-v0", "EarlyExp/Sokoban-v0"
RULEBOOK = "<prompt>Rules: B is the goal.\nStrategy: walk to B.</prompt>"


class Follower:
    """A scripted policy and reflection writer whose behaviour depends on its system prompt.

    Under the original prompt it solves only the tasks ``solves(board)`` picks (else it sends
    an invalid action until the budget runs out); under a revised prompt (one with a
    ``Strategy:`` line or the retry instruction) it plays the expert when ``follow``. Asked
    for a rulebook it replies ``reply``. With a tokenizer, replies carry their ids (as a
    tokenizer-backed policy would sample them) and made-up log-probs.
    """

    needs_expert = True

    def __init__(self, tokenizer=None, solves=lambda board: False, follow=True, reply=RULEBOOK):
        self.tokenizer, self.solves, self.follow, self.reply = tokenizer, solves, follow, reply
        self.encoder = ChatEncoder(tokenizer) if tokenizer is not None else None

    def complete(self, prompts, sampling):
        return [self._one(p) for p in prompts]

    def _one(self, p):
        system = p.messages[0]["content"]
        if system == reflect.RULEBOOK_SYSTEM:
            text = self.reply
        else:
            revised = "Strategy:" in system or reflect.RETRY_INSTRUCTION in system
            good = self.follow if revised else self.solves(p.observation.split("\n", 1)[1])
            text = f"<action>{p.expert_action if good else 'Stay'}</action>"
        ids = (
            list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if self.tokenizer
            else []
        )
        return Completion(text, ids, [-0.1] * len(ids))


def goal_even(board: str) -> bool:
    """Solve the tasks whose goal sits at an even offset of the board text."""
    return board.find("B") % 2 == 0


def make_run(policy, reflector=None, window=0, **kw) -> ERLRun:
    reflector = reflector or reflect.GroundedReflector(max_chars=2000)
    config = ERLConfig(tasks_per_iter=4, G=2, batch_size=8, reflector=reflector.name, **kw)
    return ERLRun(FL, 0, config, PromptConfig(window=window, action_help=False), policy, reflector)


@pytest.fixture(scope="module")
def tok(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


def test_the_gate_reflects_only_on_failures_and_retries_the_same_task():
    rd = erl_round(0, make_run(Follower(solves=goal_even)), "")
    failed = [i for i, r in enumerate(rd.r1) if r < 1.0]
    assert 0 < len(failed) < len(rd.y1), rd.r1  # a mixed batch
    assert [d.first for d in rd.D] == failed and len(rd.y2) == len(failed)
    for y2, k in zip(rd.y2, rd.owner, strict=True):
        y1 = rd.y1[rd.D[k].first]
        assert (y2.split, y2.task, y2.seed) == (y1.split, y1.task, y1.seed)
        assert y2.system == rd.D[k].prompt and y2.system.endswith(REPLY_FORMAT)
        assert y2.system.startswith(y1.system) and reflect.RULES_HEADING in y2.system
    assert rd.r2 == [1.0] * len(rd.y2) and rd.rD == [1.0] * len(rd.D)
    solved = erl_round(0, make_run(Follower(solves=lambda board: True)), "")
    assert solved.r1 == [1.0] * 8 and solved.D == [] and solved.y2 == []


def test_memory_changes_only_when_a_second_attempt_succeeds():
    failing = erl_round(0, make_run(Follower(follow=False)), "old rulebook")
    assert failing.D and failing.r2 == [0.0] * len(failing.y2)
    assert failing.m == "old rulebook" and failing.memory_updates == 0
    assert all(d.request.memory == "old rulebook" for d in failing.D)  # shown to the reflection
    helped = erl_round(0, make_run(Follower()), "old rulebook")
    assert helped.m == helped.D[-1].reflection.text != "old rulebook"
    req = reflect.ReflectionRequest("rulebook", "t")
    a = Revision(0, req, "pa", reflect.Reflection("text a", "grounded"))
    b = Revision(1, req, "pb", reflect.Reflection("", "policy", ok=False, error="x"))
    c = Revision(2, req, "pc", reflect.Reflection("text c", "grounded"))
    assert update_memory("m", [a, b, c], [1.0, 1.0, 0.0], [0, 1, 2], 1.0) == ("text a", 1)
    assert update_memory("m", [a, b, c], [0.0, 1.0, 0.5], [0, 1, 2], 1.0) == ("m", 0)


def test_reflection_rewards_are_the_mean_r2_of_their_second_attempts(tok):
    assert reflection_rewards([1.0, 0.0, 0.0, 0.0, 1.0, 1.0], [0, 0, 1, 1, 2, 2], 3) == [
        0.5, 0.0, 1.0,
    ]  # fmt: skip
    policy = Follower(tok, solves=goal_even)
    run = make_run(policy, reflect.PolicyReflector(policy), second_per_reflection=2)
    rd = erl_round(0, run, "")
    assert len(rd.y2) == 2 * len(rd.D) and rd.owner == [k for k in range(len(rd.D)) for _ in "ab"]
    assert rd.rD == [(rd.r2[2 * k] + rd.r2[2 * k + 1]) / 2 for k in range(len(rd.D))]
    sample = rd.D[0].sample  # the reflection as the policy wrote it: prompt + reply ids
    assert (
        sample.segments[2].ids == policy.tokenizer(RULEBOOK, add_special_tokens=False)["input_ids"]
    )
    messages = reflect.reflection_messages(rd.D[0].request)
    assert flatten(sample.segments[:2])[0] == policy.encoder.encode(messages)[0]
    assert sample.steps[0].logprobs == [-0.1] * len(sample.segments[2].ids)


@pytest.mark.parametrize("window", [0, 1])
def test_the_internalized_sample_is_the_second_attempt_under_the_original_prompt(tok, window):
    policy = Follower(tok)
    rd = erl_round(0, make_run(policy, window=window), "")
    y2, original = rd.y2[0], rd.y1[rd.D[rd.owner[0]].first].system
    t = internalized(y2, original, policy.encoder)
    assert t.system == original != y2.system and t.context == [] and t.label == "internalized"
    assert [s.action for s in t.steps] == [s.action for s in y2.steps]
    assert all(not s.logprobs for s in t.steps)
    replies = [s.reply for s in y2.steps]
    assert [t.segments[r].ids for r in replies] == [y2.segments[r].ids for r in replies]
    assert t.segments[0].ids == policy.encoder.system(original).ids != y2.segments[0].ids
    messages = [{"role": "system", "content": original}]
    for s in y2.steps:
        messages += [{"role": "user", "content": s.user},
                     {"role": "assistant", "content": s.completion}]  # fmt: skip
    assert flatten(t.segments)[0] == policy.encoder.encode(messages, train_on="all")[0]
    for k in range(len(t.steps)):  # each turn's example sees the original prompt
        ids, _ = t.step_example(k)
        assert ids[: len(t.segments[0].ids)] == t.segments[0].ids


def _roles(rd, ts):
    names = {id(t): "first" for t in rd.y1} | {id(t): "second" for t in rd.y2}
    names |= {id(d.sample): "reflection" for d in rd.D if d.sample is not None}
    return {names[id(t)] for t in ts.pg} | ({"internalized"} if ts.raft else set())


@pytest.mark.parametrize(
    ("switch", "lost"),
    [("train_first", "first"), ("train_second", "second"), ("train_reflection", "reflection"),
     ("internalize", "internalized")],
)  # fmt: skip
def test_each_role_switch_drops_exactly_its_role(tok, switch, lost):
    policy = Follower(tok, solves=goal_even)
    run = make_run(policy, reflect.PolicyReflector(policy))
    rd = erl_round(0, run, "")
    full = _roles(rd, training_set(rd, run.config, policy.encoder))
    assert full == {"first", "second", "reflection", "internalized"}
    off = ERLConfig(tasks_per_iter=4, G=2, **{switch: False})
    assert _roles(rd, training_set(rd, off, policy.encoder)) == full - {lost}


def test_internalize_above_keeps_only_second_attempts_scoring_above_it(tok):
    policy = Follower(tok, solves=goal_even)
    rd = erl_round(0, make_run(policy, reflect.PolicyReflector(policy)), "")
    assert len(rd.y2) >= 2
    rd.r2 = [0.5 if i % 2 else 1.0 for i in range(len(rd.y2))]  # partial credit on the odd ones
    weights = training_set(rd, ERLConfig(G=2), policy.encoder).w
    assert sorted(weights) == sorted(rd.r2)  # the paper's 1[r2 > 0]: all of them
    strict = training_set(rd, ERLConfig(G=2, internalize_above=0.99), policy.encoder)
    assert strict.w == [1.0] * rd.r2.count(1.0) and len(strict.raft) == len(strict.w)
    with pytest.raises(ValueError, match="Expect internalize_above < tau"):
        ERLConfig(internalize_above=1.0)


def test_the_ablations_no_memory_and_no_reflection(tok):
    policy = Follower(tok, solves=goal_even)
    rd = erl_round(0, make_run(policy, reflect.PolicyReflector(policy), memory=False), "m0")
    assert rd.m == "m0" and all(d.request.memory == "" for d in rd.D)
    config = dict(reflection="none")
    rd = erl_round(0, make_run(policy, reflect.PolicyReflector(policy), **config), "m0")
    assert rd.D and all(d.reflection is None and d.sample is None for d in rd.D)
    assert all(reflect.RETRY_INSTRUCTION in d.prompt and "Observation 1:" in d.prompt for d in rd.D)
    assert rd.m == "m0" and rd.r2 == [1.0] * len(rd.y2)  # retried with the raw trace
    roles = _roles(rd, training_set(rd, ERLConfig(G=2, **config), policy.encoder))
    assert roles == {"first", "second", "internalized"}


def test_a_reply_without_prompt_tags_falls_back_and_is_counted(tok):
    policy = Follower(tok, reply="I would go left, I think.")
    run = make_run(policy, reflect.PolicyReflector(policy))
    rd = erl_round(0, run, "")
    assert rd.D and all(d.missing_tag for d in rd.D)
    assert all(d.prompt == with_reminder(rd.y1[d.first].system) == rd.y1[d.first].system
               for d in rd.D)  # fmt: skip
    assert len(rd.y2) == len(rd.D) and rd.r2 == [0.0] * len(rd.y2) and rd.m == ""
    stats = IterationStats.of(0, rd, training_set(rd, run.config, policy.encoder), 2, False)
    assert stats.missing_tag == stats.reflections == len(rd.D) and stats.failed_reflections == 0
    rejected = [sum(not s.action_valid for t in ys for s in t.steps) for ys in (rd.y1, rd.y2)]
    assert rejected[0] > 0 and rejected[1] > 0  # 'Stay' is no Sokoban or FrozenLake move
    assert (stats.invalid_first, stats.invalid_second) == tuple(rejected)
    assert stats.internalized == stats.internalized_invalid == 0  # no second attempt scored


def test_one_step_trains_pg_and_raft_rows(tiny_path, tok, tmp_path):
    from earlyexp.agents.backends.hf import load_model
    from earlyexp.agents.train.batch import TrainBatch
    from earlyexp.agents.train.losses import raft_loss

    policy = Follower(tok, solves=goal_even)
    rd = erl_round(0, make_run(policy), "")
    config = ERLConfig(G=2, iterations=1, updates_per_iter=1, lr=1e-2)
    ts = training_set(rd, config, policy.encoder)
    assert ts.raft and ts.pg
    net, tokenizer = load_model(tiny_path, "cpu", training=True)
    updater = ERLUpdater(net, tokenizer, config, 0, tmp_path)
    raft = TrainBatch.from_trajectories(ts.raft, updater.pad, "turn", weights=ts.w)
    loss, _ = role_loss(net, RoleBatch("raft", raft), pg=None)
    assert loss.item() == pytest.approx(raft_loss(net, raft)[0].item())
    before = [p.detach().clone() for p in net.parameters()]
    metrics = updater.update_roles(ts, "turn")
    assert math.isfinite(metrics["loss"])  # uniform groups here: the RAFT rows move the weights
    assert all(not p.equal(q) for p, q in zip(net.parameters(), before, strict=True))


def play(env_id, seed, actions):
    """An attempt of ``actions`` on a train task, recorded as a reflection sees it."""
    e = gym.make(env_id)
    obs, info = e.reset(seed=seed, options={"split": "train"})
    steps = []
    for a in actions:
        nxt, r, term, trunc, info = e.step(a)
        moved = obs.split("\n", 1)[1] != nxt.split("\n", 1)[1]
        steps.append(reflect.Step(a, info["feedback"], info["action_valid"], obs, moved, r))
        obs = nxt
        if term or trunc:
            break
    return reflect.Attempt(steps, float(info.get("score", 0.0)), info["task"])


def test_the_grounded_rulebook_states_what_the_frozenlake_attempts_showed():
    # seed 3: "BA / DD", Left reaches the goal; seed 0: A at the left edge, a hole to its right
    attempts = [play(FL, 3, ["Left"]), play(FL, 0, ["Left", "Up", "Jump", "Down", "Right"])]
    assert attempts[1].score == 0.0 and attempts[0].score == 1.0
    request = reflect.ReflectionRequest("rulebook", "t", attempts=attempts, system="SYSTEM")
    text = reflect.GroundedReflector(max_chars=2000).one(request).text
    for fact in ("A is you", '"Up" moves A one cell up.',
                 "Stepping on B ended the episode with score 1.",
                 "Stepping on C ended the episode with score 0.", "Stepping on D is safe",
                 '"Left" had no effect at the left edge', '"Jump" was rejected',
                 "Strategy: reach B by the shortest safe path, never step on C"):  # fmt: skip
        assert fact in text, text
    assert text.startswith("SYSTEM\n\n") and "Stepping on D ended" not in text
    again = reflect.ReflectionRequest("rulebook", "t", attempts=attempts[1:], memory=text,
                                      system="SYSTEM")  # fmt: skip
    merged = reflect.grounded_rulebook(again)  # the memory's rules and its goal are kept
    assert "Stepping on B ended the episode with score 1." in merged and "reach B" in merged


def test_the_grounded_rulebook_on_sokoban_and_on_text_envs():
    e = gym.make(SOKO)
    e.reset(seed=3, options={"split": "train"})
    plan = []
    while not plan or not e.step(plan[-1])[2]:
        plan.append(e.unwrapped.expert_action())
    request = reflect.ReflectionRequest(
        "rulebook", "t", system="S", attempts=[play(SOKO, 3, ["Up", *plan]), play(SOKO, 3, plan)]
    )
    text = reflect.grounded_rulebook(request)
    assert "Moving into B pushes it one cell further." in text
    assert "Pushing B onto C ended the episode with score 1." in text and "push B onto C" in text
    assert "Moving into D pushes" not in text
    page = reflect.Attempt(
        [reflect.Step("search[red shoes]", "", True, "Search page", True),
         reflect.Step("click[Buy]", "No such button", False, "Results\n[Item 1]\n[Item 2]", False)],
        0.2, "Buy red shoes", [{"criterion": "color red", "met": False}],
    )  # fmt: skip
    text = reflect.grounded_rulebook(reflect.ReflectionRequest("rulebook", "t", attempts=[page]))
    assert '"click[Buy]" was rejected: "No such button".' in text and "color red" in text


def sokoban_plan(seed):
    e = gym.make(SOKO)
    e.reset(seed=seed, options={"split": "train"})
    plan = []
    while not plan or not e.step(plan[-1])[2]:
        plan.append(e.unwrapped.expert_action())
    return plan


def test_the_grounded_rulebook_merges_the_memory_as_evidence_on_sokoban():
    # seed 0's plan (Up, Left, Down) pushes B once, on its last step: alone, that step reads
    # as "stepping on B ended the episode", and the strategy as "reach B"
    alone = [play(SOKO, 0, sokoban_plan(0))]
    first = reflect.grounded_rulebook(reflect.ReflectionRequest("rulebook", "t", attempts=alone,
                                                                system="S"))  # fmt: skip
    assert "Stepping on B ended the episode with score 1." in first and "reach B" in first
    # seed 3's attempts push B mid-episode: B is a box, so the memory's B rules and goal go
    pushes = [play(SOKO, 3, ["Up", *sokoban_plan(3)])]
    merged = reflect.grounded_rulebook(reflect.ReflectionRequest(
        "rulebook", "t", attempts=pushes, memory=first, system="S"))  # fmt: skip
    assert "Moving into B pushes it one cell further." in merged
    assert "Stepping on B" not in merged and "reach B" not in merged, merged
    assert "Stepping on D is safe" in merged  # what nothing contradicts is kept
    # and with that memory, seed 0's last step alone now reads as the push it was
    again = reflect.grounded_rulebook(reflect.ReflectionRequest(
        "rulebook", "t", attempts=alone, memory=merged, system="S"))  # fmt: skip
    assert "Pushing B onto C ended the episode with score 1." in again, again
    assert "Stepping on B" not in again and "Strategy: push B onto C" in again


def test_a_cell_stepped_on_safely_is_not_one_that_ended_the_episode():
    memory = ("S\n\nRules observed in past attempts (may be inaccurate):\n"
              "- Stepping on D ended the episode with score 0.\n"
              "- Moving into D had no effect: A stayed.\nStrategy: x.")  # fmt: skip
    attempts = [play(FL, 0, ["Left", "Up", "Jump", "Down", "Right"])]  # D is stepped on safely
    text = reflect.grounded_rulebook(reflect.ReflectionRequest(
        "rulebook", "t", attempts=attempts, memory=memory, system="S"))  # fmt: skip
    assert "Stepping on D is safe" in text and "Stepping on D ended" not in text
    assert "Moving into D had no effect" not in text
    stale = memory.replace("Strategy", "- Stepping on D is safe: the episode went on.\nStrategy")
    text = reflect.grounded_rulebook(reflect.ReflectionRequest(
        "rulebook", "t", attempts=attempts[:0], memory=stale, system="S"))  # fmt: skip
    assert "Stepping on D ended" not in text  # the memory contradicted itself


def test_attempt_of_marks_the_moves_without_effect():
    engine = RolloutEngine(Follower(), PromptConfig(window=0, action_help=False))
    (traj,) = engine.run(FL, [EpisodeSpec("train", None, 0)])
    a = attempt_of(traj)  # "Stay" is rejected on every step
    assert len(a.steps) == 8 and a.score == 0.0
    assert all(not s.valid and s.effect is False for s in a.steps)
    assert a.steps[0].observation.startswith("The game has started.\n")
    (solved,) = RolloutEngine(Follower(solves=lambda b: True)).run(
        FL, [EpisodeSpec("train", None, 0)]
    )
    assert all(s.valid and s.effect for s in attempt_of(solved).steps)


def test_the_erl_cell_from_an_il_checkpoint_writes_its_curve_and_stats(
    tiny_path, tmp_path, monkeypatch
):
    from earlyexp.harness.bench import BenchConfig, run_bench

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    out = tmp_path / "run"
    sets = ["erl.iterations=2", "erl.tasks_per_iter=2", "erl.G=2", "erl.eval_every=1",
            "erl.eval_subset=2"]  # fmt: skip
    run_bench(BenchConfig(profile="smoke", envs=[FL], methods=["erl"], init=["il"], set=sets,
                          model="tiny:test", device="cpu", out=str(out)))  # fmt: skip
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert all(c["status"] == "done" for c in cells.values()), [
        c.get("trace") for c in cells.values()
    ]
    cell = out / "cells" / "erl+il__EarlyExp_FrozenLake-v0__s0"
    curve = json.loads((cell / "curve.json").read_text())
    assert [e["iteration"] for e in curve["eval"]] == [0, 1, 2]
    stats = json.loads((cell / "erl_stats.json").read_text())
    assert stats["provider"] == "grounded" and len(stats["iterations"]) == 2
    assert stats["total"]["first_attempts"] == 8
    assert stats["total"]["samples"] == 8 + stats["total"]["second_attempts"]
    assert curve["eval"][-1]["samples"] == stats["total"]["samples"]
    assert "erl+il" in (out / "table.md").read_text()
