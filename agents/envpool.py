"""Where envs run: in this process (the default) or on Ray actors.

The rollout engine never touches an env object: it asks a pool to reset and step numbered
slots and gets back :class:`EnvView` records (observation, reward, flags, info). Whatever
needs the env itself runs where the env runs, inside :class:`EnvHost`: the expert's next
action (``expert=True``), a snapshot of each state (``snapshots=True``), the action grammar
text for the system prompt, and starting an episode from a snapshot.

- :class:`InProcessPool`: one :class:`EnvHost` in this process (``workers=0``).
- :class:`~earlyexp.agents.envpool_ray.RayPool`: ``workers`` Ray actors, each an
  :class:`EnvHost` owning some of the slots; one remote call per actor per turn. ``ray`` is
  an optional extra (``pip install 'earlyexp[ray]'``).

The same episode specs with a deterministic policy give the same trajectories on either
pool: envs are seeded by their reset, never by where they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from earlyexp.envs.core.base import text_env


@dataclass
class EnvView:
    """What the engine learns from one reset or step of one slot.

    Attributes:
        obs: the observation.
        info: the step's info (the ``StepInfo`` TypedDict of ``earlyexp.envs.core.types``).
        reward: the step's reward (0 on reset).
        terminated: the episode ended on its own.
        truncated: the step budget ran out.
        expert_action: the oracle's next action from this state (pools made with
            ``expert=True``, while the episode runs), else None.
        action_help: the env's action grammar text (on reset only, else ``""``).
        snapshot: a snapshot of this state (pools made with ``snapshots=True``), else None.
        summary: ``env.summarize`` of this state (branching only, else ``""``).
    """

    obs: str
    info: dict[str, Any]
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    expert_action: str | None = None
    action_help: str = ""
    snapshot: Any = None
    summary: str = ""

    @property
    def done(self) -> bool:
        """The episode is over."""
        return self.terminated or self.truncated


@dataclass(frozen=True)
class ResetRequest:
    """Start an episode in ``slot``: ``reset(seed, split, task)``, then ``restore(snapshot)``."""

    slot: int
    seed: int
    split: str
    task: int | None
    snapshot: Any = None


@dataclass(frozen=True)
class BranchRequest:
    """From ``snapshot``, try each of ``actions`` in ``slot``'s env (restoring in between)."""

    slot: int
    snapshot: Any
    actions: tuple[str, ...]


@dataclass
class BranchResult:
    """What each action of a :class:`BranchRequest` did, and whether restoring failed.

    Attributes:
        outcomes: one view per action, each stepped from the snapshot (``summary`` set).
        desync: per action, True when the env restored after it did not render the
            snapshot's observation or state again (that sample must be dropped).
    """

    outcomes: list[EnvView]
    desync: list[bool]


@dataclass(frozen=True)
class PoolConfig:
    """Where the envs of a rollout run.

    Attributes:
        workers: Ray actors hosting the envs (0: in this process).
        ray_address: the Ray cluster to join (``auto``, ``ray://host:port``); None starts a
            local Ray on 127.0.0.1 when ``workers > 0``.
    """

    workers: int = 0
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"Expect workers >= 0, actually: {self.workers}")


class EnvPool(Protocol):
    """Numbered env slots of one env id, reset and stepped in batches."""

    size: int

    def reset(self, requests: Sequence[ResetRequest]) -> list[EnvView]:
        """Start one episode per request, in order."""
        ...

    def step(self, slots: Sequence[int], actions: Sequence[str]) -> list[EnvView]:
        """Step ``slots[i]`` with ``actions[i]``; views in the same order."""
        ...

    def branch(self, requests: Sequence[BranchRequest]) -> list[BranchResult]:
        """Try actions from snapshots; results in request order."""
        ...

    def close(self) -> None:
        """Close every env (browsers and servers too)."""
        ...


