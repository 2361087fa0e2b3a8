"""Branching at expert states: the early-experience data that IWM and SR learn from.

Early Experience (arXiv 2510.08558, section 4): play expert episodes on the ``train`` stream;
at every expert state s_i take K alternative actions a_i^j (all different from the expert's
a_i), execute each in the real env from s_i and record the next state s_i^j; also record the
expert's own next state s_{i+1}. No reward is used: error messages, unchanged pages and
"nothing happens" are the signal.

1. :func:`collect_expert_states`: expert episodes played by the rollout engine with a snapshot
   of every state (``snapshots=True``), so branching never replays a prefix.
2. :func:`propose`: alternatives from the *initial* policy at a temperature, the states of
   many episodes in one generation call (``policy_share`` of K).
3. :func:`choose_alternatives`: dedupe the proposals, drop empty ones and the expert action,
   refill from uniformly sampled ``available_actions``, add ``invalid`` deliberately
   malformed ones; every alternative differs from a_i.
   A state with fewer distinct candidates than K (FrozenLake has four actions) gets fewer
   alternatives; the ``shortfall`` is counted.
4. :func:`branch`: for each state, restore, step an action, record, restore; after every
   restore the observation is re-rendered and compared with the recorded one (batched probing
   can silently desynchronize an env): a mismatch drops that sample and is counted.

:class:`BranchStats` counts proposals, refills, duplicates, invalid proposals, mismatches and
the alternatives the env rejected, for the run log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from earlyexp.agents.data import step_messages, train_specs
from earlyexp.agents.envpool import BranchRequest, PoolConfig, make_pool
from earlyexp.agents.policy import Policy, Prompt, SamplingParams
from earlyexp.agents.prompting import Message, PromptConfig, parse_action
from earlyexp.agents.rollout import RolloutEngine, Trajectory


@dataclass
class BranchConfig:
    """How alternatives are proposed at each expert state."""

    K: int = 4
    """Alternative actions per expert state (the paper's K)."""
    policy_share: float = 1.0
    """Share of the K alternatives proposed by the initial policy; the rest are drawn
    uniformly from the state's available actions."""
    invalid: int = 0
    """Of the K, this many are deliberately malformed actions (SR's 'invalid' alternatives)."""
    temperature: float = 0.9
    """Sampling temperature of the policy's proposals (the paper: 0.5-1.0)."""
    max_new_tokens: int = 32
    """Tokens per proposal at most."""
    max_steps: int = 0
    """Use only episodes of at most this many expert steps (0: all; the paper's WebShop SR
    keeps trajectories under 15 steps)."""

    def __post_init__(self) -> None:
        if self.K < 0:
            raise ValueError(f"Expect K >= 0, actually: {self.K}")
        if not 0.0 <= self.policy_share <= 1.0:
            raise ValueError(f"Expect policy_share in [0, 1], actually: {self.policy_share}")
        if not 0 <= self.invalid <= self.K:
            raise ValueError(f"Expect 0 <= invalid <= K, actually: {self.invalid} (K={self.K})")


@dataclass
class Outcome:
    """What one action did from an expert state.

    Attributes:
        action: the action sent to the env.
        obs: the next observation s'.
        summary: ``env.summarize`` of s' (the IWM target).
        feedback: ``info["feedback"]``.
        valid: ``info["action_valid"]``.
        done: the action ended the episode.
    """

    action: str
    obs: str
    summary: str
    feedback: str
    valid: bool
    done: bool


@dataclass
class ExpertState:
    """One expert state s_i with the expert's outcome and the alternatives' outcomes.

    Attributes:
        traj: the expert episode.
        t: the step index of s_i in it.
        messages: the agent's conversation at s_i (system, window, user), as it sees it.
        expert: the expert action's outcome (s_{i+1}).
        alternatives: the K alternatives' outcomes (minus dropped samples).
    """

    traj: Trajectory = field(repr=False)
    t: int
    messages: list[Message]
    expert: Outcome
    alternatives: list[Outcome] = field(default_factory=list)

    @property
    def task(self) -> str:
        """The instruction (from the system prompt's ``Task:`` line)."""
        m = re.search(r"^Task: (.*)$", self.traj.system, re.M)
        return m.group(1) if m else ""

    @property
    def user(self) -> str:
        """The user message at s_i (observation and available actions)."""
        return self.traj.steps[self.t].user


@dataclass
class BranchStats:
    """Counts for the run log."""

    states: int = 0
    proposals: int = 0
    proposals_used: int = 0
    duplicates: int = 0
    empty_or_expert: int = 0
    refills: int = 0
    invalid_added: int = 0
    mismatches: int = 0
    shortfall: int = 0
    samples: int = 0
    rejected: int = 0
    """Kept alternatives the env rejected (``action_valid`` false): malformed or not allowed."""

    def to_json(self) -> dict[str, int]:
        """The counts as a dict."""
        return asdict(self)


def collect_expert_states(
    env_id: str,
    episodes: int,
    seed: int,
    prompt: PromptConfig,
    num_envs: int = 16,
    pool: PoolConfig | None = None,
) -> list[Trajectory]:
    """Expert episodes of the train stream with a snapshot of every state."""
    from earlyexp.agents.backends.scripted import ExpertPolicy

    engine = RolloutEngine(ExpertPolicy(), prompt, pool=pool)
    desc = f"expert states ({env_id.removeprefix('EarlyExp/')})"
    return engine.run(env_id, train_specs(episodes, seed), num_envs, snapshots=True, progress=desc)


def states_of(trajs: Sequence[Trajectory], window: int, max_steps: int = 0) -> list[tuple]:
    """``(traj, t, messages)`` of every expert state (episodes over ``max_steps`` skipped)."""
    out = []
    for traj in trajs:
        if max_steps and len(traj.steps) > max_steps:
            continue
        for t, messages in enumerate(step_messages(traj, window)):
            out.append((traj, t, messages[:-1]))  # drop the expert's reply
    return out


def propose(
    policy: Policy | None, states: Sequence[tuple], n: int, config: BranchConfig, seed: int
) -> list[list[str]]:
    """``n`` proposals of ``policy`` per state (parse failures become ``""``), one call."""
    if policy is None or n == 0:
        return [[] for _ in states]
    prompts = [Prompt(messages) for _, _, messages in states for _ in range(n)]
    sampling = SamplingParams(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=seed
    )
    texts = [c.text for c in policy.complete(prompts, sampling)]
    actions = [parse_action(t) or "" for t in texts]
    return [actions[i * n : (i + 1) * n] for i in range(len(states))]


def invalid_action(available: Sequence[str], rng: np.random.Generator) -> str:
    """A deliberately malformed action in the shape of the env's actions."""
    junk = "".join(rng.choice(list("qxzjvk"), size=6))
    sample = available[int(rng.integers(len(available)))] if available else ""
    if "[" in sample:
        return sample[: sample.index("[")] + f"[{junk}]"
    if "(" in sample:
        return sample[: sample.index("(")] + f"({junk}=1)"
    return junk.capitalize()


def choose_alternatives(
    proposals: Sequence[str],
    available: Sequence[str],
    expert: str,
    config: BranchConfig,
    rng: np.random.Generator,
    stats: BranchStats,
) -> list[str]:
    """The K alternatives of one state: proposals, uniform refills, invalid ones; none = expert."""
    chosen: list[str] = []
    n_policy = round(config.policy_share * (config.K - config.invalid))
    for a in proposals:
        if len(chosen) == n_policy:
            break
        if not a.strip() or a == expert:
            stats.empty_or_expert += 1
        elif a in chosen:
            stats.duplicates += 1
        else:
            chosen.append(a)
            stats.proposals_used += 1
    pool = [a for a in dict.fromkeys(available) if a != expert and a not in chosen]
    order = rng.permutation(len(pool)).tolist()
    while len(chosen) < config.K - config.invalid and order:
        chosen.append(pool[order.pop()])
        stats.refills += 1
    target = len(chosen) + config.invalid
    for _ in range(50 * config.invalid):  # bounded: malformed actions differ from the expert's
        if len(chosen) == target:
            break
        bad = invalid_action(available, rng)
        if bad != expert and bad not in chosen:
            chosen.append(bad)
            stats.invalid_added += 1
    return chosen


def branch(
    env_id: str,
    trajs: Sequence[Trajectory],
    config: BranchConfig,
    window: int,
    seed: int,
    policy: Policy | None = None,
    num_envs: int = 8,
    pool_config: PoolConfig | None = None,
) -> tuple[list[ExpertState], BranchStats]:
    """Branch K alternatives (and the expert action) at every expert state of ``trajs``."""
    stats = BranchStats()
    states = states_of(trajs, window, config.max_steps)
    n_policy = round(config.policy_share * (config.K - config.invalid))
    proposals = propose(policy, states, n_policy, config, seed)
    stats.states, stats.proposals = len(states), sum(len(p) for p in proposals)
    requests = []
    for i, ((traj, t, _), props) in enumerate(zip(states, proposals, strict=True)):
        step = traj.steps[t]
        rng = np.random.default_rng([seed, i])
        alts = choose_alternatives(props, step.available, step.action or "", config, rng, stats)
        requests.append(BranchRequest(i % num_envs, traj.snapshots[t], (step.action or "", *alts)))
    pool = make_pool(env_id, min(num_envs, max(len(requests), 1)), pool_config)
    try:
        results = _branch_all(pool, requests, num_envs)
    finally:
        pool.close()
    out = []
    for (traj, t, messages), req, result in zip(states, requests, results, strict=True):
        outcomes = [_outcome(a, v) for a, v in zip(req.actions, result.outcomes, strict=True)]
        stats.shortfall += config.K - (len(req.actions) - 1)
        if result.desync[0]:
            stats.mismatches += sum(result.desync)
            continue  # the expert's own branch desynchronized: the state is unusable
        kept = [o for o, bad in zip(outcomes[1:], result.desync[1:], strict=True) if not bad]
        stats.mismatches += len(outcomes) - 1 - len(kept)
        stats.samples += len(kept)
        stats.rejected += sum(not o.valid for o in kept)
        out.append(ExpertState(traj, t, messages, outcomes[0], kept))
    return out, stats


def _branch_all(pool: Any, requests: list[BranchRequest], num_envs: int) -> list[Any]:
    """``pool.branch`` over ``requests`` in chunks, with a bar of the states branched."""
    from earlyexp.progress import bar

    chunk = max(64, 16 * num_envs)
    results: list[Any] = []
    with bar(total=len(requests), desc="branching K alternatives", unit="state") as shown:
        for start in range(0, len(requests), chunk):
            results += pool.branch(requests[start : start + chunk])
            shown.update(min(chunk, len(requests) - start))
    return results


def _outcome(action: str, view: Any) -> Outcome:
    info = view.info
    return Outcome(
        action, view.obs, view.summary, str(info.get("feedback", "")),
        bool(info.get("action_valid", True)), view.done,
    )  # fmt: skip
