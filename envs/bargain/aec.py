"""The PettingZoo AEC env behind :mod:`earlyexp.envs.bargain_v0` (imports ``pettingzoo``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from pettingzoo import AECEnv

from earlyexp.envs.bargain.env import FAMILY
from earlyexp.envs.bargain.game import (
    GRAMMAR,
    ROLES,
    ROUNDS,
    Bargain,
    BargainTask,
    available_actions,
    evaluate,
    generate_task,
    instruction,
    news,
    observation,
    other,
)
from earlyexp.envs.bargain.negotiator import scripted_action
from earlyexp.envs.core.base import TRAIN_STREAM
from earlyexp.envs.core.panels import build_panel, check_index, check_split, task_rng
from earlyexp.envs.core.spaces import AnyText
from earlyexp.envs.core.types import StepInfo

EXAMPLES = tuple(e for s in GRAMMAR.specs for e in s.examples)
TEXT_DTYPE = np.dtype(str)
"""NumPy's unicode dtype of any length: the dtype the observations and their space declare."""


class TextObservation(str):
    """An observation: a plain ``str`` that also names its NumPy dtype.

    PettingZoo's ``api_test`` compares each observation's ``dtype`` with its space's; a bare
    ``str`` has none. Everything else treats it as the ``str`` it is.
    """

    __slots__ = ()
    dtype = TEXT_DTYPE


class TextSpace(AnyText):
    """:class:`AnyText` declaring :data:`TEXT_DTYPE` (observations are :class:`TextObservation`)."""

    def __init__(self, examples: tuple[str, ...] = ()) -> None:
        super().__init__(examples=examples)
        self.dtype = TEXT_DTYPE


@dataclass(frozen=True)
class AECSnapshot:
    """A restorable copy of a :class:`BargainAECEnv` episode (the game is immutable)."""

    task: BargainTask | None
    task_index: int | None
    split: str
    game: Bargain | None
    agents: tuple[str, ...]
    agent_selection: str
    rewards: dict[str, float]
    cumulative: dict[str, float]
    terminations: dict[str, bool]
    truncations: dict[str, bool]
    infos: dict[str, StepInfo]


