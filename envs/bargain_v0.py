"""PettingZoo ``bargain_v0``: a buyer and a seller bargain over a WebShop product's price.

The PettingZoo way::

    from earlyexp.envs import bargain_v0

    env = bargain_v0.env()  # AEC, order enforced
    env.reset(seed=0, options={"split": "test", "task": 3})
    for agent in env.agent_iter():
        obs, reward, terminated, truncated, info = env.last()
        action = None if terminated or truncated else env.unwrapped.expert_action()
        env.step(action)

``raw_env()`` is the bare :class:`~earlyexp.envs.bargain.aec.BargainAECEnv` (its env card
describes the game); ``parallel_env()`` is PettingZoo's ``turn_based_aec_to_parallel`` of
``env()``: every live agent passes an action each step and only the one whose turn it is acts.
Needs the ``multiagent`` extra (``pip install 'earlyexp[multiagent]'``); importing this module
does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from earlyexp.envs.bargain.aec import BargainAECEnv


def _aec_class() -> type[BargainAECEnv]:
    try:
        import pettingzoo  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "earlyexp.envs.bargain_v0 needs PettingZoo: pip install 'earlyexp[multiagent]'"
        ) from err
    from earlyexp.envs.bargain.aec import BargainAECEnv

    return BargainAECEnv


def raw_env(**kwargs: Any) -> BargainAECEnv:
    """The AEC env without wrappers (``render_mode=None``, ``rounds=10``)."""
    return _aec_class()(**kwargs)


def env(**kwargs: Any) -> Any:
    """The AEC env in PettingZoo's ``OrderEnforcingWrapper`` (same arguments as ``raw_env``)."""
    _aec_class()
    from pettingzoo.utils import wrappers

    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))


def parallel_env(**kwargs: Any) -> Any:
    """The parallel API, by PettingZoo's ``turn_based_aec_to_parallel`` conversion of ``env()``."""
    _aec_class()
    from pettingzoo.utils.conversions import turn_based_aec_to_parallel

    return turn_based_aec_to_parallel(env(**kwargs))
