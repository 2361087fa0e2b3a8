"""Evaluate a task panel through Gymnasium's vector envs, each task exactly once.

Gymnasium's vector envs reset a finished sub-env with a bare ``reset()``: no ``split``, no
``task``. A plain ``gym.make_vec(id, n)`` therefore drifts back to the ``train`` stream after
``reset(options={"split": "test"})``, and ``options={"task": i}`` gives every sub-env task
``i``. :class:`PanelCursor` is the wrapper that fixes both: it turns every bare reset into
the next task of its share of a panel. :func:`make_panel_vec` builds a vector env of ``n``
cursors, sub-env ``k`` playing tasks ``k, k + n, k + 2n, ...`` of the panel, and
:func:`collect_panel` plays it until every task has finished once::

    envs = make_panel_vec("EarlyExp/FrozenLake-v0", num_envs=4, split="test", tasks=6)
    episodes = collect_panel(envs)  # expert actions; pass act=... for your own policy
    envs.close()

For policies, prompts and metrics use ``earlyexp.agents.evaluate``; this module is for code
that drives Gymnasium vector envs itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from earlyexp.envs.core.base import text_env
from earlyexp.envs.core.panels import check_index, check_split

PanelVectorEnv = SyncVectorEnv | AsyncVectorEnv
"""What :func:`make_panel_vec` returns."""

VectorAct = Callable[[Sequence[str], dict[str, Any]], Sequence[str]]
"""``act(observations, infos) -> actions``: one action per sub-env, from the vector env's batch."""


def _panel(tasks: int | Sequence[int] | None) -> tuple[int, ...] | None:
    """The task indices ``tasks`` names: ``n`` is ``0 .. n - 1``; None stays None."""
    if tasks is None:
        return None
    if isinstance(tasks, int) and not isinstance(tasks, bool):
        if tasks < 1:
            raise ValueError(f"Expect tasks >= 1 (a panel of that many), actually: {tasks}")
        return tuple(range(tasks))
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
        raise ValueError(f"Expect tasks as an int, a sequence of ints or None, actually: {tasks!r}")
    if len(set(tasks)) < len(tasks):
        raise ValueError(f"Expect distinct task indices, actually: {list(tasks)}")
    return tuple(tasks)


