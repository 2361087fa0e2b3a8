"""The rollout engine: many envs stepped together, one batched generation call per turn.

``N`` env slots play a queue of episodes; each turn the engine asks the policy for one
completion per active slot in a single :meth:`Policy.complete` call, reads each action by
the rule of :mod:`earlyexp.agents.prompting`, and steps the envs. A slot whose episode ends
takes the next episode of the queue (continuous batching).

Token bookkeeping (policies with a tokenizer): every message becomes one :class:`Segment`
of ids, encoded once (:class:`~earlyexp.agents.chat.ChatEncoder`); a reply's segment is the
sampled ids as sampled, with ``policy=True``; the template ids that close a reply, the
system prompt and the observations are ``policy=False`` (env tokens). A turn's context is
the system segment, the segments of the last ``window`` turns and the new user segment, so
the ids a trainer sees are exactly the ids the policy saw and sampled.

Trajectory JSONL (:func:`write_jsonl`), one episode per line::

    {"env_id", "split", "task", "seed", "score", "success", "rubric", "parse_failures",
     "invalid", "tokens",
     "segments": [{"role", "ids", "policy"}, ...],        # [] for text-only policies
     "steps": [{"user", "completion", "action", "parse_ok", "action_valid", "reward",
                "feedback", "context": [segment index, ...], "reply": segment index | null,
                "logprobs": [...], "available": [the step's available actions]}, ...],
     "context": [{"kind", "text"}, ...], "label"}

``action`` is null on a parse failure. ``Trajectory.step_example(t)`` returns the
(ids, mask) of turn ``t``: its context then its reply, mask 1 on the reply's sampled ids.

:func:`self_play` plays a turn-based PettingZoo env (``earlyexp.envs.bargain_v0``) with a
policy per agent, the same bookkeeping per agent: one trajectory per agent and episode.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from earlyexp.agents.chat import ChatEncoder, Segment, flatten
from earlyexp.agents.envpool import EnvView, PoolConfig, ResetRequest, make_pool
from earlyexp.agents.policy import Completion, Policy, Prompt, SamplingParams
from earlyexp.agents.prompting import (
    NO_ACTION,
    ContextBlock,
    PromptConfig,
    conversation,
    parse_action,
    system_prompt,
    user_message,
)
from earlyexp.progress import bar


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to play.

    Attributes:
        split: ``train``, ``test`` or ``ood``.
        task: the panel index (None: drawn from ``seed``).
        seed: the reset seed.
        system: a system prompt that replaces the built one (None: built from the task).
        context: blocks (a memory, a reflection, a revision guide) rendered after the system
            prompt (:func:`~earlyexp.agents.prompting.system_prompt`).
        snapshot: an env snapshot to start from (``reset`` of the same task, then
            ``restore``): second attempts and branching without replaying a prefix.
        label: a free tag the method sets (``attempt1``, ``revision``), kept in the trajectory.
    """

    split: str
    task: int | None
    seed: int
    system: str | None = None
    context: tuple[ContextBlock, ...] = ()
    snapshot: Any = None
    label: str = ""


@dataclass
class Step:
    """One turn of a trajectory (see the module docstring for the fields)."""

    user: str
    completion: str
    action: str | None
    action_valid: bool
    reward: float
    feedback: str
    context: list[int] = field(default_factory=list)
    reply: int | None = None
    logprobs: list[float] = field(default_factory=list)
    available: list[str] = field(default_factory=list)

    @property
    def parse_ok(self) -> bool:
        """False when the completion had no ``<action>`` tag."""
        return self.action is not None