class BargainAECEnv(AECEnv[str, str, str]):
    """Two agents, ``buyer`` and ``seller``, bargain over the price of a WebShop product.

    ## Description
    The game of ``EarlyExp/Bargain-v0`` with both sides played by agents (PettingZoo AEC API;
    ``parallel_env()`` is PettingZoo's ``turn_based_aec_to_parallel`` of it). A product from
    WebShop-v0's catalog is listed (title, type, attributes, options on sale, list price). The
    buyer privately holds a budget and the attributes it needs, the seller privately holds its
    cost. Each agent's ``infos[agent]["task"]`` holds the listing and its own private value
    only: the other agent's observations and infos do not depend on it.

    ## Observation
    Text, per agent: the news since its last move (``You offered $30.00. The seller offered
    $41.20.``; an invalid action of its own is flagged there), the offer on the table, both
    sides' offers so far and the moves left. It is a ``str``; its subclass
    :class:`TextObservation` also carries NumPy's unicode dtype, which PettingZoo's
    ``api_test`` asks of every observation.

    ## Action
    One table, as in Bargain-v0 (``action_help()``): ``offer[<price>]``, ``accept``,
    ``walk away``, ``say[<message>]`` (at most 200 characters). A malformed action, a non-str
    one, or an *out-of-turn* ``accept`` (the offer on the table is the agent's own, not yet
    answered) never raises: it is flagged in the agent's next observation and
    ``infos[agent]["action_valid"]`` is False, and it counts as that agent's move (the turn
    passes). ``infos[agent]["available_actions"]`` lists concrete valid actions for the agent
    to move (empty for the other).

    ## Reward
    0 until the end; then each agent's normalized surplus floored at 0: buyer
    (budget - p) / budget, seller (p - cost) / (list - cost) for a deal at p; 0 to both
    without a deal. At the end each agent's info has ``score``, ``success``, ``rubric``
    (``reach a deal``, within its own limit, ``get at least a quarter of the gains from
    trade``) and ``score_details``, as in Bargain-v0.

    ## Episode end
    Both agents terminate on a deal (``accept``) or ``walk away``; both are truncated when
    each has taken ``rounds`` moves (10) without either.

    ## Splits
    As Bargain-v0, the same panels: ``train`` stream, ``test`` and ``ood`` (held-out product
    types, wider gaps between budget and cost), 500 tasks each. ``reset(options={"split":
    "test", "task": 3})``; other option keys are ignored with a warning (PettingZoo's
    ``api_test`` passes one).

    ## Arguments
    ``earlyexp.envs.bargain_v0.env(render_mode=None, rounds=10)`` (also ``raw_env``,
    ``parallel_env``); the single-agent view is ``gym.make("EarlyExp/Bargain-v0",
    role="buyer")``. ``env.unwrapped.expert_action(agent)`` is the scripted negotiator's move;
    ``snapshot()`` / ``restore(snap)`` branch an episode.

    ## Version history
    * v0: initial version.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012
        "name": "bargain_v0",
        "render_modes": ["ansi", "human"],
        "is_parallelizable": False,  # turn-based: parallel_env() is turn_based_aec_to_parallel
    }
    panel_sizes = {"test": 500, "ood": 500}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, rounds: int = ROUNDS) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"Expect render_mode in {self.metadata['render_modes']} or None, "
                f"actually: {render_mode!r}"
            )
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"Expect rounds to be an int >= 1, actually: {rounds!r}")
        self.render_mode, self.rounds = render_mode, rounds
        self.possible_agents = list(ROLES)
        self._obs_spaces = {a: TextSpace() for a in ROLES}
        self._act_spaces = {a: TextSpace(EXAMPLES) for a in ROLES}
        self._rng: np.random.Generator | None = None
        self.task: BargainTask | None = None
        self.task_index: int | None = None
        self.split = "train"
        self.game: Bargain | None = None

    def observation_space(self, agent: str) -> TextSpace:
        """Any text (the same object on every call, as PettingZoo asks)."""
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> TextSpace:
        """Any text; ``sample()`` mixes the table's examples with random strings."""
        return self._act_spaces[agent]

    # ------------------------------------------------------------------ PettingZoo API
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Start a negotiation; ``options`` may hold ``split`` and ``task`` (an index)."""
        options = dict(options or {})
        unknown = sorted(set(options) - {"split", "task"})
        if unknown:
            warnings.warn(f"Ignoring reset options {unknown}: expect split, task", stacklevel=2)
        split = check_split(options.get("split", "train"))
        size = self.panel_sizes.get(split)
        index = None if options.get("task") is None else check_index(split, options["task"], size)
        if seed is not None or self._rng is None:
            self._rng, _ = seeding.np_random(seed)
        if index is None:
            index = int(self._rng.integers(size if size is not None else TRAIN_STREAM))
        self.task = generate_task(task_rng(FAMILY, split, index), split)
        self.task_index, self.split = index, split
        self.game = Bargain(self.task, self.rounds)
        self.agents = list(ROLES)
        self.rewards = dict.fromkeys(ROLES, 0.0)
        self._cumulative_rewards = dict.fromkeys(ROLES, 0.0)
        self.terminations = dict.fromkeys(ROLES, False)
        self.truncations = dict.fromkeys(ROLES, False)
        self.infos = {a: self._info(a) for a in ROLES}
        self.agent_selection = ROLES[0]

    def step(self, action: Any) -> None:
        """Apply the selected agent's action; an invalid one is flagged and uses its turn."""
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        game = self._game()
        self._cumulative_rewards[agent] = 0.0
        new, why = game.play(agent, action)
        self.game = new if why is None else game.forfeit(agent, why)
        status = self.game.status
        if status != "open":
            for a in self.agents:
                self.rewards[a] = evaluate(self.game, a).score
                self.terminations[a] = status in ("deal", "walked")
                self.truncations[a] = status == "expired"
        self.infos = {a: self._info(a) for a in self.agents}
        self.agent_selection = other(agent)
        self._accumulate_rewards()
        if self.render_mode == "human":
            self.render()

    def observe(self, agent: str) -> TextObservation:
        """``agent``'s view: the news since its last move, the table, the offers, moves left."""
        return TextObservation(observation(self._game(), agent))

    def render(self) -> str | None:
        """The public transcript (no private value): the listing and every move."""
        game = self._game()
        lines = [f"{game.task.title}: list price ${game.task.list_cents / 100:.2f}"]
        for i, m in enumerate(game.moves, 1):
            what = f"${m.cents / 100:.2f}" if m.kind in ("offer", "accept") else m.text
            lines.append(f"{i}. {m.role}: {m.kind} {what}".rstrip())
        text = "\n".join([*lines, f"status: {game.status}"])
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        """Nothing to release (no browser, no server)."""

    # ------------------------------------------------------------------ extras
    def _game(self) -> Bargain:
        if self.game is None:
            raise RuntimeError("Call reset() before using the env.")
        return self.game

    def _info(self, agent: str) -> StepInfo:
        game = self._game()
        mine = [m for m in game.moves if m.role == agent]
        info: StepInfo = {
            "task": instruction(game.task, agent, self.rounds),
            "available_actions": available_actions(game, agent),
            "action_valid": not mine or mine[-1].kind != "invalid",
            "feedback": news(game, agent),
        }
        if game.status != "open":
            ev = evaluate(game, agent)
            info["score"], info["success"] = ev.score, ev.is_success
            info["rubric"], info["score_details"] = list(ev.rubric), dict(ev.details)
        return info

    def expert_action(self, agent: str | None = None) -> str:
        """The scripted negotiator's next action for ``agent`` (default: the one to move)."""
        return scripted_action(self._game(), agent or self.agent_selection)

    def action_help(self) -> str:
        """Describe the action table for a prompt (the table that parses the actions)."""
        return GRAMMAR.describe()

    def panel(self, split: str) -> list[BargainTask]:
        """Every task of the fixed ``test`` or ``ood`` panel (the same as Bargain-v0's)."""
        if split not in self.panel_sizes:
            raise ValueError(f"Expect split in {sorted(self.panel_sizes)}, actually: {split!r}")
        return build_panel(FAMILY, split, self.panel_sizes[split], generate_task)

    def snapshot(self) -> AECSnapshot:
        """A copy of the episode that :meth:`restore` brings back."""
        return AECSnapshot(
            self.task, self.task_index, self.split, self.game, tuple(self.agents),
            self.agent_selection, dict(self.rewards), dict(self._cumulative_rewards),
            dict(self.terminations), dict(self.truncations),
            {a: dict(i) for a, i in self.infos.items()},
        )  # fmt: skip

    def restore(self, snap: AECSnapshot) -> None:
        """Return the env to the moment ``snap`` was taken."""
        if not isinstance(snap, AECSnapshot):
            raise ValueError(f"Expect an AECSnapshot, actually: {type(snap).__name__}")
        self.task, self.task_index, self.split, self.game = (
            snap.task, snap.task_index, snap.split, snap.game,
        )  # fmt: skip
        self.agents, self.agent_selection = list(snap.agents), snap.agent_selection
        self.rewards, self._cumulative_rewards = dict(snap.rewards), dict(snap.cumulative)
        self.terminations, self.truncations = dict(snap.terminations), dict(snap.truncations)
        self.infos = {a: dict(i) for a, i in snap.infos.items()}
