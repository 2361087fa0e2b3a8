"""``il``: imitation learning, SFT on expert demonstrations (Early Experience eq. 1).

1. Play ``train_episodes`` episodes of the train stream with the env's expert and export
   them as ``expert_sft.jsonl`` (chat JSONL, the Early Experience release format).
2. SFT: minimise -sum_i log pi(a_i | s_i) over the expert (s_i, a_i) pairs for ``steps``
   optimizer steps (the shared training loop, :mod:`earlyexp.agents.train.loop`).
3. Evaluate the fine-tuned policy on the first ``eval_tasks`` tasks of test and ood.

``prompt_variants`` (off by default) trains a fraction of the expert episodes under a revised
system prompt of the kind ERL's second attempts see (:func:`vary_prompts`): a stand-in for the
instruction following that a pretrained model brings, since the tiny model trained under one
prompt breaks under any other. Evaluation always plays the original prompt.

Files under ``run_dir``: ``expert_sft.jsonl``, ``train_state/`` (the latest training
checkpoint; a killed cell resumes from it), ``checkpoint/`` (the final ``save_pretrained``
folder), ``train_log.json``, ``trajectories_{test,ood}.jsonl``, and with ``eval_every`` the
learning curve ``sft_curve.json`` (greedy success on the first ``eval_subset`` test tasks every
``eval_every`` SFT steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    Curve,
    LearnerConfig,
    eval_subset,
    finish_learner,
    prompt_config,
    sft_stage,
    torch_threads,
)
from earlyexp.agents.models import require_local
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import Trajectory

SFT_CURVE = "sft_curve.json"


@dataclass
class ILConfig(LearnerConfig):
    """``il``: expert demonstrations, then SFT."""

    prompt_variants: float = 0.0
    """Fraction of the expert episodes trained under a revised system prompt like those of
    ERL's second attempts instead of the original (0: off): written from random-action
    attempts at the same train tasks, as the grounded rulebook or (one in two) the
    no-reflection retry prompt, with the reply-format line. Evaluation plays the original.
    The revised prompts are 3-8x longer than the original: set group_by_length too."""
    variant_chars: int = 2000
    """Revised prompts are capped at this many characters (ERL's ``max_prompt_chars``)."""
    eval_every: int = 0
    """Every this many SFT steps (and at the last), play the first ``eval_subset`` test tasks
    greedily and add a point (step, examples, wall s, success, score) to ``sft_curve.json``
    (0: off): how many steps a model needs before it first succeeds. The training is the same
    with or without it; the evaluations' time counts in the cell's."""
    eval_subset: int = 20
    """Test tasks per ``sft_curve.json`` point."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.prompt_variants <= 1.0:
            raise ValueError(f"Expect 0 <= prompt_variants <= 1, actually: {self.prompt_variants}")
        if self.variant_chars < 1:
            raise ValueError(f"Expect variant_chars >= 1, actually: {self.variant_chars}")
        if self.eval_every < 0 or self.eval_subset < 1:
            raise ValueError(
                "Expect eval_every >= 0 and eval_subset >= 1, actually: "
                f"{self.eval_every}, {self.eval_subset}"
            )


@register("il", config=ILConfig, kind="llm", trains=True)
def run(
    *, env_id: str, seed: int, config: ILConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """Imitation learning: SFT on expert demonstrations of the train stream, then evaluate."""
    from earlyexp.agents.backends.hf import load_model
    from earlyexp.agents.data import (
        EXPERT_FILE,
        collect_expert,
        expert_records,
        read_chat_jsonl,
        write_chat_jsonl,
    )

    path, run_dir, pool = require_local(model, "il"), Path(run_dir), kwargs.get("pool")
    with torch_threads(config, model):
        prompt = prompt_config(config, model)
        demos = collect_expert(env_id, config.train_episodes, seed, prompt, config.batch_size, pool)
        if config.prompt_variants > 0:
            demos = vary_prompts(env_id, demos, config, seed, prompt, pool)
        data = write_chat_jsonl(expert_records(demos, prompt.window), run_dir / EXPERT_FILE)
        net, tokenizer = load_model(path, device, training=True)
        on_step = sft_curve(net, tokenizer, env_id, config, seed, run_dir, prompt, pool)
        net, log = sft_stage(net, tokenizer, read_chat_jsonl(data), config.steps, config, seed,
                             run_dir / "train_state", on_step)  # fmt: skip
        return finish_learner(net, tokenizer, {"il": log}, env_id, config, seed, run_dir,
                              prompt, pool)  # fmt: skip


def sft_curve(
    net: Any, tokenizer: Any, env_id: str, config: ILConfig, seed: int, run_dir: Path,
    prompt: Any, pool: Any,
) -> Callable[[int], None] | None:  # fmt: skip
    """The SFT hook that writes ``sft_curve.json`` (``config.eval_every``), or None when off.

    A resumed run keeps the points already written and evaluates only the missing ones.
    """
    if not config.eval_every:
        return None
    from earlyexp.agents.backends.hf import HFPolicy

    curve = Curve(run_dir / SFT_CURVE)
    policy = HFPolicy(net, tokenizer, batch_size=config.batch_size)

    def on_step(done: int) -> None:
        due = done % config.eval_every == 0 or done == config.steps
        if due and not curve.has(done):
            net.eval()
            point = eval_subset(policy, env_id, config.eval_subset, config, seed, prompt, pool)
            curve.add(done, point, samples=done * config.sft_batch_size)

    return on_step


def vary_prompts(
    env_id: str, demos: list[Trajectory], config: ILConfig, seed: int, prompt: Any, pool: Any
) -> list[Trajectory]:
    """``demos`` with a ``config.prompt_variants`` fraction under revised system prompts.

    For each picked episode, a random policy attempts the same task; the revised prompt is
    written from that attempt and up to 3 earlier ones (oldest first, as ERL shows recent
    attempts): in turn the grounded rulebook (:func:`~earlyexp.agents.reflect.grounded_rulebook`,
    every other one with the previous rulebook as its memory) and the no-reflection retry
    prompt (:func:`~earlyexp.agents.reflect.retry_prompt`), each ending with the reply-format
    line as a second attempt's does. The expert's replies are kept; only the system changes.
    """
    import numpy as np

    from earlyexp.agents import reflect
    from earlyexp.agents.backends.scripted import RandomPolicy
    from earlyexp.agents.methods.erl import attempt_of, with_reminder
    from earlyexp.agents.methods.reflexion import task_of
    from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine

    rng = np.random.default_rng(seed * 9_973 + 11)
    picked = [i for i in range(len(demos)) if rng.random() < config.prompt_variants]
    if not picked:
        return demos
    specs = [EpisodeSpec(demos[i].split, demos[i].task, demos[i].seed) for i in picked]
    engine = RolloutEngine(RandomPolicy(seed), prompt, pool=pool)
    desc = f"random attempts for prompt variants ({env_id.removeprefix('EarlyExp/')})"
    attempts = [attempt_of(t) for t in engine.run(env_id, specs, config.batch_size, progress=desc)]
    out, memory = list(demos), ""
    for n, i in enumerate(picked):
        q = reflect.ReflectionRequest(
            "rulebook", task_of(demos[i]), system=demos[i].system,
            attempts=attempts[max(0, n - 3) : n + 1], memory=memory if n % 4 == 2 else "",
        )  # fmt: skip
        if n % 2:
            text = reflect.retry_prompt(q, max_chars=config.variant_chars)
        else:
            text = memory = reflect.grounded_rulebook(q, config.variant_chars)
        out[i] = dataclasses.replace(demos[i], system=with_reminder(text))
    return out
