"""LLM agents: one policy protocol, backends, a batched rollout engine and learning methods.

Importing this package stays light (no torch or transformers); backends import them when
built. See :mod:`earlyexp.agents.policy` for the protocol, :mod:`earlyexp.agents.rollout`
for the engine, :mod:`earlyexp.agents.evaluation` for :func:`evaluate` and
:mod:`earlyexp.agents.methods` for the methods ``earlyexp bench`` runs.
"""

from earlyexp.agents.evaluation import EvalResult, evaluate
from earlyexp.agents.policy import Completion, Policy, Prompt, SamplingParams
from earlyexp.agents.prompting import ContextBlock, PromptConfig, format_action, parse_action
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory

__all__ = [
    "Completion",
    "ContextBlock",
    "EpisodeRecord",
    "EpisodeSpec",
    "EvalResult",
    "Policy",
    "Prompt",
    "PromptConfig",
    "RolloutEngine",
    "SamplingParams",
    "Trajectory",
    "evaluate",
    "format_action",
    "parse_action",
]