@dataclass
class Trajectory:
    """One episode as played by a policy."""

    env_id: str
    split: str
    task: int | None
    seed: int
    system: str
    steps: list[Step] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    score: float = 0.0
    success: bool = False
    rubric: list[dict[str, Any]] = field(default_factory=list)
    context: list[ContextBlock] = field(default_factory=list)
    label: str = ""
    snapshots: list[Any] = field(default_factory=list, repr=False)
    """Env snapshots (runs with ``snapshots=True``): before each step, then the final state.
    Not written to JSONL."""

    @property
    def parse_failures(self) -> int:
        """Turns whose completion had no action."""
        return sum(not s.parse_ok for s in self.steps)

    @property
    def invalid(self) -> int:
        """Turns the env rejected (parse failures included)."""
        return sum(not s.action_valid for s in self.steps)

    @property
    def tokens(self) -> int:
        """Tokens generated by the policy (text-only backends: tokens the server reported)."""
        if self.segments:
            return sum(len(self.segments[s.reply].ids) for s in self.steps if s.reply is not None)
        return sum(len(s.logprobs) for s in self.steps)

    def step_example(self, t: int) -> tuple[list[int], list[int]]:
        """Return (ids, mask) of turn ``t``: context + sampled reply, mask 1 on the reply."""
        step = self.steps[t]
        if step.reply is None:
            raise ValueError("Expect a trajectory recorded with token ids, actually: text only")
        ctx = [Segment(s.role, s.ids, False) for s in (self.segments[i] for i in step.context)]
        return flatten(ctx + [self.segments[step.reply]])

    def to_json(self) -> dict[str, Any]:
        """The JSONL record (module docstring)."""
        steps = []
        for s in self.steps:
            d = asdict(s)
            d["parse_ok"] = s.parse_ok
            steps.append(d)
        return {
            "env_id": self.env_id,
            "split": self.split,
            "task": self.task,
            "seed": self.seed,
            "system": self.system,
            "score": self.score,
            "success": self.success,
            "rubric": self.rubric,
            "context": [asdict(b) for b in self.context],
            "label": self.label,
            "parse_failures": self.parse_failures,
            "invalid": self.invalid,
            "tokens": self.tokens,
            "segments": [asdict(g) for g in self.segments],
            "steps": steps,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_json`."""
        steps = [Step(**{k: v for k, v in s.items() if k != "parse_ok"}) for s in d["steps"]]
        keys = ("env_id", "split", "task", "seed", "system", "score", "success", "rubric")
        traj = cls(**{k: d[k] for k in keys}, label=d.get("label", ""))
        traj.context = [ContextBlock(**b) for b in d.get("context", [])]
        traj.steps, traj.segments = steps, [Segment(**g) for g in d["segments"]]
        return traj


def write_jsonl(trajectories: Iterable[Trajectory], path: Path) -> Path:
    """Write trajectories to ``path``, one episode per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_json(), ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[Trajectory]:
    """Read a file written by :func:`write_jsonl`."""
    with open(path, encoding="utf-8") as f:
        return [Trajectory.from_json(json.loads(line)) for line in f if line.strip()]


@dataclass
class RolloutStats:
    """Wall time split of a run: generation, env steps and resets, and tokens generated."""

    generate_s: float = 0.0
    env_s: float = 0.0
    total_s: float = 0.0
    tokens: int = 0
    turns: int = 0

    @property
    def env_share(self) -> float:
        """Env time as a share of the rollout's wall time."""
        return self.env_s / self.total_s if self.total_s else 0.0


class _Slot:
    """One env slot of the pool and the episode it is playing."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.traj: Trajectory | None = None
        self.view = EnvView("", {})
        self.turns: list[tuple[str, str]] = []  # (user text, assistant text)
        self.turn_segments: list[list[int]] = []  # segment indices of each finished turn
        self.format_error = False
        self.index = -1  # position of the episode in the run's list


class RolloutEngine:
    """Play episodes of one env id with a policy, ``num_envs`` at a time.

    Args:
        policy: any :class:`~earlyexp.agents.policy.Policy`; one with ``needs_expert = True``
            (the scripted expert) gets each state's oracle action in ``Prompt.expert_action``,
            computed where the env runs.
        prompt: how prompts are built (history window, ...).
        sampling: how completions are sampled.
        pool: where the envs run (default: in this process).
    """

    def __init__(
        self,
        policy: Policy,
        prompt: PromptConfig | None = None,
        sampling: SamplingParams | None = None,
        pool: PoolConfig | None = None,
    ) -> None:
        self.policy = policy
        self.prompt = prompt or PromptConfig()
        self.sampling = sampling or SamplingParams()
        self.pool = pool or PoolConfig()
        tok = getattr(policy, "tokenizer", None)
        self.encoder = getattr(policy, "encoder", None) or (
            ChatEncoder(tok) if tok is not None else None
        )
        self.stats = RolloutStats()

    def run(
        self,
        env_id: str,
        episodes: Sequence[EpisodeSpec],
        num_envs: int = 8,
        snapshots: bool = False,
        *,
        progress: str | None = None,
        **env_kwargs: Any,
    ) -> list[Trajectory]:
        """Play ``episodes`` (in order of the returned list) with ``num_envs`` env slots.

        ``snapshots=True`` records an env snapshot at every state (``Trajectory.snapshots``).
        ``progress``: show a bar of finished episodes with this description (None: no bar).
        """
        if num_envs < 1:
            raise ValueError(f"Expect num_envs >= 1, actually: {num_envs}")
        if not episodes:
            return []
        start = time.perf_counter()
        expert = bool(getattr(self.policy, "needs_expert", False))
        n = min(num_envs, len(episodes))
        pool = make_pool(env_id, n, self.pool, env_kwargs, expert, snapshots)
        slots = [_Slot(i) for i in range(n)]
        queue = deque(enumerate(episodes))
        results: dict[int, Trajectory] = {}
        done = bar(total=len(episodes), desc=progress, unit="episode") if progress else None
        try:
            self._start(pool, slots, env_id, queue)
            while active := [s for s in slots if s.traj is not None]:
                completions = self._generate(active)
                actions = [self._reply(s, c) for s, c in zip(active, completions, strict=True)]
                t0 = time.perf_counter()
                views = pool.step([s.slot for s in active], actions)
                self.stats.env_s += time.perf_counter() - t0
                ended = [s for s, v in zip(active, views, strict=True) if self._observe(s, v)]
                for s in ended:
                    results[s.index] = s.traj  # type: ignore[assignment]
                if done is not None and ended:
                    done.update(len(ended))
                self._start(pool, ended, env_id, queue)
        finally:
            pool.close()
            if done is not None:
                done.close()
        self.stats.total_s += time.perf_counter() - start
        return [results[i] for i in range(len(episodes))]

    def _start(self, pool: Any, slots: list[_Slot], env_id: str, queue: deque) -> None:
        """Reset ``slots`` onto the next queued episodes (slots left over go idle)."""
        started = []
        for slot in slots:
            slot.traj = None
            if queue:
                slot.index, spec = queue.popleft()
                started.append((slot, spec))
        if not started:
            return
        requests = [ResetRequest(s.slot, p.seed, p.split, p.task, p.snapshot) for s, p in started]
        t0 = time.perf_counter()
        views = pool.reset(requests)
        self.stats.env_s += time.perf_counter() - t0
        for (slot, spec), view in zip(started, views, strict=True):
            self._begin(slot, env_id, spec, view)

    def _begin(self, slot: _Slot, env_id: str, spec: EpisodeSpec, view: EnvView) -> None:
        grammar = view.action_help if self.prompt.action_help else ""
        system = system_prompt(view.info["task"], grammar, spec.context, spec.system)
        slot.view = view
        slot.traj = Trajectory(env_id, spec.split, spec.task, spec.seed, system)
        slot.traj.context, slot.traj.label = list(spec.context), spec.label
        slot.turns, slot.turn_segments, slot.format_error = [], [], False
        if view.snapshot is not None:
            slot.traj.snapshots.append(view.snapshot)
        if self.encoder is not None:
            slot.traj.segments.append(self.encoder.system(system))

    def _generate(self, active: list[_Slot]) -> list[Completion]:
        prompts = [self._prompt(s) for s in active]
        t0 = time.perf_counter()
        completions = self.policy.complete(prompts, self.sampling)
        self.stats.generate_s += time.perf_counter() - t0
        self.stats.tokens += sum(len(c.token_ids) or len(c.logprobs) for c in completions)
        self.stats.turns += 1
        return completions

    def _prompt(self, slot: _Slot) -> Prompt:
        """Build the prompt of ``slot``'s next turn (and its user segment)."""
        traj, view = slot.traj, slot.view
        assert traj is not None
        user = user_message(view.obs, view.info, self.prompt, slot.format_error)
        messages = conversation(traj.system, slot.turns, user, self.prompt.window)
        ids = None
        if self.encoder is not None:
            traj.segments.append(self.encoder.user(traj.system, user))
            window = slot.turn_segments[-self.prompt.window :] if self.prompt.window else []
            context = [0] + [i for turn in window for i in turn] + [len(traj.segments) - 1]
            traj.steps.append(Step(user, "", None, False, 0.0, "", context=context))
            ids, _ = flatten([traj.segments[i] for i in context])
        else:
            traj.steps.append(Step(user, "", None, False, 0.0, ""))
        actions = list(view.info.get("available_actions") or [])
        traj.steps[-1].available = actions
        return Prompt(messages, ids, actions, view.expert_action, view.obs, view.info)

    def _reply(self, slot: _Slot, comp: Completion) -> str:
        """Record ``comp`` as the slot's reply; return the action to send to the env."""
        traj = slot.traj
        assert traj is not None
        step = traj.steps[-1]
        action = parse_action(comp.text)
        step.completion, step.action, step.logprobs = comp.text, action, list(comp.logprobs)
        if self.encoder is not None:
            traj.segments.append(Segment("assistant", list(comp.token_ids), True))
            step.reply = len(traj.segments) - 1
            closing = self.encoder.closing_after(comp.token_ids)
            if closing is not None:
                traj.segments.append(closing)
            slot.turn_segments.append(list(range(step.context[-1], len(traj.segments))))
        slot.turns.append((step.user, comp.text))
        slot.format_error = action is None
        return NO_ACTION if action is None else action

    def _observe(self, slot: _Slot, view: EnvView) -> bool:
        """Record the env's answer to the slot's last action; True when the episode ended."""
        traj = slot.traj
        assert traj is not None
        step, slot.view = traj.steps[-1], view
        step.action_valid, step.reward = bool(view.info["action_valid"]), view.reward
        step.feedback = str(view.info.get("feedback", ""))
        if view.snapshot is not None:
            traj.snapshots.append(view.snapshot)
        if not view.done:
            return False
        _settle(traj, view)
        return True


def _settle(traj: Trajectory, view: EnvView) -> None:
    """Record the end of ``traj``'s episode from its final view: score, success, rubric."""
    traj.score = float(view.info.get("score", view.reward))
    traj.success = bool(view.info.get("success", traj.score >= 1.0))
    traj.rubric = list(view.info.get("rubric", []))


# ---------------------------------------------------------------------------------- self-play
class _Table:
    """One AEC env of a self-play run: the episode it plays and a seat (a slot) per agent."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.index = -1  # position of the episode in the run's list; -1: idle
        self.seats: dict[str, _Slot] = {}
        self.pending: set[str] = set()  # agents whose last step awaits the env's answer


def self_play(
    make_env: Callable[[], Any],
    policies: Mapping[str, Policy],
    episodes: Sequence[EpisodeSpec],
    num_envs: int = 8,
    prompt: PromptConfig | None = None,
    sampling: SamplingParams | None = None,
) -> list[dict[str, Trajectory]]:
    """Play a turn-based PettingZoo AEC text env with one LLM policy per agent.

    ``make_env()`` builds the env (e.g. ``earlyexp.envs.bargain_v0.env``); ``policies`` maps
    every agent to a policy, the same one or different ones. ``num_envs`` tables play the
    episodes; each turn the agents to move at all tables are prompted together, one
    :meth:`Policy.complete` call per distinct policy (a single call when the agents share
    one). Each agent's side of an episode is its own :class:`Trajectory` (``label``: the
    agent, after the spec's label), kept as :class:`RolloutEngine` keeps one: its system
    prompt from its own ``info["task"]``, its turns, sampled ids as sampled, env tokens
    masked, its final score and rubric. Returns, per episode, agent -> trajectory.
    """
    if num_envs < 1:
        raise ValueError(f"Expect num_envs >= 1, actually: {num_envs}")
    if not episodes:
        return []
    engines = {a: RolloutEngine(p, prompt, sampling) for a, p in policies.items()}
    tables = [_Table(make_env()) for _ in range(min(num_envs, len(episodes)))]
    missing = sorted(set(tables[0].env.possible_agents) - set(engines))
    if missing:
        raise ValueError(f"Expect a policy for every agent, actually none for {missing}")
    queue = deque(enumerate(episodes))
    results: dict[int, dict[str, Trajectory]] = {}
    try:
        for t in tables:
            _seat(t, queue, engines)
        while active := [t for t in tables if t.index >= 0]:
            groups: dict[int, list[tuple[_Table, str]]] = {}
            for t in active:
                agent = t.env.agent_selection
                groups.setdefault(id(engines[agent].policy), []).append((t, agent))
            for group in groups.values():
                prompts = [engines[a]._prompt(t.seats[a]) for t, a in group]
                completions = engines[group[0][1]].policy.complete(
                    prompts, engines[group[0][1]].sampling
                )
                for (t, a), c in zip(group, completions, strict=True):
                    t.env.step(engines[a]._reply(t.seats[a], c))
                    t.pending.add(a)
            for t in active:
                if _advance(t, engines):
                    results[t.index] = {a: s.traj for a, s in t.seats.items()}  # type: ignore[misc]
                    _seat(t, queue, engines)
    finally:
        for t in tables:
            t.env.close()
    return [results[i] for i in range(len(episodes))]


def _turn_view(env: Any, engine: RolloutEngine) -> EnvView:
    """The view of the agent to move (``env.last()``), with its expert action if asked for."""
    obs, reward, term, trunc, info = env.last()
    expert = getattr(engine.policy, "needs_expert", False) and not (term or trunc)
    action = env.unwrapped.expert_action(env.agent_selection) if expert else None
    return EnvView(str(obs), dict(info), float(reward), bool(term), bool(trunc), action)


def _advance(t: _Table, engines: Mapping[str, RolloutEngine]) -> bool:
    """Bring ``t`` to its next decision; True when its episode is over.

    The agent to move gets the env's answer to its last step; finished agents are stepped
    out with ``None`` (PettingZoo's rule), their trajectories settled.
    """
    while t.env.agents:
        agent = t.env.agent_selection
        engine, seat = engines[agent], t.seats[agent]
        view = _turn_view(t.env, engine)
        if agent in t.pending:
            t.pending.discard(agent)
            engine._observe(seat, view)
        else:
            seat.view = view
            if view.done:
                _settle(seat.traj, view)  # type: ignore[arg-type]
        if not view.done:
            return False
        t.env.step(None)
    return True


def _seat(t: _Table, queue: deque, engines: Mapping[str, RolloutEngine]) -> None:
    """Reset ``t`` onto the next queued episode and seat its agents (idle when none is left)."""
    t.index, t.seats, t.pending = -1, {}, set()
    if not queue:
        return
    t.index, spec = queue.popleft()
    env, name = t.env, str(t.env.unwrapped)
    env.reset(seed=spec.seed, options={"split": spec.split, "task": spec.task})
    if spec.snapshot is not None:
        env.unwrapped.restore(spec.snapshot)
    help_text = env.unwrapped.action_help()
    for agent in env.agents:
        seat = _Slot(len(t.seats))
        view = EnvView(str(env.observe(agent)), dict(env.infos[agent]), action_help=help_text)
        engines[agent]._begin(seat, name, spec, view)
        seat.traj.label = f"{spec.label}:{agent}" if spec.label else agent  # type: ignore[union-attr]
        seat.index = t.index
        t.seats[agent] = seat
    _advance(t, engines)
