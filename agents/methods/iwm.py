"""``iwm``: Early Experience's implicit world modeling, then imitation learning.

Agent Learning via Early Experience (arXiv 2510.08558), section 4.2:

1. Expert episodes of the train stream, with a snapshot of every state s_i.
2. At each s_i, K alternatives a_i^j from the *initial* policy (refilled uniformly, all
   different from a_i), each executed from s_i: next states s_i^j
   (:mod:`earlyexp.agents.branching`). No reward is used.
3. Stage 1, one epoch of IWM: -log p(s_i^j | s_i, a_i^j) on ``iwm_sft.jsonl`` (the expert's
   own transitions included), next states as ``env.summarize`` texts under their own system
   prompt.
4. Stage 2, IL on ``expert_sft.jsonl`` for the rest of the budget: stage 1 + stage 2 steps
   = ``steps``, IL's budget (the paper's fair comparison). When one IWM epoch exceeds
   ``max_iwm_share`` of the budget, stage 1 stops there.
5. Evaluate exactly as IL.

Files under ``run_dir``: ``expert_sft.jsonl``, ``iwm_sft.jsonl``, ``branch_stats.json``,
``train_state_iwm/``, ``train_state_il/``, ``checkpoint/``, ``train_log.json``,
``trajectories_{test,ood}.jsonl``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import (
    EarlyExperienceConfig,
    early_experience,
    finish_learner,
    sft_stage,
    torch_threads,
)
from earlyexp.agents.models import require_local
from earlyexp.agents.records import EpisodeRecord


@dataclass
class IWMConfig(EarlyExperienceConfig):
    """``iwm``: branch K alternatives per expert state, one IWM epoch, then IL."""

    max_iwm_share: float = 0.5
    """Stage 1 takes at most this share of ``steps`` (one IWM epoch when it is shorter)."""


def iwm_steps(n_examples: int, config: IWMConfig) -> int:
    """Optimizer steps of stage 1: one epoch, capped at ``max_iwm_share`` of the budget."""
    epoch = math.ceil(n_examples / config.sft_batch_size)
    return max(0, min(epoch, int(config.max_iwm_share * config.steps), config.steps - 1))


@register("iwm", config=IWMConfig, kind="llm", trains=True)
def run(
    *, env_id: str, seed: int, config: IWMConfig, run_dir: Path, device: str, model: str,
    **kwargs: Any,
) -> list[EpisodeRecord]:  # fmt: skip
    """Early Experience IWM: predict the next states of branched actions, then IL."""
    from earlyexp.agents.data import write_chat_jsonl
    from earlyexp.agents.early_experience import IWM_FILE, iwm_records

    require_local(model, "iwm")
    run_dir, pool = Path(run_dir), kwargs.get("pool")
    with torch_threads(config, model):
        ee = early_experience(env_id, seed, config, run_dir, device, model, pool)
        branch_log = {**ee.stats.to_json(), "proposer": config.proposer or "initial"}
        (run_dir / "branch_stats.json").write_text(json.dumps(branch_log, indent=1))
        iwm = iwm_records(ee.states)
        write_chat_jsonl(iwm, run_dir / IWM_FILE)
        n1 = iwm_steps(len(iwm), config)
        log: dict[str, Any] = {"iwm_steps": n1, "il_steps": config.steps - n1}
        net = ee.net
        if n1:  # stage 1: one IWM epoch
            net, log["iwm"] = sft_stage(net, ee.tokenizer, [r["messages"] for r in iwm], n1,
                                        config, seed, run_dir / "train_state_iwm")  # fmt: skip
        net, log["il"] = sft_stage(net, ee.tokenizer, [r["messages"] for r in ee.expert],
                                   config.steps - n1, config, seed, run_dir / "train_state_il")  # fmt: skip
        return finish_learner(net, ee.tokenizer, log, env_id, config, seed, run_dir, ee.prompt,
                              pool)  # fmt: skip
