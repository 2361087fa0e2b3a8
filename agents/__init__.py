"""LLM agents: one policy protocol, backends, a batched rollout engine and learning methods.

Importing this package stays light (no torch or transformers); backends import them when
built. See :mod:`earlyexp.agents.policy` for the protocol, :mod:`earlyexp.agents.rollout`
for the engine and :mod:`earlyexp.agents.methods` for the methods ``earlyexp bench`` runs.
"""

from earlyexp.agents.policy import Completion, Policy, Prompt, SamplingParams
from earlyexp.agents.prompting import PromptConfig, format_action, parse_action

__all__ = [
    "Completion",
    "Policy",
    "Prompt",
    "PromptConfig",
    "SamplingParams",
    "format_action",
    "parse_action",
]
