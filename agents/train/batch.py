"""Training batches: right-padded token ids with a loss mask and per-sample RL fields.

Sources:

* encoded ``(ids, mask)`` examples (SFT data; :meth:`TrainBatch.from_examples`, exactly the
  padding of :func:`earlyexp.agents.sft.collate`);
* rollout :class:`~earlyexp.agents.rollout.Trajectory` objects
  (:meth:`TrainBatch.from_trajectories`) in two modes. ``episode``: the whole episode as one
  sequence, its ``segments`` in order, policy (sampled) tokens trainable, system, observation
  and template tokens masked (the multi-turn layout of RAGEN / verl-agent); every step must
  have seen the whole episode so far (a prompt window that covers the episode), or the
  sequence would condition on text the policy never saw. ``turn``: one example per step,
  :meth:`Trajectory.step_example` (the step's context, then its reply).

Old log-probs are aligned to ``input_ids``: ``old_logprobs[b, t]`` = log pi_old of token t,
at the reply tokens, 0 elsewhere (column 0 is never scored). Per-trajectory values
(advantage, weight, off-policy flag) are broadcast to every example built from it.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from earlyexp.agents.chat import flatten
from earlyexp.agents.rollout import Trajectory
from earlyexp.agents.train.losses import IGNORE

if TYPE_CHECKING:
    import torch

MODES = ("episode", "turn")


@dataclass(frozen=True)
class Example:
    """One sequence before padding: ids, loss mask, old log-probs aligned to ids, its source.

    Attributes:
        ids: token ids.
        mask: 1 on the trainable tokens.
        logprobs: log pi_old of each trainable token at its position (0.0 elsewhere), or None.
        source: index of the trajectory (or record) it was built from.
    """

    ids: list[int]
    mask: list[int]
    logprobs: list[float] | None = None
    source: int = 0


@dataclass
class TrainBatch:
    """A padded batch of B sequences of length T (see the module docstring).

    Attributes:
        input_ids: (B, T) token ids, right-padded.
        labels: (B, T) the token where it is trained, ``IGNORE`` elsewhere (pads included).
        weights: (B,) per-sample loss weights (RAFT: max(r, 0)).
        advantages: (B,) per-sample advantages of the policy-gradient losses.
        off_policy: (B,) bool, rows trained with HeRL's shaped weight instead of the clip.
        old_logprobs: (B, T) log pi_old aligned to ``input_ids``, or None.
        ref_logprobs: (B, T) log pi_ref aligned to ``input_ids``, or None.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    advantages: torch.Tensor
    off_policy: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, the trainable tokens."""
        return self.labels != IGNORE

    def to(self, device: Any) -> TrainBatch:
        """The batch with every tensor on ``device``."""
        return self._map(lambda x: x.to(device))

    def split(self, size: int) -> list[TrainBatch]:
        """Row chunks of at most ``size`` rows (micro-batches for ``Trainer.step``)."""
        if size < 1:
            raise ValueError(f"Expect size >= 1, actually: {size}")
        B = len(self.input_ids)
        return [self._map(operator.itemgetter(slice(i, i + size))) for i in range(0, B, size)]

    def _map(self, fn: Callable[[Any], Any]) -> TrainBatch:
        """The batch with ``fn`` applied to every tensor field that is set."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: fn(v) for k, v in values.items() if v is not None})

    @classmethod
    def from_examples(
        cls,
        examples: Sequence[tuple[list[int], list[int]]],
        pad_id: int,
        weights: Sequence[float] | None = None,
        advantages: Sequence[float] | None = None,
    ) -> TrainBatch:
        """Right-pad encoded ``(ids, mask)`` examples (SFT); optional per-example values."""
        input_ids, _, labels = pad_examples(examples, pad_id)
        n = len(examples)
        return cls(
            input_ids,
            labels,
            _per_row(weights, n, 1.0, "weights"),
            _per_row(advantages, n, 0.0, "advantages"),
            _per_row(None, n, False, "off_policy"),
        )

    @classmethod
    def from_trajectories(
        cls,
        trajectories: Sequence[Trajectory],
        pad_id: int,
        mode: str = "episode",
        advantages: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
        off_policy: Sequence[bool] | None = None,
    ) -> TrainBatch:
        """Build a batch from rollout trajectories (module docstring for ``mode``).

        ``advantages``, ``weights`` and ``off_policy`` hold one value per trajectory (default
        0, 1 and False), given to each of its examples. ``old_logprobs`` is set when the
        steps carry log-probs.
        """
        examples = trajectory_examples(trajectories, mode)
        src = [e.source for e in examples]
        n = len(trajectories)

        def per_example(values: Sequence[Any] | None, name: str) -> list[Any] | None:
            if values is None:
                return None
            if len(values) != n:
                raise ValueError(f"Expect {n} {name} (one per trajectory), actually: {len(values)}")
            return [values[s] for s in src]

        input_ids, _, labels = pad_examples([(e.ids, e.mask) for e in examples], pad_id)
        return cls(
            input_ids,
            labels,
            _per_row(per_example(weights, "weights"), len(src), 1.0, "weights"),
            _per_row(per_example(advantages, "advantages"), len(src), 0.0, "advantages"),
            _per_row(per_example(off_policy, "off_policy"), len(src), False, "off_policy"),
            old_logprobs=pad_logprobs(examples),
        )


