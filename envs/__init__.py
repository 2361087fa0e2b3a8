"""earlyexp environments. Importing this module registers every ``EarlyExp/...`` id.

``gym.make("EarlyExp/FrozenLake-v0")`` works after ``import earlyexp.envs``;
``gym.make("earlyexp.envs:EarlyExp/FrozenLake-v0")`` works with no import at all.
"""

from earlyexp.envs.registry import ENTRIES, EnvEntry, entry, env_ids, register_all
from earlyexp.envs.vector import PanelCursor, PanelEpisode, collect_panel, make_panel_vec

register_all()

__all__ = [
    "ENTRIES",
    "EnvEntry",
    "PanelCursor",
    "PanelEpisode",
    "collect_panel",
    "entry",
    "env_ids",
    "make_panel_vec",
    "register_all",
]
