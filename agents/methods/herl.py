"""``herl``: HeRL, hindsight-experience-guided RL, on the multi-turn GRPO of :mod:`.grpo`.

Experience is the Best Teacher (HeRL, arXiv 2603.20046), for multi-turn envs whose episodes
end with a rubric (``info["rubric"]``). Each iteration:

1. GRPO rollouts: ``tasks_per_iter`` tasks, ``G`` rollouts each, rewards r
   (:func:`~.grpo.iteration_specs`, :func:`~.grpo.group_rewards`).
2. Hindsight experience: in each group whose best score is below ``tau`` (no member met the
   whole rubric), the best-scoring failures, most rubric items met first, at most
   ``candidate_limit``. A provider (``reflector``: grounded by default, or the policy) turns
   each failure and its rubric into a revision guide (the ``revision`` request of
   :mod:`earlyexp.agents.reflect`: keep the met items, fix the unmet ones), followed by the
   failed attempt's actions. ``rubric_guide=False`` is the naive-HE ablation: no rubric.
3. Revision: a new episode of the same task (same split, task and seed) with the guide as a
   ``guide`` context block, sampled at ``revision_temperature`` (0.3); its reward r_revised.
4. Bonus: each revised original's reward r <- r + alpha (r_revised - r) (``alpha=0``: the
   no-bonus ablation).
5. Replacement: a group's best revision, when its reward beats the group's best reward,
   replaces a random member of the group (seeded), so the group keeps its size. When no
   revision beats it the group is left as it is (the authors' code then puts a tying
   revision, else a copy of the best original, in that slot; here nothing is replaced).
6. A = group-normalized advantages of the groups after replacement. Update: the clipped
   surrogate on on-policy rows; the replacing revision, trained under its guide context as an
   off-policy row, gets the unclipped shaped loss -A rho / (rho + gamma), rho = pi_theta /
   pi_old (gamma 1; the authors' scripts use 0.1), plus grpo's beta * k3 KL.
7. Every ``eval_every`` iterations, the learning curve (``curve.json``); at the end, the
   policy is evaluated alone, pi(.|x), as grpo. The curve's train reward and sample count
   cover every episode played, revisions included (their cost).

Counts (groups revised, revisions, replacements, bonus applied, samples, tokens) are in
``herl_stats.json``, per iteration and in total. Ablations are registered as their own
methods: ``herl_naive`` (naive HE) and ``herl_nobonus`` (alpha 0).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    close_policy,
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
from earlyexp.agents.methods.reflexion import REFLECTORS, attempt_request
from earlyexp.agents.policy import SamplingParams
from earlyexp.agents.prompting import ContextBlock
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.reflect import Reflection, ReflectionProvider, ReflectionRequest
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory

STATS_FILE = "herl_stats.json"


@dataclass
class HeRLConfig(GRPOConfig):
    """``herl``: GRPO plus revisions of failed groups under a rubric guide."""

    tau: float = 1.0
    """Revise the groups whose best score is below this (1: no member met the whole rubric)."""
    candidate_limit: int = 4
    """Failures revised per group at most: the best-scoring ones, most rubric items met first
    (the authors' scripts: 16, i.e. every tied member of a group of 8)."""
    revision_temperature: float = 0.3
    """Sampling temperature of the revised attempts."""
    reflector: str = "grounded"
    """Who writes the revision guides: grounded (from the rubric and the env's feedback; the
    tiny model cannot write one), policy (the policy itself) or http (reflector_url)."""
    reflector_url: str = ""
    """The guide model, http://HOST:PORT/v1#MODEL (reflector http)."""
    rubric_guide: bool = True
    """Give the guide the rubric (met and unmet items); False: naive HE, the failed attempt
    and its score only."""
    alpha: float = 0.05
    """Bonus of a revised original: r <- r + alpha (r_revised - r) (0: no bonus)."""
    gamma: float = 1.0
    """Shaped weight of the replacing revision: -A rho / (rho + gamma), unclipped."""
    max_guide_actions: int = 30
    """The guide lists the failed attempt's last this many actions."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.candidate_limit < 0 or self.max_guide_actions < 1:
            raise ValueError(
                "Expect candidate_limit >= 0 and max_guide_actions >= 1, actually: "
                f"{self.candidate_limit}, {self.max_guide_actions}"
            )
        if not (0 <= self.alpha <= 1 and self.gamma > 0 and self.revision_temperature >= 0):
            raise ValueError(
                "Expect 0 <= alpha <= 1, gamma > 0 and revision_temperature >= 0, actually: "
                f"{self.alpha}, {self.gamma}, {self.revision_temperature}"
            )
        if self.reflector not in REFLECTORS:
            raise ValueError(f"Expect a reflector in {REFLECTORS}, actually: {self.reflector!r}")


@dataclass
class NaiveHEConfig(HeRLConfig):
    """``herl_naive``: HeRL whose guides carry no rubric (the naive-HE ablation)."""

    rubric_guide: bool = False
    """Give the guide the rubric (met and unmet items); False: naive HE, the failed attempt
    and its score only."""


@dataclass
class NoBonusConfig(HeRLConfig):
    """``herl_nobonus``: HeRL without the bonus of revised originals (alpha 0)."""

    alpha: float = 0.0
    """Bonus of a revised original: r <- r + alpha (r_revised - r) (0: no bonus)."""


# ---------------------------------------------------------------------------------------------
# Steps 2-3: hindsight experience, guides and revised attempts


@dataclass
class Revision:
    """One revised attempt of a failed rollout.

    Attributes:
        original: index of the revised rollout in the iteration's batch.
        guide: the ``guide`` context block it is played (and trained) under.
        traj: the revised episode (None until played).
        r: its reward (score minus the invalid-action penalty).
    """

    original: int
    guide: ContextBlock
    traj: Trajectory | None = None
    r: float = 0.0


def revision_candidates(trajs: Sequence[Trajectory], G: int, tau: float, limit: int) -> list[int]:
    """Indices of the failures to revise (step 2).

    Per group of G whose best score is below ``tau``: the members tied at the best score, most
    rubric items met first, at most ``limit``.
    """
    out: list[int] = []
    for g in range(0, len(trajs), G):
        scores = [t.score for t in trajs[g : g + G]]
        if max(scores) >= tau:
            continue  # a member met the whole rubric: GRPO's own signal suffices
        best = [g + i for i, s in enumerate(scores) if abs(s - max(scores)) < 1e-6]
        best.sort(key=lambda i: -sum(bool(c["met"]) for c in trajs[i].rubric))  # stable
        out += best[:limit]
    return out


def guide_block(
    reflection: Reflection, request: ReflectionRequest, max_actions: int
) -> ContextBlock:
    """The revision context: the provider's guide, then the failed attempt's actions."""
    actions = [f'"{s.action}"' for s in request.steps][-max_actions:]
    attempt = ", ".join(actions) if actions else "(none)"
    return ContextBlock("guide", f"{reflection.text}\nThe previous attempt's actions: {attempt}.")


def write_guides(
    trajs: Sequence[Trajectory], candidates: Sequence[int], reflector: ReflectionProvider,
    config: HeRLConfig,
) -> tuple[list[Revision], int]:  # fmt: skip
    """A revision (not played yet) per candidate whose guide was written; and the failures."""
    requests = [attempt_request(trajs[i], "revision", config.rubric_guide) for i in candidates]
    reflections = reflector.reflect(requests)
    revisions = [
        Revision(i, guide_block(refl, req, config.max_guide_actions))
        for i, req, refl in zip(candidates, requests, reflections, strict=True)
        if refl.ok
    ]
    return revisions, len(candidates) - len(revisions)


def play_revisions(
    engine: RolloutEngine, env_id: str, trajs: Sequence[Trajectory], revisions: list[Revision],
    config: HeRLConfig,
) -> None:  # fmt: skip
    """Play each revision: the original's task again (same split, task, seed), under its guide."""
    specs = [
        EpisodeSpec(trajs[v.original].split, trajs[v.original].task, trajs[v.original].seed,
                    context=(v.guide,), label="revision")
        for v in revisions
    ]  # fmt: skip
    played = engine.run(env_id, specs, config.batch_size * 4)
    for v, traj, r in zip(revisions, played, group_rewards(played, config.invalid_penalty),
                          strict=True):  # fmt: skip
        v.traj, v.r = traj, r


# ---------------------------------------------------------------------------------------------
# Steps 4-5: bonus and replacement


def bonus(r: float, r_revised: float, alpha: float) -> float:
    """HeRL's bonus of a revised original: r + alpha (r_revised - r)."""
    return r + alpha * (r_revised - r)


@dataclass
class HeRLBatch:
    """The iteration's training batch after bonus and replacement.

    Attributes:
        trajs: the rollouts, a group's best revision in place of one member where it won.
        r: the rewards the advantages are computed from (bonus included).
        off_policy: True on the replacing revisions (HeRL's shaped loss).
        replaced: groups where a revision replaced a member.
        bonus_applied: revised originals whose reward the bonus changed.
    """

    trajs: list[Trajectory]
    r: list[float]
    off_policy: list[bool]
    replaced: int = 0
    bonus_applied: int = 0


def hindsight_batch(
    trajs: Sequence[Trajectory], r: Sequence[float], revisions: Sequence[Revision], G: int,
    alpha: float, rng: random.Random,
) -> HeRLBatch:  # fmt: skip
    """Steps 4-5: the bonus, then the replacements.

    Each revised original gets :func:`bonus`; then each group's best revision whose reward
    beats the group's best reward (before the bonus) replaces a random member (``rng``).
    """
    r2 = list(r)
    for v in revisions:
        r2[v.original] = bonus(r[v.original], v.r, alpha)
    batch = HeRLBatch(list(trajs), r2, [False] * len(trajs))
    batch.bonus_applied = sum(a != b for a, b in zip(r, r2, strict=True))
    for g in range(0, len(trajs), G):
        mine = [v for v in revisions if g <= v.original < g + G and v.traj is not None]
        best = max(mine, key=lambda v: v.r, default=None)
        if best is None or best.traj is None or best.r <= max(r[g : g + G]):
            continue  # no revision beats the group: no replacement
        slot = g + rng.randrange(G)
        batch.trajs[slot], batch.r[slot], batch.off_policy[slot] = best.traj, best.r, True
        batch.replaced += 1
    return batch


# ---------------------------------------------------------------------------------------------
# Step 6: the update


class HeRLUpdater(PolicyUpdater):
    """grpo's updater with HeRL's loss: rows flagged off-policy get -A rho / (rho + gamma)."""

    def loss(self) -> Any:
        """The loss of grpo, with the off-policy shaping of ``gamma``."""
        from earlyexp.agents.train.losses import policy_loss

        c = self.config
        return partial(policy_loss, eps_low=c.eps_low, eps_high=c.eps_high, beta=c.beta,
                       gamma=c.gamma)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Counts


@dataclass
class IterationStats:
    """What one iteration did."""

    iteration: int
    groups: int
    groups_revised: int
    candidates: int
    guides_failed: int
    revisions: int
    revisions_solved: int
    replacements: int
    bonus_applied: int
    samples: int
    tokens: int
    reward: float
    revision_reward: float


@dataclass
class HeRLStats:
    """``herl_stats.json``: the provider, each iteration's counts and their totals."""

    path: Path
    provider: str
    iterations: list[IterationStats] = field(default_factory=list)

    @classmethod
    def resume(cls, path: Path, provider: str, start: int) -> HeRLStats:
        """The stats of a run resumed at iteration ``start`` (later ones are redone)."""
        stats = cls(path, provider)
        if path.exists():
            old = json.loads(path.read_text())["iterations"]
            stats.iterations = [IterationStats(**e) for e in old if e["iteration"] < start]
        return stats

    def add(self, it: IterationStats) -> None:
        """Record one iteration and rewrite the file."""
        self.iterations.append(it)
        keys = ("groups", "groups_revised", "candidates", "guides_failed", "revisions",
                "revisions_solved", "replacements", "bonus_applied", "samples", "tokens")  # fmt: skip
        total = {k: sum(getattr(e, k) for e in self.iterations) for k in keys}
        data = {"provider": self.provider, "total": total,
                "iterations": [dataclasses.asdict(e) for e in self.iterations]}  # fmt: skip
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)


