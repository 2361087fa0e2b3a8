"""``il``: imitation learning, SFT on expert demonstrations (Early Experience eq. 1).

1. Play ``train_episodes`` episodes of the train stream with the env's expert and export
   them as ``expert_sft.jsonl`` (chat JSONL, the Early Experience release format).
2. SFT: minimise -sum_i log pi(a_i | s_i) over the expert (s_i, a_i) pairs for ``steps``
   optimizer steps (the shared training loop, :mod:`earlyexp.agents.train.loop`).
3. Evaluate the fine-tuned policy on the first ``eval_tasks`` tasks of test and ood.

Files under ``run_dir``: ``expert_sft.jsonl``, ``train_state/`` (the latest training
checkpoint; a killed cell resumes from it), ``checkpoint/`` (the final ``save_pretrained``
folder), ``train_log.json``, ``trajectories_{test,ood}.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    LearnerConfig,
    finish_learner,
    prompt_config,
    sft_stage,
    torch_threads,
)
from earlyexp.agents.models import require_local
from earlyexp.agents.records import EpisodeRecord


@dataclass
class ILConfig(LearnerConfig):
    """``il``: expert demonstrations, then SFT."""


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
        data = write_chat_jsonl(expert_records(demos, prompt.window), run_dir / EXPERT_FILE)
        net, tokenizer = load_model(path, device, training=True)
        net, log = sft_stage(net, tokenizer, read_chat_jsonl(data), config.steps, config, seed,
                             run_dir / "train_state")  # fmt: skip
        return finish_learner(net, tokenizer, {"il": log}, env_id, config, seed, run_dir,
                              prompt, pool)  # fmt: skip
