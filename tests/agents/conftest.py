"""Shared fixtures: the ``test`` tiny checkpoint, built once per session in a temp cache."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

FL = "EarlyExp/FrozenLake-v0"
SOKO = "EarlyExp/Sokoban-v0"


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    """Path of the ``test`` preset (2 layers, hidden 64), cached under a session temp dir."""
    from earlyexp.agents.backends.tiny import tiny_checkpoint

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EARLYEXP_CACHE", str(tmp_path_factory.mktemp("cache")))
        path = tiny_checkpoint("test")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and CI cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def policy(tiny_path):
    """A fresh HF policy over the tiny checkpoint."""
    from earlyexp.agents.backends.hf import HFPolicy

    return HFPolicy.from_pretrained(tiny_path, "cpu", batch_size=16)
