"""``erl``: Experiential RL (arXiv 2602.13949): attempt, reflect, retry, internalize.

Each iteration takes ``tasks_per_iter`` train tasks x, ``G`` rollouts per task and attempt:

1. First attempt y1 ~ pi(.|x) under the original system prompt; reward r1 (the score minus
   ``invalid_penalty`` per invalid action). GRPO on the groups of y1 (``train_first``).
2. Gate: only the attempts with r1 < tau go on (reflecting on successes invites reward hacking).
3. Reflection D ~ pi(.|x, y1, f1, r1, m), by the provider ``reflector``: it is shown the
   memory m under "Inferred information from past attempts (may be inaccurate)" (the original
   prompt while m is empty) and up to ``max_recent_attempts`` recent attempts (attempts of the
   batch's other tasks, then the failed ones of x, y1 last), each with its observations,
   actions, whether each action had an effect, reward and the env's feedback. It returns the
   complete revised system prompt (rules inferred from experience plus a strategy) inside
   ``<prompt>...</prompt>``; a reply without them falls back to the previous prompt (m, else
   the original) and is counted. ``reflection="none"`` (the paper's no-reflection ablation):
   a generic retry instruction with the raw attempts replaces D.
4. Second attempt y2 ~ pi(.|x, D): the same task (split, task, seed) under D plus the
   reply-format line, ``second_per_reflection`` rollouts per D; reward r2. GRPO on the second
   attempts of each task (``train_second``).
5. D is rewarded with the mean r2 of its second attempts; GRPO on the reflections of each task
   when the policy itself wrote them (``reflector="policy"``, ``train_reflection``): the
   reflection prompt + reply is a one-turn sample with the log-probs recorded when sampled.
6. Memory (one slot, ``memory``): m <- D when one of D's second attempts has r2 >= tau.
7. Internalization (``internalize``): each y2 with r2 > 0 (``internalize_above``) is
   re-rendered under the original system prompt (its replies as sampled, system and
   observation turns encoded again: the reflection removed) and trained with RAFT, weight
   max(r2, 0): -1[r2 > 0] log pi(y2 | x).

The update is grpo's (:class:`~earlyexp.agents.methods.grpo.PolicyUpdater`: frozen reference,
the shared trainer, clipped PG + beta * k3 KL), with the internalized rows under
:func:`~earlyexp.agents.train.losses.raft_loss` in the same optimizer step. Deployment uses
pi(.|x) alone: evaluation plays the original prompt, no reflection. Budget: at most
``G * (1 + second_per_reflection)`` episodes per task (the paper: 4 per attempt, against 10
per task for GRPO); ``curve.json`` counts the episodes played (``samples``) and the tokens
generated (reflections included), so curves compare against samples and wall time.
``erl_stats.json`` names the provider and counts, per iteration and in total, the gated
attempts and tasks, reflections, missing-tag fallbacks, memory updates, internalized samples,
samples, tokens and the replies the env rejected (first attempts, second attempts, internalized
samples); it holds the memory, so a resumed run continues with it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from earlyexp.agents import reflect
from earlyexp.agents.chat import ChatEncoder, Segment
from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    torch_threads,
)
from earlyexp.agents.methods.grpo import (
    GRPOConfig,
    PolicyUpdater,
    advantages,
    curve_point,
    finish_rl,
    group_rewards,
    iteration_specs,
    iterations,
    pick_mode,
    rl_start,
    start_checkpoint,
)
from earlyexp.agents.methods.reflexion import task_of
from earlyexp.agents.policy import SamplingParams
from earlyexp.agents.prompting import REPLY_FORMAT, PromptConfig, observation_of
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory
from earlyexp.agents.rollout import Step as Turn

REFLECTORS = ("grounded", "policy", "http")
STATS_FILE = "erl_stats.json"


@dataclass
class ERLConfig(GRPOConfig):
    """``erl``: first attempt, gated reflection, second attempt, memory, internalization."""

    G: int = 4
    """Rollouts per task and attempt (the paper: 4 per attempt, GRPO 10 per task)."""
    tau: float = 1.0
    """Reward threshold: reflect on attempts with r1 < tau; m <- D when r2 >= tau."""
    reflector: str = "grounded"
    """Who writes the reflections: grounded (rules from the env's feedback, no model), policy
    (the policy being trained; its reflections are trained too) or http (reflector_url)."""
    reflector_url: str = ""
    """The reflection model, http://HOST:PORT/v1#MODEL (reflector http)."""
    reflection: str = "provider"
    """provider (the reflector rewrites the system prompt) or none (the ablation: a generic
    retry instruction with the raw attempts)."""
    memory: bool = True
    """Keep the last reflection whose second attempt succeeded and show it to the next
    reflections (False: the no-memory ablation)."""
    max_recent_attempts: int = 8
    """Attempts shown to a reflection at most."""
    second_per_reflection: int = 1
    """Second attempts per reflection (the reflection's reward is their mean r2)."""
    reflection_tokens: int = 384
    """Tokens of a model-written reflection at most."""
    max_prompt_chars: int = 2000
    """Revised system prompts are capped at this many characters."""
    train_first: bool = True
    """GRPO on the first attempts."""
    train_second: bool = True
    """GRPO on the second attempts (under the revised prompt)."""
    train_reflection: bool = True
    """GRPO on the reflections (reflector policy only: the others are not the policy)."""
    internalize: bool = True
    """RAFT on the successful second attempts re-rendered under the original prompt."""
    internalize_above: float = 0.0
    """Internalize a second attempt only when r2 > this (the paper's -1[r2 > 0], where a
    failed attempt scores 0). Envs with partial credit (ToolCall, WebShop: a reply that does
    nothing still meets "no other changes") score most failures above 0; set it to just
    below tau (e.g. 0.99) to internalize successes only."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reflector not in REFLECTORS:
            raise ValueError(f"Expect reflector in {REFLECTORS}, actually: {self.reflector!r}")
        if self.reflector == "http" and not self.reflector_url:
            raise ValueError("Expect reflector_url for reflector http, actually: ''")
        if self.reflection not in ("provider", "none"):
            raise ValueError(f"Expect reflection provider or none, actually: {self.reflection!r}")
        if self.internalize_above >= self.tau:
            raise ValueError(
                f"Expect internalize_above < tau ({self.tau}): a success scores tau, so no "
                f"second attempt would be internalized, actually: {self.internalize_above}"
            )
        for name in ("max_recent_attempts", "second_per_reflection", "reflection_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        if not (self.train_first or self.train_second or self.train_reflection or self.internalize):
            raise ValueError(
                "Expect at least one of train_first, train_second, train_reflection and "
                "internalize, actually: all False"
            )


# ---------------------------------------------------------------------------------------------
# Records passed between the steps


@dataclass
class Revision:
    """One gated first attempt and the prompt its reflection made for the second attempt.

    Attributes:
        first: index of the first attempt y1 in the round.
        request: what the reflection was shown.
        prompt: the second attempt's system prompt (D plus the reply-format line).
        reflection: D as written (None: ``reflection="none"``).
        sample: the reflection as a trainable one-turn trajectory (policy provider), or None.
    """

    first: int
    request: reflect.ReflectionRequest
    prompt: str
    reflection: reflect.Reflection | None = None
    sample: Trajectory | None = None

    @property
    def missing_tag(self) -> bool:
        """The reply had no ``<prompt>`` tags (the previous prompt was used)."""
        return self.reflection is not None and self.reflection.error == reflect.MISSING_PROMPT_TAG


@dataclass
class Round:
    """One iteration's attempts, reflections, rewards and memory (names of the algorithm)."""

    y1: list[Trajectory]
    r1: list[float]
    D: list[Revision]
    y2: list[Trajectory]
    r2: list[float]
    owner: list[int]
    """``y2[j]`` was played under ``D[owner[j]]``."""
    rD: list[float]
    m: str
    """The memory after the round."""
    memory_updates: int


@dataclass
class TrainSet:
    """What one update trains: PG rows with advantages A, RAFT rows with weights w."""

    pg: list[Trajectory]
    A: list[float]
    raft: list[Trajectory] = field(default_factory=list)
    w: list[float] = field(default_factory=list)


@dataclass
class ERLRun:
    """What the steps of an iteration share: the env, the policy, the provider, the settings."""

    env_id: str
    seed: int
    config: ERLConfig
    prompt: PromptConfig
    policy: Any
    reflector: reflect.ReflectionProvider
    pool: Any = None

    def play(self, specs: list[EpisodeSpec], it: int, attempt: int) -> list[Trajectory]:
        """Play ``specs`` at the rollout temperature (attempt 1 or 2 of iteration ``it``)."""
        c = self.config
        sampling = SamplingParams(
            max_new_tokens=c.max_new_tokens, temperature=c.sample_temperature, top_p=c.top_p,
            seed=self.seed * 7_919 + it + 104_729 * (attempt - 1),
        )  # fmt: skip
        engine = RolloutEngine(self.policy, self.prompt, sampling, self.pool)
        return engine.run(self.env_id, specs, c.batch_size * 4)


# ---------------------------------------------------------------------------------------------
# The algorithm, one iteration


def erl_round(it: int, run: ERLRun, m: str) -> Round:
    """Steps 1-6 of the module docstring for iteration ``it``, from memory ``m``."""
    c = run.config
    y1 = run.play(iteration_specs(it, c, run.seed), it, attempt=1)  # y1 ~ pi(.|x)
    r1 = group_rewards(y1, c.invalid_penalty)
    gated = [i for i, r in enumerate(r1) if r < c.tau]  # only if r1 < tau
    D = reflections(run, y1, r1, gated, m)  # D ~ pi(.|x, y1, f1, r1, m)
    specs, owner = second_specs(y1, D, c.second_per_reflection)
    y2 = run.play(specs, it, attempt=2)  # y2 ~ pi(.|x, D)
    r2 = group_rewards(y2, c.invalid_penalty)
    rD = reflection_rewards(r2, owner, len(D))  # D is rewarded with r2
    m2, updates = update_memory(m, D, r2, owner, c.tau) if c.memory else (m, 0)
    return Round(y1, r1, D, y2, r2, owner, rD, m2, updates)


def reflections(
    run: ERLRun, y1: list[Trajectory], r1: list[float], gated: list[int], m: str
) -> list[Revision]:
    """One revision per gated first attempt: its request, D and the second attempt's prompt."""
    c = run.config
    attempts = [attempt_of(t) for t in y1]
    memory = m if c.memory else ""
    requests = [
        reflect.ReflectionRequest(
            "rulebook", task_of(y1[i]), memory=memory, system=y1[i].system,
            attempts=recent_attempts(attempts, r1, i, c.G, c.tau, c.max_recent_attempts),
        )
        for i in gated
    ]  # fmt: skip
    if c.reflection == "none":  # the ablation: the raw attempts and a generic instruction
        pairs = zip(gated, requests, strict=True)
        return [
            Revision(i, q, with_reminder(reflect.retry_prompt(q, max_chars=c.max_prompt_chars)))
            for i, q in pairs
        ]
    written = run.reflector.reflect(requests)
    out = []
    for i, q, d in zip(gated, requests, written, strict=True):
        prompt = d.text if d.ok else (memory or y1[i].system)  # no tags: the previous prompt
        sample = reflection_sample(run, y1[i], q, d) if c.reflector == "policy" else None
        out.append(Revision(i, q, with_reminder(prompt), d, sample))
    return out


def recent_attempts(
    attempts: list[reflect.Attempt], r1: list[float], i: int, G: int, tau: float, n: int
) -> list[reflect.Attempt]:
    """Up to ``n`` attempts for the reflection on attempt ``i``, oldest first.

    Attempts of the batch's other tasks (one per task in turn), then the failed attempts of
    the same task, attempt ``i`` last. Successes of the same task are never shown: the
    reflection would copy their actions.
    """
    group = i // G
    own = [j for j in range(group * G, group * G + G) if j != i and r1[j] < tau] + [i]
    others = sorted((j for j in range(len(attempts)) if j // G != group), key=lambda j: (j % G, j))
    chosen = (others[: max(0, n - len(own))] + own)[-n:]
    return [attempts[j] for j in chosen]


def second_specs(
    y1: list[Trajectory], D: list[Revision], per: int
) -> tuple[list[EpisodeSpec], list[int]]:
    """``per`` second attempts of each revision's task under its prompt, and their owners."""
    specs, owner = [], []
    for k, d in enumerate(D):
        t = y1[d.first]
        specs += [EpisodeSpec(t.split, t.task, t.seed, system=d.prompt, label="attempt2")] * per
        owner += [k] * per
    return specs, owner


def reflection_rewards(r2: list[float], owner: list[int], n: int) -> list[float]:
    """The reward of each of the ``n`` reflections: the mean r2 of its second attempts."""
    sums, counts = [0.0] * n, [0] * n
    for r, k in zip(r2, owner, strict=True):
        sums[k] += r
        counts[k] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]


def update_memory(
    m: str, D: list[Revision], r2: list[float], owner: list[int], tau: float
) -> tuple[str, int]:
    """Return (m, updates): m <- D for each written D, in order, with a second r2 >= tau."""
    solved = {k for r, k in zip(r2, owner, strict=True) if r >= tau}
    updates = 0
    for k, d in enumerate(D):
        if k in solved and d.reflection is not None and d.reflection.ok:
            m, updates = d.reflection.text, updates + 1
    return m, updates


# ---------------------------------------------------------------------------------------------
# Trajectories as the reflection sees them, and as the trainer sees the reflection


def attempt_of(traj: Trajectory) -> reflect.Attempt:
    """A played episode as a rulebook request shows it (observations, effects, rewards)."""
    obs = [observation_of(s.user) for s in traj.steps]
    effect = effects(obs, traj.steps)
    steps = [
        reflect.Step(s.action if s.action is not None else s.completion.strip()[:40],
                     s.feedback, s.action_valid, o, e, s.reward)
        for s, o, e in zip(traj.steps, obs, effect, strict=True)
    ]  # fmt: skip
    return reflect.Attempt(steps, traj.score, task_of(traj), list(traj.rubric))


def effects(obs: list[str], steps: list[Turn]) -> list[bool]:
    """Whether each step had an effect: valid, and the next observation differs.

    When each observation opens with the previous step's feedback line, observations are
    compared without it. The last step has no next observation: it had an effect unless its
    feedback is one that steps without effect gave.
    """
    if not steps:
        return []
    lead = len(obs) > 1 and all(
        o.split("\n", 1)[0].strip() == s.feedback.strip()
        for o, s in zip(obs[1:], steps[:-1], strict=True)
    )
    body = [o.split("\n", 1)[-1] if lead else o for o in obs]
    out = [s.action_valid and body[t] != body[t + 1] for t, s in enumerate(steps[:-1])]
    idle = {s.feedback for s, e in zip(steps[:-1], out, strict=True) if not e}
    return [*out, steps[-1].action_valid and steps[-1].feedback not in idle]


def with_reminder(prompt: str) -> str:
    """``prompt`` ending with the reply-format line (added unless it ends with it already)."""
    prompt = prompt.rstrip()
    return prompt if prompt.endswith(REPLY_FORMAT) else f"{prompt}\n\n{REPLY_FORMAT}"


def reflection_sample(
    run: ERLRun, y1: Trajectory, q: reflect.ReflectionRequest, d: reflect.Reflection
) -> Trajectory | None:
    """The reflection as a one-turn trajectory, trainable as any rollout.

    Its prompt encoded as the policy saw it (:meth:`HFPolicy.context_ids` of the messages),
    the reply's ids and log-probs as sampled; None when the provider returned no ids.
    """
    encoder = getattr(run.policy, "encoder", None)
    prompt = getattr(run.reflector, "prompt", None)
    if not d.token_ids or encoder is None or prompt is None:
        return None
    messages = prompt(q).messages  # [system, user]: what the policy reflector sent
    system, user = messages[0]["content"], messages[1]["content"]
    t = Trajectory(y1.env_id, y1.split, y1.task, y1.seed, system, label="reflection")
    t.segments = [encoder.system(system), encoder.user(system, user),
                  Segment("assistant", list(d.token_ids), True)]  # fmt: skip
    closing = encoder.closing_after(d.token_ids)
    if closing is not None:
        t.segments.append(closing)
    t.steps = [Turn(user, d.text, None, True, 0.0, "", context=[0, 1], reply=2,
                    logprobs=list(d.logprobs))]  # fmt: skip
    return t


def internalized(y2: Trajectory, system: str, encoder: ChatEncoder) -> Trajectory:
    """``y2`` re-rendered under the original ``system``: the reflection removed.

    Its replies (and the template ids that close them) are kept as sampled; the system and
    user segments are encoded again under ``system``; log-probs are dropped (RAFT needs none).
    """
    if not y2.segments:
        raise ValueError("Expect a second attempt recorded with token ids, actually: text only")
    users = {s.context[-1]: s.user for s in y2.steps}  # each step's own user segment
    segments = []
    for i, seg in enumerate(y2.segments):
        if seg.role == "system":
            seg = encoder.system(system)
        elif seg.role == "user":
            seg = encoder.user(system, users[i])
        segments.append(seg)
    t = dataclasses.replace(y2, system=system, context=[], label="internalized", snapshots=[])
    t.segments = segments
    t.steps = [dataclasses.replace(s, logprobs=[]) for s in y2.steps]
    return t


# ---------------------------------------------------------------------------------------------
# Step 7 and the update


def training_set(rd: Round, config: ERLConfig, encoder: ChatEncoder | None) -> TrainSet:
    """The trained roles of a round: GRPO on y1, y2 and the reflections, RAFT on distilled y2.

    Groups: the G first attempts of a task; the second attempts and the reflections of a task.
    With no row at all, the step runs on y1 with A = 0 (the KL term alone), as grpo does.
    """
    G, std = config.G, config.scale_std
    out = TrainSet([], [])
    if config.train_first:
        out.pg += rd.y1
        out.A += advantages(rd.r1, G, std)
    if config.train_second and rd.y2:
        out.pg += rd.y2
        out.A += grouped_advantages(rd.r2, [rd.D[k].first // G for k in rd.owner], std)
    trained = [(d.sample, r, d.first // G) for d, r in zip(rd.D, rd.rD, strict=True)
               if d.sample is not None]  # fmt: skip
    if config.train_reflection and trained:
        out.pg += [s for s, _, _ in trained]
        out.A += grouped_advantages([r for _, r, _ in trained], [g for _, _, g in trained], std)
    if config.internalize and encoder is not None:
        for y, r, k in zip(rd.y2, rd.r2, rd.owner, strict=True):
            if r > config.internalize_above:  # -1[r2 > 0] log pi(y2 | x), weight max(r2, 0)
                out.raft.append(internalized(y, rd.y1[rd.D[k].first].system, encoder))
                out.w.append(max(r, 0.0))
    if not out.pg and not out.raft:
        out.pg, out.A = list(rd.y1), [0.0] * len(rd.y1)
    return out


def grouped_advantages(rewards: list[float], groups: list[int], scale_std: bool) -> list[float]:
    """Group-normalized advantages over groups of any size (``groups``: a group id per row)."""
    from earlyexp.agents.train.losses import group_advantages

    if scale_std:
        return group_advantages(rewards, groups)
    mean = {g: sum(r for r, h in zip(rewards, groups, strict=True) if h == g)
            / groups.count(g) for g in set(groups)}  # fmt: skip
    return [r - mean[g] for r, g in zip(rewards, groups, strict=True)]


@dataclass
class RoleBatch:
    """A micro-batch and the loss it takes: ``pg`` (clipped PG + KL) or ``raft``."""

    role: str
    batch: Any

    def to(self, device: Any) -> RoleBatch:
        """The batch on ``device``."""
        return RoleBatch(self.role, self.batch.to(device))


def role_loss(model: Any, rb: RoleBatch, *, pg: Any) -> tuple[Any, dict[str, float]]:
    """``raft_loss`` on RAFT micro-batches, grpo's ``pg`` loss on the others."""
    from earlyexp.agents.train.losses import raft_loss

    return raft_loss(model, rb.batch) if rb.role == "raft" else pg(model, rb.batch)


class ERLUpdater(PolicyUpdater):
    """grpo's updater; RAFT micro-batches join the PG ones in each optimizer step."""

    def __init__(self, net: Any, tokenizer: Any, config: ERLConfig, seed: int, state_dir: Path):
        super().__init__(net, tokenizer, config, seed, state_dir)
        self.trainer.loss_fn = partial(role_loss, pg=self.trainer.loss_fn)

    def update_roles(self, data: TrainSet, mode: str) -> dict[str, float]:
        """``updates_per_iter`` steps on the PG rows and the RAFT rows.

        PG rows whose A is 0 are left out, unless every A is 0 (then all run: the KL term
        alone moves them), as grpo.
        """
        from earlyexp.agents.train.batch import TrainBatch

        metrics: dict[str, float] = {"kept": float(sum(a != 0.0 for a in data.A))}
        size = self.config.minibatch
        for _ in range(self.config.updates_per_iter):
            parts: list[RoleBatch] = []
            if data.pg:
                pg = self.pg_batch(data.pg, data.A, mode)
                parts += [RoleBatch("pg", b) for b in pg.split(size)]
            if data.raft:
                raft = TrainBatch.from_trajectories(data.raft, self.pad, mode, weights=data.w)
                parts += [RoleBatch("raft", b) for b in raft.split(size)]
            metrics |= self.trainer.step(parts)
        self.net.eval()
        return metrics


# ---------------------------------------------------------------------------------------------
# Counts


@dataclass
class IterationStats:
    """What one iteration did (``erl_stats.json``)."""

    iteration: int
    first_attempts: int
    r1: float
    gated: int
    gated_tasks: int
    reflections: int
    missing_tag: int
    failed_reflections: int
    second_attempts: int
    r2: float
    memory_updates: int
    internalized: int
    samples: int
    reflection_samples: int
    """Reflections sampled from a model (with token ids)."""
    tokens: int
    memory: str | None = None
    """The memory after the iteration, when it changed."""
    invalid_first: int = 0
    """Replies the env rejected (invalid actions) in the first attempts."""
    invalid_second: int = 0
    """Replies the env rejected in the second attempts."""
    internalized_invalid: int = 0
    """Rejected replies inside the internalized (RAFT) samples."""

    @classmethod
    def of(cls, it: int, rd: Round, data: TrainSet, G: int, changed: bool) -> IterationStats:
        """The counts of round ``rd`` and its training set."""
        written = [d.reflection for d in rd.D if d.reflection is not None]
        tokens = sum(t.tokens for t in rd.y1 + rd.y2) + sum(len(d.token_ids) for d in written)
        return cls(
            it, len(rd.y1), _mean(rd.r1), len(rd.D), len({d.first // G for d in rd.D}),
            len(written), sum(d.missing_tag for d in rd.D),
            sum(not d.ok and d.error != reflect.MISSING_PROMPT_TAG for d in written),
            len(rd.y2), _mean(rd.r2), rd.memory_updates, len(data.raft),
            len(rd.y1) + len(rd.y2), sum(bool(d.token_ids) for d in written), tokens,
            rd.m if changed else None, sum(t.invalid for t in rd.y1),
            sum(t.invalid for t in rd.y2), sum(t.invalid for t in data.raft),
        )  # fmt: skip


def _mean(x: list[float]) -> float:
    return round(sum(x) / len(x), 5) if x else 0.0


TOTALS = ("first_attempts", "gated", "gated_tasks", "reflections", "missing_tag",
          "failed_reflections", "second_attempts", "memory_updates", "internalized", "samples",
          "reflection_samples", "tokens", "invalid_first", "invalid_second",
          "internalized_invalid")  # fmt: skip


@dataclass
class ERLStats:
    """``erl_stats.json``: the provider, the settings, each iteration's counts, the totals."""

    path: Path
    provider: str
    settings: dict[str, Any]
    iterations: list[IterationStats] = field(default_factory=list)

    @classmethod
    def resume(cls, path: Path, provider: str, settings: dict, start: int) -> ERLStats:
        """The stats of a run resumed at iteration ``start`` (later ones are redone)."""
        stats = cls(path, provider, settings)
        if path.exists():
            old = json.loads(path.read_text())["iterations"]
            stats.iterations = [IterationStats(**e) for e in old if e["iteration"] < start]
        return stats

    @property
    def memory(self) -> str:
        """The memory as the last recorded change left it ("" when none)."""
        return next((e.memory for e in reversed(self.iterations) if e.memory is not None), "")

    def add(self, it: IterationStats) -> None:
        """Record one iteration and rewrite the file."""
        self.iterations.append(it)
        total = {k: sum(getattr(e, k) for e in self.iterations) for k in TOTALS}
        data = {"provider": self.provider, "settings": self.settings, "total": total,
                "memory": self.memory,
                "iterations": [dataclasses.asdict(e) for e in self.iterations]}  # fmt: skip
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)


# ---------------------------------------------------------------------------------------------
# The method


def make_erl_reflector(config: ERLConfig, policy: Any, seed: int) -> reflect.ReflectionProvider:
    """The provider ``config.reflector``; model providers sample up to ``</prompt>``."""
    sampling = SamplingParams(
        max_new_tokens=config.reflection_tokens, temperature=config.sample_temperature,
        top_p=config.top_p, stop=(reflect.PROMPT_CLOSE,), seed=seed,
    )  # fmt: skip
    return reflect.make_reflector(
        config.reflector, policy=policy, url=config.reflector_url or None, sampling=sampling,
        max_chars=config.max_prompt_chars,
    )  # fmt: skip


@register("erl", config=ERLConfig, kind="llm", trains=True)
def run(
    *, env_id: str, seed: int, config: ERLConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """Experiential RL: gated reflection, second attempt, memory, internalization."""
    path, run_dir = start_checkpoint(config.init, model, kwargs), Path(run_dir)
    with torch_threads(config, model):
        return _erl(env_id, seed, config, run_dir, device, model, path, kwargs.get("pool"))


def _erl(
    env_id: str, seed: int, config: ERLConfig, run_dir: Path, device: str, model: str,
    path: Path, pool: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    from earlyexp.agents.backends.hf import HFPolicy

    prompt, policy, updater, curve, start = rl_start(
        ERLUpdater, config, model, path, device, seed, run_dir
    )
    # long prompts: small generation batches
    writer = HFPolicy(policy.model, policy.tokenizer, batch_size=8)
    ctx = ERLRun(env_id, seed, config, prompt, policy, make_erl_reflector(config, writer, seed),
                 pool)  # fmt: skip
    settings = {k: getattr(config, k) for k in ("reflection", "memory", "tau", "G",
                "second_per_reflection", "train_first", "train_second", "train_reflection",
                "internalize")}  # fmt: skip
    stats = ERLStats.resume(run_dir / STATS_FILE, ctx.reflector.name, settings, start)
    m = stats.memory
    for it in iterations(start, config, "erl"):
        curve_point(curve, it, policy, env_id, config, seed, prompt, pool)
        rd = erl_round(it, ctx, m)
        data = training_set(rd, config, policy.encoder)
        metrics = updater.update_roles(data, pick_mode(config.mode, rd.y1 + rd.y2, prompt.window))
        it_stats = IterationStats.of(it, rd, data, config.G, changed=rd.m != m)
        curve.step(it, rd.r1 + rd.r2, metrics, it_stats.tokens, it_stats.samples)
        stats.add(it_stats)
        m = rd.m
    return finish_rl(curve, policy, env_id, config, seed, run_dir, prompt, pool)