class EnvHost:
    """``n`` envs of one id in the current process (a pool's or a Ray actor's).

    Args:
        env_id: the registered id.
        n: env slots.
        env_kwargs: constructor arguments for ``gym.make``.
        expert: fill :attr:`EnvView.expert_action` while episodes run.
        snapshots: fill :attr:`EnvView.snapshot` at every state.
    """

    def __init__(
        self,
        env_id: str,
        n: int,
        env_kwargs: dict[str, Any] | None = None,
        expert: bool = False,
        snapshots: bool = False,
    ) -> None:
        import gymnasium as gym

        import earlyexp.envs  # noqa: F401  (registers the ids)

        self.envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(n)]
        self.expert, self.snapshots = expert, snapshots

    def reset(self, requests: Sequence[ResetRequest]) -> list[EnvView]:
        """Start the requested episodes (``slot`` indexes this host's envs)."""
        views = []
        for r in requests:
            env = self.envs[r.slot]
            obs, info = env.reset(seed=r.seed, options={"split": r.split, "task": r.task})
            raw = text_env(env)
            if r.snapshot is not None:
                raw.restore(r.snapshot)
                obs, info = raw.observe()
            view = EnvView(obs, dict(info), action_help=raw.action_help())
            views.append(self._extras(r.slot, view))
        return views

    def step(self, slots: Sequence[int], actions: Sequence[str]) -> list[EnvView]:
        """Step each slot with its action."""
        views = []
        for slot, action in zip(slots, actions, strict=True):
            obs, reward, term, trunc, info = self.envs[slot].step(action)
            views.append(self._extras(slot, EnvView(obs, dict(info), float(reward), term, trunc)))
        return views

    def branch(self, requests: Sequence[BranchRequest]) -> list[BranchResult]:
        """Step each request's actions from its snapshot, restoring and checking in between."""
        return [self._branch_one(r) for r in requests]

    def _branch_one(self, r: BranchRequest) -> BranchResult:
        raw = text_env(self.envs[r.slot])
        raw.restore(r.snapshot)
        before = raw.state_fingerprint()
        outcomes, desync = [], []
        for action in r.actions:
            obs, reward, term, trunc, info = raw.step(action)
            view = EnvView(obs, dict(info), float(reward), term, trunc)
            view.summary = raw.summarize(obs, view.info, previous=r.snapshot.obs)
            raw.restore(r.snapshot)
            fresh = raw.render_observation() == r.snapshot.obs
            outcomes.append(view)
            desync.append(not fresh or raw.state_fingerprint() != before)
        return BranchResult(outcomes, desync)

    def _extras(self, slot: int, view: EnvView) -> EnvView:
        raw = text_env(self.envs[slot])
        if self.expert and not view.done:
            view.expert_action = raw.expert_action()
        if self.snapshots:
            view.snapshot = raw.snapshot()
        return view

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()


class InProcessPool:
    """Every slot in this process (``workers=0``): one :class:`EnvHost`."""

    def __init__(
        self,
        env_id: str,
        size: int,
        env_kwargs: dict[str, Any] | None = None,
        expert: bool = False,
        snapshots: bool = False,
    ) -> None:
        self.size = size
        self.host = EnvHost(env_id, size, env_kwargs, expert, snapshots)

    def reset(self, requests: Sequence[ResetRequest]) -> list[EnvView]:
        """Start one episode per request."""
        return self.host.reset(requests)

    def step(self, slots: Sequence[int], actions: Sequence[str]) -> list[EnvView]:
        """Step the slots."""
        return self.host.step(slots, actions)

    def branch(self, requests: Sequence[BranchRequest]) -> list[BranchResult]:
        """Try actions from snapshots."""
        return self.host.branch(requests)

    def close(self) -> None:
        """Close the envs."""
        self.host.close()


def make_pool(
    env_id: str,
    size: int,
    config: PoolConfig | None = None,
    env_kwargs: dict[str, Any] | None = None,
    expert: bool = False,
    snapshots: bool = False,
) -> EnvPool:
    """A pool of ``size`` slots of ``env_id``, in-process or on Ray (``config.workers``)."""
    config = config or PoolConfig()
    if size < 1:
        raise ValueError(f"Expect a pool of at least one env, actually: {size}")
    if config.workers == 0:
        return InProcessPool(env_id, size, env_kwargs, expert, snapshots)
    from earlyexp.agents.envpool_ray import RayPool

    return RayPool(env_id, size, config, env_kwargs, expert, snapshots)