class PanelCursor(gym.Wrapper[str, str, str, str], gym.utils.RecordConstructorArgs):
    """Bare resets play the next task of a panel share: ``tasks[offset::stride]`` of ``split``.

    How ``reset`` reads its arguments:

    - ``reset()`` (what vector envs call on autoreset): the next task of the share. Once the
      share is used up the cursor starts it over, and those episodes carry
      ``info["panel_done"] = True``, so a vector env's other sub-envs can finish theirs.
    - ``reset(seed=s)``: back to the share's first task, with the env seeded ``s``: the same
      seed gives the same task sequence and observations.
    - ``reset(options={"split": s})``: the cursor moves to split ``s`` (the same task indices)
      and starts over; a bad split raises ``ValueError`` and changes nothing.
    - ``reset(options={"task": i, ...})``: that one task, passed through as is; the cursor
      does not move (nor does it in a vector env, where every sub-env then plays task ``i``).

    Every ``info`` carries ``split`` and ``task_index`` (the episode's task, read off the env)
    and ``panel_done``.

    Args:
        env: an earlyexp text env (``gym.make("EarlyExp/...")``).
        split: ``test``, ``ood`` or ``train``.
        tasks: the panel: ``n`` (its first ``n`` tasks), a sequence of task indices, or None
            (the whole fixed panel of ``split``; on ``train``, the stream's random tasks, which
            never run out).
        offset: position in ``tasks`` of this env's first task.
        stride: step between this env's tasks (the number of sub-envs in a vector env).
    """

    def __init__(
        self,
        env: gym.Env[str, str],
        split: str = "test",
        tasks: int | Sequence[int] | None = None,
        offset: int = 0,
        stride: int = 1,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, split=split, tasks=tasks, offset=offset, stride=stride
        )
        gym.Wrapper.__init__(self, env)
        text_env(env)  # ValueError for a non-earlyexp env
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"Expect stride to be an int >= 1, actually: {stride!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < stride:
            raise ValueError(f"Expect offset an int in [0, stride={stride}), actually: {offset!r}")
        self.tasks = _panel(tasks)
        self.offset, self.stride = offset, stride
        self.panel_split = split
        self._check(check_split(split))
        self._played = 0  # episodes begun through the cursor since it (re)started
        self._episode: dict[str, Any] = {}

    def _share(self, split: str) -> tuple[int, ...] | None:
        """The task indices this env plays on ``split`` (None: the endless train stream)."""
        tasks = self.tasks
        if tasks is None:
            size = text_env(self.env).panel_sizes.get(split)
            if size is None:
                return None
            tasks = tuple(range(size))
        return tasks[self.offset :: self.stride]

    def _check(self, split: str) -> None:
        share = self._share(split)
        if share is None:
            return
        if not share:
            raise ValueError(
                f"Expect offset < the number of tasks ({len(self.tasks or ())}) so this env "
                f"has a task, actually: offset {self.offset}"
            )
        size = text_env(self.env).panel_sizes.get(split)
        for index in self.tasks or ():
            check_index(split, index, size)

    @property
    def share(self) -> tuple[int, ...] | None:
        """The task indices this env plays, in order (None: the endless train stream)."""
        return self._share(self.panel_split)

    def rewind(self) -> None:
        """Start the share over: the next bare ``reset()`` plays its first task."""
        self._played = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start the next panel episode (see the class docstring for the arguments)."""
        options = dict(options or {})
        if "task" in options:
            obs, info = self.env.reset(seed=seed, options=options)
            return obs, self._begin(info, panel_done=False)
        split = self.panel_split
        if "split" in options:
            split = check_split(options["split"])
            self._check(split)
        played = 0 if seed is not None or "split" in options else self._played
        share = self._share(split)
        if share is not None:
            options["task"] = share[played % len(share)]
        options["split"] = split
        obs, info = self.env.reset(seed=seed, options=options)  # raises before any change
        self.panel_split, self._played = split, played + 1
        return obs, self._begin(info, panel_done=share is not None and played >= len(share))

    def _begin(self, info: dict[str, Any], panel_done: bool) -> dict[str, Any]:
        raw = text_env(self.env)
        self._episode = {"split": raw.split, "task_index": raw.task_index, "panel_done": panel_done}
        return {**info, **self._episode}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step the env; the info also says the episode's split, task and ``panel_done``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), terminated, truncated, {**info, **self._episode}


def _panel_env(
    env_id: str,
    env_kwargs: dict[str, Any],
    split: str,
    tasks: tuple[int, ...] | None,
    offset: int,
    stride: int,
) -> PanelCursor:
    env = gym.make(env_id, **env_kwargs)
    try:
        return PanelCursor(env, split, tasks, offset, stride)
    except BaseException:
        env.close()
        raise


def make_panel_vec(
    env_id: str,
    num_envs: int = 1,
    split: str = "test",
    tasks: int | Sequence[int] | None = None,
    *,
    mode: str | gym.VectorizeMode = "sync",
    autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    vector_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> PanelVectorEnv:
    """A Gymnasium vector env whose sub-env ``k`` plays tasks ``k, k + n, ...`` of a panel.

    Each sub-env is ``PanelCursor(gym.make(env_id, **env_kwargs), split, tasks, k, num_envs)``,
    so every bare reset (autoreset included) stays on ``split`` and moves to that sub-env's next
    task; together the sub-envs play every task of ``tasks`` once before any replays (replays
    carry ``info["panel_done"] = True``). :func:`collect_panel` plays it through.

    Args:
        env_id: a registered id, ``"EarlyExp/FrozenLake-v0"``.
        num_envs: sub-envs, at most the number of tasks.
        split: ``test``, ``ood`` or ``train``.
        tasks: ``n`` (the panel's first ``n`` tasks), task indices, or None (the whole panel).
        mode: ``sync`` (``SyncVectorEnv``, one process) or ``async`` (``AsyncVectorEnv``, one
            process per sub-env; shared memory works for text observations).
        autoreset_mode: a Gymnasium ``AutoresetMode``, its value (``"NextStep"``, the default,
            ``"SameStep"``, ``"Disabled"``) or name (``"next_step"``).
        vector_kwargs: more arguments of the vector env class (``copy``, ``context``, ...).
        **env_kwargs: arguments of the env (``symbols="legend"``, ``num_products=...``).

    Returns:
        The vector env; close it when done.
    """
    mode = getattr(mode, "value", mode)
    if mode not in ("sync", "async"):
        raise ValueError(f"Expect mode 'sync' or 'async', actually: {mode!r}")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"Expect num_envs to be an int >= 1, actually: {num_envs!r}")
    panel = _panel(tasks)
    if panel is not None and len(panel) < num_envs:
        raise ValueError(
            f"Expect num_envs <= the number of tasks ({len(panel)}), actually: {num_envs}"
        )
    fns = [
        partial(_panel_env, env_id, dict(env_kwargs), check_split(split), panel, k, num_envs)
        for k in range(num_envs)
    ]
    cls = SyncVectorEnv if mode == "sync" else AsyncVectorEnv
    return cls(fns, autoreset_mode=_autoreset(autoreset_mode), **(vector_kwargs or {}))


def _autoreset(mode: str | AutoresetMode) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    for m in AutoresetMode:
        if mode in (m.value, m.name, m.name.lower()):
            return m
    names = [m.name.lower() for m in AutoresetMode]
    raise ValueError(f"Expect autoreset_mode in {names} (or an AutoresetMode), actually: {mode!r}")


@dataclass(frozen=True)
class PanelEpisode:
    """One finished panel episode of a vector env (what :func:`collect_panel` returns).

    Attributes:
        task_index: the task's index in its split's panel.
        split: the split the episode was played on.
        env_index: the sub-env that played it.
        steps: actions taken.
        score: the final score in [0, 1].
        success: the episode's ``success``.
        info: the final ``info`` of the episode (``task`` is the instruction).
    """

    task_index: int
    split: str
    env_index: int
    steps: int
    score: float
    success: bool
    info: dict[str, Any]


def env_info(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env ``i``'s own ``info`` out of a vector env's batched ``infos`` (masks read)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        mask = infos.get(f"_{key}")
        if key.startswith("_") or mask is None or not mask[i]:
            continue
        if isinstance(value, dict):
            out[key] = env_info(value, i)
        else:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def _shares(envs: PanelVectorEnv) -> list[tuple[int, ...]]:
    try:
        shares = list(envs.get_attr("share"))
    except AttributeError as e:
        raise ValueError(
            "Expect a vector env of PanelCursor sub-envs (make_panel_vec), actually: "
            f"{type(envs).__name__} without a 'share' attribute"
        ) from e
    if any(s is None for s in shares):
        raise ValueError("Expect a finite panel (tasks=... on train), actually: the train stream")
    return shares


def collect_panel(
    envs: PanelVectorEnv, act: VectorAct | None = None, *, seed: int | None = None
) -> list[PanelEpisode]:
    """Play a :func:`make_panel_vec` vector env until each panel task has finished once.

    The cursors start over (``reset(seed=seed)``), then the vector env steps, autoreset as its
    ``autoreset_mode`` says (``next_step`` or ``same_step``), until every task of every
    sub-env's share has ended once; replays (``panel_done``) are not counted.

    Args:
        envs: from :func:`make_panel_vec` (sync or async).
        act: ``act(observations, infos) -> actions``; None: the scripted expert of each sub-env.
        seed: the vector reset seed (sub-env ``k`` gets ``seed + k``).

    Returns:
        One :class:`PanelEpisode` per task, sorted by task index.
    """
    mode = AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
    if mode == AutoresetMode.DISABLED:
        raise ValueError("Expect autoreset_mode next_step or same_step, actually: disabled")
    wanted = set().union(*_shares(envs))
    policy: VectorAct = act or (lambda obs, infos: envs.call("expert_action"))
    envs.call("rewind")
    obs, infos = envs.reset(seed=seed)
    steps = np.zeros(envs.num_envs, dtype=int)
    resetting = np.zeros(envs.num_envs, dtype=bool)  # next_step: this step only resets
    found: dict[int, PanelEpisode] = {}
    while len(found) < len(wanted):
        obs, _, terminated, truncated, infos = envs.step(tuple(policy(obs, infos)))
        ended = terminated | truncated
        finals = infos.get("final_info", {}) if mode == AutoresetMode.SAME_STEP else infos
        for i in map(int, np.flatnonzero(~resetting)):
            steps[i] += 1
            if ended[i]:
                final = env_info(finals, i)
                if not final["panel_done"] and final["task_index"] not in found:
                    found[final["task_index"]] = PanelEpisode(
                        final["task_index"], final["split"], i, int(steps[i]),
                        float(final["score"]), bool(final["success"]), final,
                    )  # fmt: skip
                steps[i] = 0
        if mode == AutoresetMode.NEXT_STEP:
            resetting = ended
        if len(found) < len(wanted) and np.all(infos["panel_done"]):
            missing = sorted(wanted - set(found))
            raise RuntimeError(f"Every sub-env replays its share, yet tasks {missing} never ended")
    return [found[i] for i in sorted(found)]
