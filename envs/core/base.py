"""The shared mechanics of every earlyexp text env (the README, "The environment contract").

A subclass supplies the task (how to make one, score it and solve it) and the world (how an
action changes the state, how the state reads as text). :class:`TextEnv` owns the rest:
seeding, the ``split``/``task`` options, the step budget, never raising on agent input,
sparse reward, the documented ``info`` keys and cheap snapshots.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, echo, lone_surrogate
from earlyexp.envs.core.panels import build_panel, check_index, check_split, panel_hash, task_rng
from earlyexp.envs.core.spaces import AnyText
from earlyexp.envs.core.types import RubricItem, StepInfo

TaskT = TypeVar("TaskT")

TRAIN_STREAM = 2**31
"""Size of the index space of the procedural train stream."""

CUT = "…"
"""Marks where :func:`clip` cut a text."""


def clip(text: str, limit: int) -> str:
    """Return ``text`` when it has at most ``limit`` characters, else its start ending in ``…``."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(CUT))].rstrip() + CUT


def fit_lines(lines: Iterable[str], limit: int) -> str:
    """Join ``lines`` with newlines, keeping whole lines while the text fits in ``limit``.

    The first line left out is cut to the room left (when some is) and the rest are dropped,
    so the result never exceeds ``limit`` characters.
    """
    out: list[str] = []
    used = -1  # no newline before the first line
    for line in lines:
        room = limit - used - 1
        if len(line) > room:
            if room > len(CUT):
                out.append(clip(line, room))
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


@dataclass(frozen=True)
class Outcome:
    """What one action did.

    Attributes:
        valid: False when the action was malformed or impossible; the state must be unchanged.
        feedback: the env's message ("The agent did not move", "No such button ...").
        terminated: True when the episode reached an end state (goal, purchase, answer, ...).
    """

    valid: bool
    feedback: str
    terminated: bool = False


@dataclass(frozen=True)
class Evaluation:
    """The score of the episode so far: score in [0, 1], rubric and named components."""

    score: float
    rubric: list[RubricItem]
    details: dict[str, Any] = field(default_factory=dict)
    success: bool | None = None

    @property
    def is_success(self) -> bool:
        """``success`` when given, else ``score == 1``."""
        return self.score >= 1.0 if self.success is None else self.success


@dataclass(frozen=True)
class Snapshot:
    """A restorable copy of an env's episode (see :meth:`TextEnv.snapshot`)."""

    task: Any
    task_index: int | None
    split: str
    steps: int
    done: bool
    terminated: bool
    obs: str
    feedback: str
    state: Any


def text_env(env: gym.Env) -> TextEnv:
    """Return the earlyexp :class:`TextEnv` under ``env``'s wrappers (ValueError if none)."""
    raw = env.unwrapped
    if not isinstance(raw, TextEnv):
        raise ValueError(f"Expect an earlyexp text env, actually: {type(raw).__name__}")
    return raw


