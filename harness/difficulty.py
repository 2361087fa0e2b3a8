"""Success by difficulty: panel tasks bucketed by the expert's number of steps on them.

Many panel tasks are short (a FrozenLake start next to the goal is solved in one step), so a
method that only solves those looks like one that solves a share of the board. The expert's
step count on a task measures how long the task is; the report splits success by buckets of
it (``1``, ``2``, ``3-4``, ``5-8``, ``9-16``, ``17+``).

The step counts live in ``results.json`` under ``expert_steps`` (``{env: {split: {task:
steps}}}``), so a report can be redrawn from that file alone. They come from the run's own
``expert`` cells when it has them; otherwise :func:`measure_expert_steps` plays the scripted
expert on the tasks the run evaluated (once; the counts are kept in ``results.json``).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from earlyexp.harness.stats import wilson_interval

if TYPE_CHECKING:
    from earlyexp.harness.bench import CellResult

ExpertSteps = dict[str, dict[str, dict[str, int]]]
"""``{env_id: {split: {str(task): expert steps}}}``, as stored in ``results.json``."""

BUCKETS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, None))
"""Expert-step ranges (inclusive; None: no upper end), doubling in width."""


def bucket_label(lo: int, hi: int | None) -> str:
    """``"1"``, ``"3-4"`` or ``"17+"``."""
    if hi is None:
        return f"{lo}+"
    return str(lo) if lo == hi else f"{lo}-{hi}"


LABELS = tuple(bucket_label(lo, hi) for lo, hi in BUCKETS)


def bucket_of(steps: int) -> str:
    """The label of the bucket holding an expert step count (``0`` counts as ``1``)."""
    for lo, hi in BUCKETS:
        if hi is None or steps <= hi:
            return bucket_label(lo, hi)
    raise AssertionError("the last bucket has no upper end")


def from_expert_cells(cells: Iterable[CellResult]) -> ExpertSteps:
    """Step counts of the tasks the run's finished ``expert`` cells solved."""
    out: ExpertSteps = defaultdict(lambda: defaultdict(dict))
    for cell in cells:
        if cell.method != "expert" or cell.status != "done":
            continue
        for r in cell.episodes:
            if r.success:
                out[cell.env][r.split].setdefault(str(r.task), r.steps)
    return {env: dict(splits) for env, splits in out.items()}


def merge(*sources: ExpertSteps) -> ExpertSteps:
    """One table from several; the first source that knows a task wins."""
    out: ExpertSteps = {}
    for src in sources:
        for env, splits in src.items():
            for split, tasks in splits.items():
                known = out.setdefault(env, {}).setdefault(split, {})
                for task, steps in tasks.items():
                    known.setdefault(str(task), int(steps))
    return out


def missing(cells: Iterable[CellResult], known: ExpertSteps) -> dict[tuple[str, str], int]:
    """``{(env, split): n}``: the first ``n`` tasks cover every evaluated task not in ``known``."""
    need: dict[tuple[str, str], int] = {}
    for cell in cells:
        for r in cell.episodes:
            if str(r.task) not in known.get(cell.env, {}).get(r.split, {}):
                need[(cell.env, r.split)] = max(need.get((cell.env, r.split), 0), r.task + 1)
    return need


def measure_expert_steps(need: dict[tuple[str, str], int]) -> ExpertSteps:
    """Play the scripted expert on the first ``n`` tasks of each ``(env, split)`` in ``need``.

    An env that cannot be played here (FlightBooking without Chromium) gives a warning and no
    counts; the breakdown then leaves that env out.
    """
    from earlyexp.agents.backends.scripted import ExpertPolicy
    from earlyexp.agents.evaluation import evaluate
    from earlyexp.progress import bar

    out: ExpertSteps = {}
    for (env_id, split), n in bar(
        sorted(need.items()), desc="expert steps for the difficulty breakdown", unit="panel"
    ):
        try:
            result = evaluate(env_id, ExpertPolicy(), split=split, n=n)
        except Exception as err:  # a missing browser or extra must not lose the report
            warnings.warn(
                f"No difficulty breakdown for {env_id} {split}: the expert could not be "
                f"played ({type(err).__name__}: {err})",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        steps = {str(r.task): r.steps for r in result.records if r.success}
        out.setdefault(env_id, {})[split] = steps
    return out


@dataclass(frozen=True)
class BucketRow:
    """Success of one method on one split's tasks of one difficulty bucket (over seeds)."""

    env: str
    method: str
    split: str
    bucket: str
    n: int
    wins: int
    ci_low: float
    ci_high: float

    @property
    def success(self) -> float:
        """Share of the episodes that succeeded."""
        return self.wins / self.n


def breakdown(cells: Iterable[CellResult], steps: ExpertSteps) -> list[BucketRow]:
    """One row per (env, method, split, bucket) with episodes, in the run's method order."""
    counts: dict[tuple[str, str, str, str], list[int]] = {}
    for cell in cells:
        for r in cell.episodes:
            known = steps.get(cell.env, {}).get(r.split, {}).get(str(r.task))
            if known is None:
                continue
            key = (cell.env, cell.method, r.split, bucket_of(known))
            n_w = counts.setdefault(key, [0, 0])
            n_w[0] += 1
            n_w[1] += int(r.success)
    rows = []
    for (env, method, split, bucket), (n, wins) in counts.items():
        lo, hi = wilson_interval(wins, n)
        rows.append(BucketRow(env, method, split, bucket, n, wins, lo, hi))
    order = {key: i for i, key in enumerate(dict.fromkeys((r.env, r.method) for r in rows))}
    return sorted(
        rows, key=lambda r: (order[(r.env, r.method)], r.split != "test", LABELS.index(r.bucket))
    )


def tasks_per_bucket(steps: ExpertSteps, env: str, split: str, tasks: Iterable[int]) -> dict:
    """``{bucket: tasks}`` of the evaluated ``tasks`` of one panel (buckets in order)."""
    known = steps.get(env, {}).get(split, {})
    found = [bucket_of(known[str(t)]) for t in set(tasks) if str(t) in known]
    return {b: found.count(b) for b in LABELS if b in found}
