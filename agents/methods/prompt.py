"""``prompt``: the LLM policy zero-shot, the prompt alone (no training)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    LLMConfig,
    close_policy,
    eval_sampling,
    evaluate_policy,
    load_policy,
    prompt_config,
    torch_threads,
)
from earlyexp.agents.records import EpisodeRecord


@dataclass
class ZeroShotConfig(LLMConfig):
    """``prompt``: evaluation settings only."""


@register("prompt", config=ZeroShotConfig, kind="llm")
def run(
    *, env_id: str, seed: int, config: ZeroShotConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """The LLM policy zero-shot: the prompt alone, no training."""
    with torch_threads(config, model):
        policy = load_policy(model, device, config.batch_size)
        try:
            return evaluate_policy(
                policy, env_id, config, seed, Path(run_dir), prompt_config(config, model),
                eval_sampling(config, seed), kwargs.get("pool"),
            )  # fmt: skip
        finally:
            close_policy(policy)
