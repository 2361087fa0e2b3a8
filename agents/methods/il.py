"""``il``: imitation learning, SFT on expert demonstrations (Early Experience eq. 1).

1. Play ``train_episodes`` episodes of the train stream with the env's expert and export
   them as ``expert_sft.jsonl`` (chat JSONL, the Early Experience release format).
2. SFT: minimise -sum_i log pi(a_i | s_i) over the expert (s_i, a_i) pairs for ``steps``
   optimizer steps (``earlyexp.agents.sft`` on the shared training loop).
3. Evaluate the fine-tuned policy on the first ``eval_tasks`` tasks of test and ood.

Files under ``run_dir``: ``expert_sft.jsonl``, ``train_state/`` (the latest training
checkpoint; a killed cell resumes from it), ``checkpoint/`` (the final ``save_pretrained``
folder), ``sft_log.json``, ``trajectories_{test,ood}.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    LearnerConfig,
    eval_sampling,
    evaluate_policy,
    prompt_config,
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
    path = require_local(model, "il")
    with torch_threads(config, model):
        return _il(env_id, seed, config, Path(run_dir), device, model, path, kwargs.get("pool"))


def _il(
    env_id: str, seed: int, config: ILConfig, run_dir: Path, device: str, model: str,
    path: Path, pool: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    from earlyexp.agents.backends.hf import HFPolicy, load_model
    from earlyexp.agents.data import (
        EXPERT_FILE,
        collect_expert,
        expert_records,
        read_chat_jsonl,
        write_chat_jsonl,
    )
    from earlyexp.agents.sft import SFTConfig, save_checkpoint, sft_on_conversations

    prompt = prompt_config(config, model)
    demos = collect_expert(env_id, config.train_episodes, seed, prompt, config.batch_size, pool)
    data = write_chat_jsonl(expert_records(demos, prompt.window), run_dir / EXPERT_FILE)
    net, tokenizer = load_model(path, device, training=True)
    sft = SFTConfig(steps=config.steps, batch_size=config.sft_batch_size, lr=config.lr, seed=seed)
    net, log = sft_on_conversations(net, tokenizer, read_chat_jsonl(data), sft)
    (run_dir / "sft_log.json").write_text(json.dumps(log, indent=1))
    save_checkpoint(net, tokenizer, run_dir / "checkpoint")
    policy = HFPolicy(net, tokenizer, batch_size=config.batch_size)
    return evaluate_policy(
        policy, env_id, config, seed, run_dir, prompt, eval_sampling(config, seed), pool
    )
