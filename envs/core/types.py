"""The documented ``info`` dictionary every earlyexp env returns (README: The environment contract)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Split = Literal["train", "test", "ood"]
SPLITS: tuple[Split, ...] = ("train", "test", "ood")


class RubricItem(TypedDict):
    """One part of the task and whether the episode satisfied it."""

    criterion: str
    met: bool


class _StepInfoRequired(TypedDict):
    task: str
    available_actions: list[str]
    action_valid: bool
    feedback: str


class StepInfo(_StepInfoRequired, total=False):
    """The keys of ``info`` returned by ``reset`` and ``step``.

    Always present:
        task: the instruction given to the agent.
        available_actions: valid actions now, or example templates where the space is open.
        action_valid: False when the last action was malformed or impossible (state unchanged).
        feedback: the env's one-line message about the last step ("The agent did not move").

    Present only when the episode has ended (terminated or truncated):
        score: the task score in [0, 1]; equal to the final reward.
        success: ``score == 1`` unless the env card says otherwise.
        rubric: which parts of the task were satisfied.
        score_details: the env's named score components (the env card lists them).

    Present only when something outside the agent's control failed (e.g. the browser died):
        error: the reason; the episode is then truncated.

    Added by the ``earlyexp.envs.vector.PanelCursor`` wrapper (vector-env panels), always:
        split: the split of the episode's task.
        task_index: the task's index in that split (the stream index on ``train``).
        panel_done: True in episodes that replay the cursor's share (not new panel tasks).
    """

    score: float
    success: bool
    rubric: list[RubricItem]
    score_details: dict[str, Any]
    error: str
    split: str
    task_index: int
    panel_done: bool


INFO_KEYS: frozenset[str] = frozenset(StepInfo.__required_keys__ | StepInfo.__optional_keys__)