# ---------------------------------------------------------------------------------------------
# The method


@dataclass
class HeRLStep:
    """One iteration's batch, advantages and counts."""

    trajs: list[Trajectory]
    A: list[float]
    off_policy: list[bool]
    played: list[Trajectory]
    stats: IterationStats


def herl_iteration(
    it: int, policy: Any, reflector: ReflectionProvider, env_id: str, config: HeRLConfig,
    seed: int, prompt: Any, pool: Any,
) -> HeRLStep:  # fmt: skip
    """Steps 1-6 of the module docstring, up to the advantages."""
    sample = partial(SamplingParams, max_new_tokens=config.max_new_tokens, top_p=config.top_p)
    # 1. GRPO rollouts (grpo's sampling seeds: the same rollouts as grpo at iteration 0)
    engine = RolloutEngine(policy, prompt, sample(temperature=config.sample_temperature,
                                                  seed=seed * 7_919 + it), pool)  # fmt: skip
    trajs = engine.run(env_id, iteration_specs(it, config, seed), config.batch_size * 4)
    r = group_rewards(trajs, config.invalid_penalty)
    # 2. hindsight experience of the groups below tau, 3. revised attempts under the guides
    candidates = revision_candidates(trajs, config.G, config.tau, config.candidate_limit)
    revisions, failed = write_guides(trajs, candidates, reflector, config)
    revise = RolloutEngine(policy, prompt, sample(temperature=config.revision_temperature,
                                                  seed=seed * 7_919 + it + 500_009), pool)  # fmt: skip
    play_revisions(revise, env_id, trajs, revisions, config)
    # 4. bonus, 5. replacement, 6. A in the groups after replacement
    batch = hindsight_batch(trajs, r, revisions, config.G, config.alpha,
                            random.Random(seed * 1_000_003 + it))  # fmt: skip
    A = advantages(batch.r, config.G, config.scale_std)
    played = trajs + [v.traj for v in revisions if v.traj is not None]
    stats = IterationStats(
        iteration=it, groups=len(trajs) // config.G,
        groups_revised=len({i // config.G for i in candidates}), candidates=len(candidates),
        guides_failed=failed, revisions=len(revisions),
        revisions_solved=sum(v.traj is not None and v.traj.success for v in revisions),
        replacements=batch.replaced, bonus_applied=batch.bonus_applied, samples=len(played),
        tokens=sum(t.tokens for t in played), reward=sum(r) / max(len(r), 1),
        revision_reward=sum(v.r for v in revisions) / max(len(revisions), 1),
    )  # fmt: skip
    return HeRLStep(batch.trajs, A, batch.off_policy, played, stats)


@register("herl", config=HeRLConfig, kind="llm", trains=True)
def run(
    *, env_id: str, seed: int, config: HeRLConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """HeRL: GRPO with rubric-guided revisions of failed groups (off-policy, shaped loss)."""
    path, run_dir = start_checkpoint(config.init, model, kwargs), Path(run_dir)
    with torch_threads(config, model):
        return _herl(env_id, seed, config, run_dir, device, model, path, kwargs.get("pool"))


register("herl_naive", config=NaiveHEConfig, kind="llm", trains=True,
         description="HeRL ablation: naive HE, revision guides without the rubric")(run)  # fmt: skip
register("herl_nobonus", config=NoBonusConfig, kind="llm", trains=True,
         description="HeRL ablation: no bonus for revised originals (alpha 0)")(run)  # fmt: skip


def _herl(
    env_id: str, seed: int, config: HeRLConfig, run_dir: Path, device: str, model: str,
    path: Path, pool: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    from earlyexp.agents.reflect import make_reflector

    prompt, policy, updater, curve, start = rl_start(
        HeRLUpdater, config, model, path, device, seed, run_dir
    )
    reflector = make_reflector(config.reflector, policy=policy, url=config.reflector_url or None)
    stats = HeRLStats.resume(run_dir / STATS_FILE, reflector.name, start)
    try:
        for it in iterations(start, config, "herl"):
            curve_point(curve, it, policy, env_id, config, seed, prompt, pool)
            step = herl_iteration(it, policy, reflector, env_id, config, seed, prompt, pool)
            mode = pick_mode(config.mode, step.trajs, prompt.window)
            m = updater.update(step.trajs, step.A, mode, step.off_policy)
            curve.step(it, group_rewards(step.played, config.invalid_penalty), m,
                       step.stats.tokens, step.stats.samples)  # fmt: skip
            stats.add(step.stats)
    finally:
        close_policy(reflector)
    return finish_rl(curve, policy, env_id, config, seed, run_dir, prompt, pool)
