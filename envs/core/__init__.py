"""The env contract shared by every earlyexp environment (README: The environment contract)."""

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec, ParsedAction, ParseError
from earlyexp.envs.core.base import Evaluation, Outcome, Snapshot, TextEnv, text_env
from earlyexp.envs.core.panels import panel_hash, task_rng, task_seed
from earlyexp.envs.core.shared_text import SharedTexts  # registers AnyText's shared memory
from earlyexp.envs.core.spaces import AnyText
from earlyexp.envs.core.types import INFO_KEYS, SPLITS, RubricItem, StepInfo

__all__ = [
    "INFO_KEYS",
    "SPLITS",
    "ActionGrammar",
    "ActionSpec",
    "AnyText",
    "Evaluation",
    "Outcome",
    "ParseError",
    "ParsedAction",
    "RubricItem",
    "SharedTexts",
    "Snapshot",
    "StepInfo",
    "TextEnv",
    "panel_hash",
    "task_rng",
    "task_seed",
    "text_env",
]
