"""Map the design's folders onto the one import namespace ``earlyexp``.

``envs/`` installs as ``earlyexp.envs``, ``agents/`` as ``earlyexp.agents``, ``harness/`` as
``earlyexp.harness`` and ``assets/`` as ``earlyexp.assets`` (README: Layout).
Every sub-package found below those folders is mapped the same way, so new modules need no
edit here. All other metadata lives in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = ("envs", "agents", "harness", "assets")


def _packages() -> list[str]:
    names = ["earlyexp"]
    for folder in FOLDERS:
        names.append(f"earlyexp.{folder}")
        names += [f"earlyexp.{folder}.{sub}" for sub in find_packages(folder)]
    return names


setup(packages=_packages())
