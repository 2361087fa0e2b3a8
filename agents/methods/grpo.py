"""``grpo``: multi-turn GRPO, the RLVR baseline, from any starting checkpoint.

DeepSeekMath (arXiv 2402.03300) eq. 3, as multi-turn agents use it (RAGEN, verl-agent), with
the ERL paper's setup (clip-high 0.28, KL 0.001, temperature 0.7). Each iteration:

1. ``tasks_per_iter`` tasks of the train stream, ``G`` rollouts each, sampled at
   ``sample_temperature`` / ``top_p``; the episode score is the outcome reward r (minus
   ``invalid_penalty`` per invalid action).
2. Group-normalized advantages A_i = (r_i - mean r) / (std r + eps) (``scale_std=False``: no
   division); groups whose rewards are all equal give no gradient and are dropped.
3. ``updates_per_iter`` optimizer steps over the batch (mini-batches of ``minibatch`` rows):
   the token-level clipped surrogate with eps_low / eps_high, plus beta * k3 KL to the frozen
   initial model; old log-probs are the ones the rollout recorded. Tokens of the env are
   masked. ``mode``: a whole episode as one sequence (when every turn saw the whole episode),
   or one example per turn (``auto`` picks).
4. Every ``eval_every`` iterations, the first ``eval_subset`` test tasks greedily: the
   learning curve (``curve.json``; the report plots it).

``init``: ``raw`` (the model as given), a method whose cell trained a checkpoint (``il``,
``iwm``, ``sr``: the bench runs that cell first and passes its folder), or a checkpoint path.
Training state is checkpointed; a killed cell resumes at its last checkpointed iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    Curve,
    LLMConfig,
    eval_sampling,
    eval_subset,
    evaluate_policy,
    prompt_config,
    torch_threads,
)
from earlyexp.agents.models import require_local
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import EpisodeSpec, Trajectory

INIT_METHODS = ("il", "iwm", "sr")


@dataclass
class GRPOConfig(LLMConfig):
    """``grpo``: G rollouts per task, group-normalized advantages, clipped PG + KL."""

    init: str = "raw"
    """Starting point: raw, il, iwm, sr (that method's cell checkpoint) or a checkpoint path."""
    iterations: int = 40
    """RL iterations (rollout batch, then updates)."""
    tasks_per_iter: int = 8
    """Train-stream tasks per iteration."""
    G: int = 8
    """Rollouts per task (the group)."""
    sample_temperature: float = 0.7
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus mass of the rollouts."""
    lr: float = 1e-4
    """AdamW learning rate."""
    beta: float = 0.001
    """KL coefficient (k3 estimator, to the frozen initial model; 0: no reference)."""
    eps_low: float = 0.2
    """Lower clip range of the ratio."""
    eps_high: float = 0.28
    """Upper clip range (clip-higher)."""
    scale_std: bool = True
    """Divide advantages by the group's std (False: r - mean only)."""
    loss_agg: str = "token_mean"
    """token_mean (over all policy tokens of a mini-batch) or seq_sum_mean (per sequence sum,
    then mean, as the ERL code)."""
    invalid_penalty: float = 0.0
    """Subtracted from the reward per invalid action."""
    mode: str = "auto"
    """episode (one sequence per episode), turn (one example per turn) or auto."""
    updates_per_iter: int = 2
    """Optimizer steps per rollout batch."""
    minibatch: int = 64
    """Rows per micro-batch (an update averages its micro-batches)."""
    eval_every: int = 10
    """Evaluate the learning curve every this many iterations (0: only at the end)."""
    eval_subset: int = 20
    """Test tasks of the learning curve (greedy)."""
    checkpoint_every: int = 10
    """Checkpoint the training state every this many iterations (0: never)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("iterations", "tasks_per_iter", "G", "updates_per_iter", "minibatch"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        if self.loss_agg not in ("token_mean", "seq_sum_mean"):
            raise ValueError(
                f"Expect loss_agg token_mean or seq_sum_mean, actually: {self.loss_agg!r}"
            )
        if self.mode not in ("auto", "episode", "turn"):
            raise ValueError(f"Expect mode auto, episode or turn, actually: {self.mode!r}")


def group_rewards(trajs: list[Trajectory], penalty: float) -> list[float]:
    """The outcome reward of each rollout: the score, minus ``penalty`` per invalid action."""
    return [t.score - penalty * t.invalid for t in trajs]


def advantages(rewards: list[float], G: int, scale_std: bool) -> list[float]:
    """A = (r - group mean) / (group std + eps), groups of G consecutive rollouts."""
    from earlyexp.agents.train.losses import group_advantages

    groups = [i // G for i in range(len(rewards))]
    if scale_std:
        return group_advantages(rewards, groups)
    means = {g: sum(rewards[j] for j in range(len(rewards)) if groups[j] == g) / G for g in groups}
    return [r - means[g] for r, g in zip(rewards, groups, strict=True)]


def pick_mode(mode: str, trajs: list[Trajectory], window: int) -> str:
    """``episode`` when every turn of every rollout saw the whole episode, else ``turn``."""
    if mode != "auto":
        return mode
    return "episode" if all(len(t.steps) <= window + 1 for t in trajs) else "turn"


def aggregated(loss_fn: Any, agg: str) -> Any:
    """``loss_fn`` with per-sequence sums averaged over sequences (``seq_sum_mean``)."""
    if agg == "token_mean":
        return loss_fn

    def seq_sum_mean(model: Any, batch: Any) -> Any:
        import dataclasses

        n_tokens, B = batch.mask[:, 1:].sum().clamp(min=1), len(batch.input_ids)
        scaled = dataclasses.replace(batch, weights=batch.weights * n_tokens / B)
        return loss_fn(model, scaled)

    return seq_sum_mean


def kept_rows(A: list[float]) -> list[int]:
    """Rows whose advantage is not 0, or every row when all are 0.

    Uniform groups give no policy gradient; when every group is uniform the step still runs
    on all rows (the KL term alone moves them).
    """
    return [i for i, a in enumerate(A) if a != 0.0] or list(range(len(A)))


class PolicyUpdater:
    """The GRPO update: a frozen reference, the shared trainer, the clipped loss.

    Subclasses change the loss (:meth:`loss`) or add micro-batches of other kinds around
    :meth:`pg_batch` (erl's RAFT rows).
    """

    def __init__(self, net: Any, tokenizer: Any, config: GRPOConfig, seed: int, state_dir: Path):
        import copy

        from earlyexp.agents.train.loop import TrainConfig, Trainer

        self.net, self.config = net, config
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.ref = copy.deepcopy(net).eval() if config.beta > 0 else None
        every = config.checkpoint_every * config.updates_per_iter
        train = TrainConfig(
            steps=config.iterations * config.updates_per_iter, lr=config.lr,
            warmup_ratio=0.0, seed=seed, log_every=1, checkpoint_every=every,
        )  # fmt: skip
        self.trainer = Trainer(net, aggregated(self.loss(), config.loss_agg), train, state_dir,
                               "grpo")  # fmt: skip

    def loss(self) -> Any:
        """The per-micro-batch loss: clipped surrogate (eps_low / eps_high) + beta * k3 KL."""
        from earlyexp.agents.train.losses import policy_loss

        c = self.config
        return partial(policy_loss, eps_low=c.eps_low, eps_high=c.eps_high, beta=c.beta)

    def pg_batch(
        self, trajs: list[Trajectory], A: list[float], mode: str,
        off_policy: Sequence[bool] | None = None,
    ) -> Any:  # fmt: skip
        """The policy-gradient rows (:func:`kept_rows`) as one batch, with reference log-probs."""
        from earlyexp.agents.train.batch import TrainBatch
        from earlyexp.agents.train.losses import reference_logprobs

        keep = kept_rows(A)
        off = [off_policy[i] for i in keep] if off_policy is not None else None
        batch = TrainBatch.from_trajectories([trajs[i] for i in keep], self.pad, mode,
                                             advantages=[A[i] for i in keep], off_policy=off)  # fmt: skip
        if self.ref is not None:
            batch.ref_logprobs = reference_logprobs(self.ref, batch.to(_device(self.ref)))
        return batch

    def update(
        self, trajs: list[Trajectory], A: list[float], mode: str,
        off_policy: Sequence[bool] | None = None,
    ) -> dict[str, float]:  # fmt: skip
        """``updates_per_iter`` steps on the rows whose advantage is not 0.

        ``off_policy``: per trajectory, whether its loss is the off-policy shaped one (herl).
        """
        metrics: dict[str, float] = {"kept": float(sum(a != 0.0 for a in A))}
        for _ in range(self.config.updates_per_iter):
            batch = self.pg_batch(trajs, A, mode, off_policy)
            metrics |= self.trainer.step(batch.split(self.config.minibatch))
        self.net.eval()
        return metrics


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def iteration_specs(it: int, config: GRPOConfig, seed: int) -> list[EpisodeSpec]:
    """G copies of each of the iteration's train tasks (same seed: the same task)."""
    base = seed * 1_000_003 + 7_919 * (it + 1)
    return [EpisodeSpec("train", None, base + j) for j in range(config.tasks_per_iter)
            for _ in range(config.G)]  # fmt: skip


def start_checkpoint(init: str, model: str, kwargs: dict[str, Any]) -> Path:
    """The checkpoint an RL method starts from.

    ``init``: raw (``model`` itself), il, iwm or sr (that cell's checkpoint,
    ``kwargs["init_dir"]``), or a checkpoint path.
    """
    if init == "raw":
        return require_local(model, "grpo")
    if init in INIT_METHODS:
        init_dir = kwargs.get("init_dir")
        path = Path(init_dir) / "checkpoint" if init_dir else None
        if path is None or not (path / "config.json").exists():
            raise ValueError(
                f"Expect the {init} cell's checkpoint for init={init} (the bench runs that "
                f"cell first), actually: {path}; or give init=PATH"
            )
        return path
    return require_local(init, "grpo")


@register("grpo", config=GRPOConfig, kind="llm", trains=True)
def run(
    *, env_id: str, seed: int, config: GRPOConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """Multi-turn GRPO (clip-higher, k3 KL) from raw, il, iwm, sr or a checkpoint."""
    path, run_dir = start_checkpoint(config.init, model, kwargs), Path(run_dir)
    with torch_threads(config, model):
        return _grpo(env_id, seed, config, run_dir, device, model, path, kwargs.get("pool"))


def _grpo(
    env_id: str, seed: int, config: GRPOConfig, run_dir: Path, device: str, model: str,
    path: Path, pool: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    from earlyexp.agents.policy import SamplingParams
    from earlyexp.agents.rollout import RolloutEngine

    prompt, policy, updater, curve, start = rl_start(
        PolicyUpdater, config, model, path, device, seed, run_dir
    )
    for it in iterations(start, config, "grpo"):
        curve_point(curve, it, policy, env_id, config, seed, prompt, pool)
        sampling = SamplingParams(max_new_tokens=config.max_new_tokens, top_p=config.top_p,
                                  temperature=config.sample_temperature, seed=seed * 7_919 + it)  # fmt: skip
        engine = RolloutEngine(policy, prompt, sampling, pool)
        trajs = engine.run(env_id, iteration_specs(it, config, seed), config.batch_size * 4)
        r = group_rewards(trajs, config.invalid_penalty)
        A = advantages(r, config.G, config.scale_std)
        m = updater.update(trajs, A, pick_mode(config.mode, trajs, prompt.window))
        curve.step(it, r, m, sum(t.tokens for t in trajs), len(trajs))
    return finish_rl(curve, policy, env_id, config, seed, run_dir, prompt, pool)


def iterations(start: int, config: GRPOConfig, method: str) -> Any:
    """``range(start, config.iterations)`` with a bar of the RL iterations done (resumes count)."""
    from earlyexp.progress import bar

    return bar(range(start, config.iterations), initial=start, total=config.iterations,
               desc=f"{method} iterations", unit="iter")  # fmt: skip


class RLStart(NamedTuple):
    """What an RL cell starts from.

    The prompt settings, the policy on the net being trained, its updater, the learning curve,
    and the first iteration to run (a later one on a resume).
    """

    prompt: Any
    policy: Any
    updater: PolicyUpdater
    curve: Curve
    start: int


def rl_start(
    updater_cls: type[PolicyUpdater], config: GRPOConfig, model: str, path: Path, device: str,
    seed: int, run_dir: Path,
) -> RLStart:  # fmt: skip
    """Load the start checkpoint for training and resume the updater and the curve."""
    from earlyexp.agents.backends.hf import HFPolicy, load_model

    net, tokenizer = load_model(path, device, training=True)
    net.eval()
    updater = updater_cls(net, tokenizer, config, seed, run_dir / "train_state")
    policy = HFPolicy(net, tokenizer, batch_size=max(config.batch_size, 64))
    start = updater.trainer.done // config.updates_per_iter
    return RLStart(prompt_config(config, model), policy, updater,
                   Curve(run_dir / "curve.json", start), start)  # fmt: skip


def curve_point(
    curve: Curve, it: int, policy: Any, env_id: str, config: GRPOConfig, seed: int, prompt: Any,
    pool: Any,
) -> None:  # fmt: skip
    """Evaluate the learning curve at iteration ``it`` when it is due and not done yet."""
    if config.eval_every and it % config.eval_every == 0 and not curve.has(it):
        curve.add(it, eval_subset(policy, env_id, config.eval_subset, config, seed, prompt, pool))


def finish_rl(
    curve: Curve, policy: Any, env_id: str, config: GRPOConfig, seed: int, run_dir: Path,
    prompt: Any, pool: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """The end of an RL cell: the last curve point, the checkpoint, the test panels."""
    from earlyexp.agents.sft import save_checkpoint

    curve.add(
        config.iterations,
        eval_subset(policy, env_id, config.eval_subset, config, seed, prompt, pool),
    )
    save_checkpoint(policy.model, policy.tokenizer, run_dir / "checkpoint")
    sampling = eval_sampling(config, seed)
    return evaluate_policy(policy, env_id, config, seed, run_dir, prompt, sampling, pool)