class TextEnv(gym.Env[str, str], Generic[TaskT]):
    """Base class: a text env with tasks, panels, an oracle and snapshots.

    Subclasses set :attr:`family` and :attr:`grammar` and implement the ``_`` hooks, keeping
    every piece of mutable episode state in ``self.state`` (deep-copied by ``snapshot``) or
    overriding :meth:`_get_state` / :meth:`_set_state`.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}  # noqa: RUF012
    panel_sizes: ClassVar[dict[str, int]] = {"test": 500, "ood": 500}
    grammar: ClassVar[ActionGrammar]
    SUMMARY_CHARS: ClassVar[int] = 400
    """Most characters :meth:`summarize` returns (the paper's WebShop summaries: ~345)."""

    def __init__(self, render_mode: str | None = None, max_steps: int | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"Expect render_mode in {self.metadata['render_modes']} or None, "
                f"actually: {render_mode!r}"
            )
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"Expect max_steps >= 1 or None, actually: {max_steps!r}")
        self.render_mode = render_mode
        self.max_steps_override = max_steps
        self.observation_space = AnyText()
        self.action_space = AnyText(
            examples=tuple(e for s in self.grammar.specs for e in s.examples)
        )
        self.state: Any = None
        self.task: TaskT | None = None
        self.task_index: int | None = None
        self.split = "train"
        self._steps = 0
        self._done = False
        self._terminated = False
        self._obs = ""
        self._feedback = ""

    # ------------------------------------------------------------------ subclass hooks
    @property
    def family(self) -> str:
        """Stable name of the task distribution (seeds panels); include task-shaping args."""
        raise NotImplementedError

    def make_task(self, rng: np.random.Generator, split: str) -> TaskT:
        """Build one task of ``split`` from ``rng`` (deterministic given the rng state)."""
        raise NotImplementedError

    def _begin(self, task: TaskT) -> str:
        """Set ``self.state`` up for ``task``; return the first feedback line."""
        raise NotImplementedError

    def _apply(self, action: str) -> Outcome:
        """Execute ``action`` (any str). An invalid action must leave the state unchanged."""
        raise NotImplementedError

    def _observation(self, feedback: str) -> str:
        """Return the observation text of the current state after ``feedback``."""
        raise NotImplementedError

    def _evaluate(self) -> Evaluation:
        """Score the episode as it stands (called when it ends)."""
        raise NotImplementedError

    def _budget(self, task: TaskT) -> int:
        """Return the step budget of ``task``."""
        raise NotImplementedError

    def instruction(self) -> str:
        """Return the task instruction shown to the agent (``info["task"]``)."""
        raise NotImplementedError

    def available_actions(self) -> list[str]:
        """Return the valid actions now (or example templates where the space is open)."""
        raise NotImplementedError

    def expert_action(self) -> str:
        """Return the scripted oracle's next action from the current state."""
        raise NotImplementedError

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """The next-state text world-model targets use (implicit world modeling, IWM).

        It is pure (changes no state, makes no browser or other I/O call), deterministic,
        never raises on an observation the env produced (errors after invalid actions and the
        final one included) and returns at most :attr:`SUMMARY_CHARS` characters unless the
        env card says otherwise. The default: ``obs`` itself when it is that short, else its
        start cut to fit, ending in ``…``. Envs with long pages override it to keep what the
        next state tells; their cards say what.

        Args:
            obs: the observation a ``reset`` or ``step`` just returned. Call this right away,
                before the env moves on: an env may read its current state, the one ``obs``
                shows (an ``obs`` that is not the current one then gets the default).
            info: the ``info`` returned with ``obs`` (``feedback``, ``action_valid``, ...).
            previous: the observation before that step, for envs that say what changed
                (None: unknown; they then describe the page as it is).

        Returns:
            The summary text, never empty for an observation of the env.
        """
        return clip(obs, self.SUMMARY_CHARS)

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, StepInfo]:
        """Start an episode; ``options`` may hold ``split`` and ``task`` (an index).

        Options are checked before anything changes: a rejected reset (``ValueError``) leaves
        the env as it was, its episode (if any) still steppable. If the episode fails to
        start after that (a dead browser), the env needs another ``reset``.
        """
        options = dict(options or {})
        unknown = set(options) - {"split", "task"}
        if unknown:
            raise ValueError(
                f"Expect options among {{'split', 'task'}}, actually: {sorted(unknown)}"
            )
        split = check_split(options.get("split", "train"))
        size = self.panel_sizes.get(split)
        index = None
        if options.get("task") is not None:
            index = check_index(split, options["task"], size)
        super().reset(seed=seed)
        if index is None:
            index = int(self.np_random.integers(size if size is not None else TRAIN_STREAM))
        task = self.make_task(task_rng(self.family, split, index), split)
        self.split, self.task_index, self.task = split, index, task
        self._steps, self._done, self._terminated = 0, False, False
        try:
            self._feedback = self._begin(task)
            self._obs = self._observation(self._feedback)
        except BaseException:
            self.task = None  # half begun: step() asks for a reset
            raise
        return self._obs, self._info(True, final=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, StepInfo]:
        """Apply ``action``; never raises on agent input (see the env card)."""
        if self.task is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        if self._done:
            msg = "The episode has ended; call reset() to start a new one."
            return self._obs, 0.0, self._terminated, not self._terminated, self._info(False, msg)
        self._steps += 1
        if not isinstance(action, str):
            why = f"Expected the action as text (str), got {type(action).__name__}."
            outcome = Outcome(False, why)
        elif (bad := lone_surrogate(action)) is not None:
            outcome = Outcome(False, f"The action is not valid Unicode text: {bad}.")
        else:
            outcome = self._apply(action)
        return self._finish_step(outcome)

    def _finish_step(self, outcome: Outcome) -> tuple[str, float, bool, bool, StepInfo]:
        terminated = outcome.terminated
        truncated = not terminated and self._steps >= self.max_steps
        self._done, self._terminated = terminated or truncated, terminated
        self._feedback = outcome.feedback
        self._obs = self._observation(outcome.feedback)
        info = self._info(outcome.valid, final=self._done)
        reward = float(info["score"]) if self._done else 0.0
        if self.render_mode == "human":
            print(self._obs)
        return self._obs, reward, terminated, truncated, info

    def _info(self, valid: bool, feedback: str | None = None, final: bool = False) -> StepInfo:
        info: StepInfo = {
            "task": self.instruction(),
            "available_actions": self.available_actions() if not self._done else [],
            "action_valid": valid,
            "feedback": self._feedback if feedback is None else feedback,
        }
        if final:
            ev = self._evaluate()
            info["score"] = min(max(float(ev.score), 0.0), 1.0)  # np.clip: 3 us slower
            info["success"] = bool(ev.is_success)
            info["rubric"] = list(ev.rubric)
            info["score_details"] = dict(ev.details)
        return info

    def render(self) -> str | None:
        """Return (``ansi``) or print (``human``) the current observation."""
        if self.render_mode == "ansi":
            return self._obs
        if self.render_mode == "human":
            print(self._obs)
        return None

    # ------------------------------------------------------------------ extras
    @property
    def max_steps(self) -> int:
        """The step budget of the current task (or the ``max_steps`` argument)."""
        if self.max_steps_override is not None:
            return self.max_steps_override
        if self.task is None:
            raise gym.error.ResetNeeded("Call reset() before reading max_steps.")
        return self._budget(self.task)

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in this episode, valid or not."""
        return self._steps

    def action_help(self) -> str:
        """Describe the action grammar for a prompt (generated from the parsing table)."""
        return self.grammar.describe()

    def invalid(self, why: str, action: str | None = None) -> Outcome:
        """Return an invalid-action outcome; ``action`` is echoed (shortened) when given."""
        return Outcome(False, why if action is None else f"{why} (got {echo(action)})")

    def panel(self, split: str) -> list[TaskT]:
        """Return every task of the fixed ``test`` or ``ood`` panel."""
        check_split(split)
        if split not in self.panel_sizes:
            raise ValueError(
                f"Expect a fixed split {sorted(self.panel_sizes)}, actually: {split!r}"
            )
        return build_panel(self.family, split, self.panel_sizes[split], self.make_task)

    def panel_hash(self, split: str) -> str:
        """Return the hash of the fixed panel ``split`` (same in every process)."""
        return panel_hash(self.panel(split))

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> Snapshot:
        """Return a copy of the episode that :meth:`restore` brings back (cheap branching)."""
        return Snapshot(
            self.task, self.task_index, self.split, self._steps, self._done,
            self._terminated, self._obs, self._feedback, self._get_state(),
        )  # fmt: skip

    def restore(self, snap: Snapshot) -> None:
        """Return the env to the moment ``snap`` was taken."""
        if not isinstance(snap, Snapshot):
            raise ValueError(f"Expect a Snapshot from snapshot(), actually: {type(snap).__name__}")
        self.task, self.task_index, self.split = snap.task, snap.task_index, snap.split
        self._steps, self._done, self._terminated = snap.steps, snap.done, snap.terminated
        self._obs, self._feedback = snap.obs, snap.feedback
        self._set_state(snap.state)

    def render_observation(self) -> str:
        """Render the observation afresh from the current state (not the cached copy).

        Equal to :meth:`observe`'s observation when the state is consistent; branching code
        compares the two after :meth:`restore` to catch an env that desynchronized.
        """
        return self._observation(self._feedback)

    def observe(self) -> tuple[str, StepInfo]:
        """Return the current observation and info without acting (e.g. after :meth:`restore`)."""
        return self._obs, self._info(True, final=self._done)

    def state_fingerprint(self) -> Any:
        """A value that compares equal exactly when the episode state is the same.

        Tests use it to check that an invalid action changed nothing. The default is the
        episode state itself; envs whose state lives outside Python (a browser) override it.
        """
        return (self._get_state(), self.task_index, self.split)

    def _get_state(self) -> Any:
        return copy.deepcopy(self.state)

    def _set_state(self, state: Any) -> None:
        self.state = copy.deepcopy(state)