def pad_examples(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad (ids, mask) pairs: input_ids, attention_mask, labels (IGNORE off the mask)."""
    import torch

    if not examples:
        raise ValueError("Expect at least one example in a batch, actually: none")
    T = max(len(ids) for ids, _ in examples)
    B = len(examples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for i, (ids, mask) in enumerate(examples):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        attention[i, :n] = 1
        labels[i, :n] = torch.where(torch.tensor(mask, dtype=torch.bool), torch.tensor(ids), IGNORE)
    return input_ids, attention, labels


def pad_logprobs(examples: Sequence[Example]) -> torch.Tensor | None:
    """(B, T) old log-probs of ``examples`` right-padded with 0; None when none has them."""
    import torch

    have = [e.logprobs is not None for e in examples]
    if not any(have):
        return None
    if not all(have):
        raise ValueError(
            "Expect log-probs on every example of a batch or on none, actually: "
            f"{sum(have)} of {len(have)}"
        )
    T = max(len(e.ids) for e in examples)
    out = torch.zeros((len(examples), T), dtype=torch.float32)
    for i, e in enumerate(examples):
        out[i, : len(e.ids)] = torch.tensor(e.logprobs, dtype=torch.float32)
    return out


def trajectory_examples(trajectories: Sequence[Trajectory], mode: str) -> list[Example]:
    """The examples of ``trajectories``: one per episode or one per step (``mode``)."""
    if mode not in MODES:
        raise ValueError(f"Expect mode in {MODES}, actually: {mode!r}")
    out: list[Example] = []
    for i, traj in enumerate(trajectories):
        if mode == "episode":
            out.append(episode_example(traj, source=i))
        else:
            out += turn_examples(traj, source=i)
    return out


def episode_example(traj: Trajectory, source: int = 0) -> Example:
    """The whole episode as one sequence: segments in order, mask 1 on the policy tokens."""
    replies = _replies(traj)
    for t, (step, r) in enumerate(zip(traj.steps, replies, strict=True)):
        if step.context != list(range(r)):
            raise ValueError(
                "Expect every step to see the whole episode so far for mode='episode' (a "
                f"prompt window covering the episode), actually: step {t} saw segments "
                f"{step.context} before its reply segment {r}; use mode='turn'"
            )
    ids, mask = flatten(traj.segments)
    if not any(step.logprobs for step in traj.steps):
        return Example(ids, mask, None, source)
    trained = [i for i, seg in enumerate(traj.segments) if seg.policy]
    if trained != replies:
        raise ValueError(
            "Expect the policy segments to be the step replies when aligning log-probs, "
            f"actually: policy segments {trained}, replies {replies}"
        )
    starts = [0]
    for seg in traj.segments:
        starts.append(starts[-1] + len(seg.ids))
    logprobs = [0.0] * len(ids)
    for t, (step, r) in enumerate(zip(traj.steps, replies, strict=True)):
        _check_logprobs(t, step.logprobs, len(traj.segments[r].ids))
        logprobs[starts[r] : starts[r + 1]] = step.logprobs
    return Example(ids, mask, logprobs, source)


def turn_examples(traj: Trajectory, source: int = 0) -> list[Example]:
    """One example per step: :meth:`Trajectory.step_example`, old log-probs on the reply."""
    replies = _replies(traj)
    with_logprobs = any(step.logprobs for step in traj.steps)
    out = []
    for t, (step, r) in enumerate(zip(traj.steps, replies, strict=True)):
        ids, mask = traj.step_example(t)
        logprobs = None
        if with_logprobs:
            n = len(traj.segments[r].ids)  # the reply closes the example
            _check_logprobs(t, step.logprobs, n)
            logprobs = [0.0] * (len(ids) - n) + list(step.logprobs)
        out.append(Example(ids, mask, logprobs, source))
    return out


def _replies(traj: Trajectory) -> list[int]:
    """The reply segment index of each step (a trajectory recorded with token ids)."""
    replies = [step.reply for step in traj.steps if step.reply is not None]
    if not traj.segments or len(replies) != len(traj.steps):
        raise ValueError("Expect a trajectory recorded with token ids, actually: text only")
    return replies


def _check_logprobs(t: int, logprobs: Sequence[float], n: int) -> None:
    if len(logprobs) != n:
        raise ValueError(
            f"Expect one log-prob per sampled token of step {t} ({n}), actually: {len(logprobs)}"
        )


def _per_row(values: Sequence[Any] | None, n: int, default: Any, name: str) -> torch.Tensor:
    """(n,) tensor of ``values`` (``default`` when None); bool for a bool default."""
    import torch

    dtype = torch.bool if isinstance(default, bool) else torch.float32
    if values is None:
        return torch.full((n,), default, dtype=dtype)
    if len(values) != n:
        raise ValueError(f"Expect {n} {name} (one per example), actually: {len(values)}")
    return torch.tensor(list(values), dtype=dtype)
