"""earlyexp: text environments, agents that learn from early experience, and a harness.

``import earlyexp.envs`` registers every environment id with Gymnasium.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
