"""``reflexion``: Reflexion (Shinn et al. 2023), reflect on a failed trial and retry; no training.

At evaluation, every task of the test and ood panels gets up to ``k`` trials:

1. Trial 1: the policy plays the task alone, pi(.|x), as every other method is evaluated.
2. After a failed trial j, a provider (``reflector``) writes a short reflection on it: the
   ``attempt`` request of :mod:`earlyexp.agents.reflect` (the trial's actions with the env's
   feedback, its score and rubric), answered by a rulebook and a ``Strategy:`` line. It goes
   into the task's episodic memory, which keeps the last ``memory`` reflections (3).
3. Trial j + 1 replays the same task (same split, task and seed) with the memory rendered as
   ``reflection`` context blocks after the system prompt: trial j + 1 sees trials <= j only.
   A task stops at its first success; no weights change.
4. success@j: the share of a panel's tasks solved in one of the trials 1..j, for j = 1..k,
   written to ``success_at_k.json`` (the report's "Reflexion success@1..k" section). The
   method returns each task's final trial, so its table row is success@k; a record's tokens
   are those of all its trials (the cost of the answer), its steps those of the final trial.

The tiny model trained from scratch cannot write a reflection (it only knows actions), so the
default provider is the grounded writer (the text is built from the env's feedback and
rubric); ``policy`` asks the policy itself, ``http`` a model behind a server.
``success_at_k.json`` names the provider. ``init`` starts from another cell's checkpoint as
for grpo (``--init il``: Reflexion on top of IL).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earlyexp.agents import reflect
from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    LLMConfig,
    close_policy,
    eval_sampling,
    load_policy,
    prompt_config,
    torch_threads,
)
from earlyexp.agents.prompting import INTRO, REPLY_FORMAT, ContextBlock
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory, write_jsonl

REFLECTORS = ("grounded", "policy", "http")
SUCCESS_FILE = "success_at_k.json"
"""Success after each trial, per split, in the cell folder (read by the report)."""


@dataclass
class ReflexionConfig(LLMConfig):
    """``reflexion``: up to k trials per task, reflections on failures kept in a memory."""

    init: str = "raw"
    """Starting point: raw, il, iwm, sr (that method's cell checkpoint) or a checkpoint path."""
    k: int = 5
    """Trials per task at most (success@1..k)."""
    memory: int = 3
    """Reflections kept in the episodic memory (the last ones; Reflexion: 1-3)."""
    reflector: str = "grounded"
    """Who writes the reflections: grounded (from the env's feedback and rubric; the tiny
    model cannot write one), policy (the policy itself) or http (reflector_url)."""
    reflector_url: str = ""
    """The reflection model, http://HOST:PORT/v1#MODEL (reflector http)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("k", "memory"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        if self.reflector not in REFLECTORS:
            raise ValueError(f"Expect a reflector in {REFLECTORS}, actually: {self.reflector!r}")


def task_of(traj: Trajectory) -> str:
    """The task instruction of ``traj``, read back from its built system prompt."""
    head = f"{INTRO}\nTask: "
    if not traj.system.startswith(head):  # a replaced system prompt: its first paragraph
        return traj.system.split("\n\n", 1)[0]
    body = traj.system[len(head) :]
    ends = [i for i in (body.find("\nActions:\n"), body.find(f"\n{REPLY_FORMAT}")) if i >= 0]
    return body[: min(ends)] if ends else body


def attempt_request(
    traj: Trajectory, kind: reflect.ReflectionKind = "attempt", rubric: bool = True
) -> reflect.ReflectionRequest:
    """A played episode as a reflection request: task, steps with feedback, score, rubric.

    A turn without an action tag shows what the policy wrote instead. ``rubric=False`` leaves
    the rubric out (HeRL's naive-HE ablation).
    """
    steps = [
        reflect.Step(s.action if s.action is not None else s.completion.strip()[:40],
                     s.feedback, s.action_valid)
        for s in traj.steps
    ]  # fmt: skip
    return reflect.ReflectionRequest(
        kind,
        task_of(traj),
        steps=steps,
        score=traj.score,
        rubric=list(traj.rubric) if rubric else [],
    )


@dataclass
class TaskTrials:
    """One task across its trials: the episodic memory and the trials played so far."""

    split: str
    task: int
    seed: int
    memory: list[str] = field(default_factory=list)
    trials: list[Trajectory] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        """Whether a trial succeeded (the task is not retried then)."""
        return any(t.success for t in self.trials)

    def solved_by(self, j: int) -> bool:
        """Whether one of the trials 1..j succeeded."""
        return any(t.success for t in self.trials[:j])

    def next_spec(self) -> EpisodeSpec:
        """The next trial: the same task, the memory as reflection blocks."""
        blocks = tuple(ContextBlock("reflection", m) for m in self.memory)
        return EpisodeSpec(self.split, self.task, self.seed, context=blocks,
                           label=f"trial{len(self.trials) + 1}")  # fmt: skip

    def remember(self, text: str, size: int) -> None:
        """Add the reflection on the last trial; keep the last ``size`` distinct ones.

        A reflection equal to one in the memory replaces it (labelled with the new trial), so
        a writer that repeats itself does not fill the memory with copies.
        """
        kept = [m for m in self.memory if m.split(") ", 1)[-1] != text]
        self.memory = [*kept, f"(trial {len(self.trials)}) {text}"][-size:]


@dataclass
class TrialCounts:
    """Reflections asked for and the ones that failed to be written (not put in a memory)."""

    written: int = 0
    failed: int = 0


def play_trials(
    engine: RolloutEngine,
    env_id: str,
    tasks: Sequence[TaskTrials],
    k: int,
    memory: int,
    reflector: reflect.ReflectionProvider,
    num_envs: int,
) -> TrialCounts:
    """Reflexion's loop: play the unsolved tasks, reflect on the failures, retry, k times."""
    counts = TrialCounts()
    for trial in range(1, k + 1):
        open_tasks = [t for t in tasks if not t.solved]
        if not open_tasks:
            break
        desc = f"reflexion trial {trial}/{k}"
        trajs = engine.run(env_id, [t.next_spec() for t in open_tasks], num_envs, progress=desc)
        for t, traj in zip(open_tasks, trajs, strict=True):
            t.trials.append(traj)
        failed = [t for t in open_tasks if not t.solved]
        if trial == k or not failed:
            break
        reflections = reflector.reflect([attempt_request(t.trials[-1]) for t in failed])
        for t, refl in zip(failed, reflections, strict=True):
            counts.written += refl.ok
            counts.failed += not refl.ok
            if refl.ok:
                t.remember(refl.text, memory)
    return counts


def success_at(tasks: Sequence[TaskTrials], k: int) -> list[float]:
    """success@1..k: the share of ``tasks`` solved in one of the first j trials."""
    n = max(len(tasks), 1)
    return [sum(t.solved_by(j) for t in tasks) / n for j in range(1, k + 1)]


def final_record(t: TaskTrials) -> EpisodeRecord:
    """The task's final trial, with the tokens of all its trials."""
    from earlyexp.agents.evaluation import to_record

    return dataclasses.replace(to_record(t.trials[-1]), tokens=sum(x.tokens for x in t.trials))


@register("reflexion", config=ReflexionConfig, kind="llm")
def run(
    *, env_id: str, seed: int, config: ReflexionConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """Reflexion: up to k trials per task, reflections on the failed ones; no training."""
    with torch_threads(config, model):
        policy = load_policy(_start(config, model, kwargs), device, config.batch_size)
        try:
            return _reflexion(env_id, seed, config, Path(run_dir), model, policy, kwargs)
        finally:
            close_policy(policy)


def _start(config: ReflexionConfig, model: str, kwargs: dict[str, Any]) -> str:
    """The model to play: ``--model`` itself (raw, which may be an HTTP one), else grpo's start."""
    if config.init == "raw":
        return model
    from earlyexp.agents.methods.grpo import start_checkpoint

    return str(start_checkpoint(config.init, model, kwargs))


def _reflexion(
    env_id: str, seed: int, config: ReflexionConfig, run_dir: Path, model: str, policy: Any,
    kwargs: dict[str, Any],
) -> list[EpisodeRecord]:  # fmt: skip
    from earlyexp.agents.evaluation import EVAL_SPLITS, panel_size

    engine = RolloutEngine(policy, prompt_config(config, model), eval_sampling(config, seed),
                           kwargs.get("pool"))  # fmt: skip
    reflector = reflect.make_reflector(config.reflector, policy=policy,
                                       url=config.reflector_url or None)  # fmt: skip
    summary: dict[str, Any] = {"provider": reflector.name, "k": config.k,
                               "memory": config.memory, "splits": {}}  # fmt: skip
    records = []
    try:
        for split in EVAL_SPLITS:
            n = min(config.eval_tasks, panel_size(env_id, split))
            tasks = [TaskTrials(split, i, seed) for i in range(n)]
            counts = play_trials(engine, env_id, tasks, config.k, config.memory, reflector,
                                 config.batch_size)  # fmt: skip
            summary["splits"][split] = {
                "n": n, "success": success_at(tasks, config.k),
                "trials": [len(t.trials) for t in tasks], **dataclasses.asdict(counts),
            }  # fmt: skip
            write_jsonl([x for t in tasks for x in t.trials], run_dir / f"trials_{split}.jsonl")
            write_jsonl([t.trials[-1] for t in tasks], run_dir / f"trajectories_{split}.jsonl")
            records += [final_record(t) for t in tasks]
    finally:
        close_policy(reflector)
    (run_dir / SUCCESS_FILE).write_text(json.dumps(summary, indent=1))
    return records
