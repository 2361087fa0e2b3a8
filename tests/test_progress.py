"""Progress bars inside long work, first-use build notices, and quiet third-party warnings."""

from __future__ import annotations

import warnings

import pytest

from earlyexp import progress


def test_bars_and_notices_can_be_turned_off(monkeypatch, capsys):
    monkeypatch.setenv("EARLYEXP_PROGRESS", "0")
    assert not progress.enabled()
    assert progress.bar(range(3), desc="x").disable
    with progress.building("a thing", "a second"):
        pass
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("EARLYEXP_PROGRESS", "1")
    assert progress.enabled() and not progress.bar(range(3), desc="x").disable


def test_a_build_says_what_is_built_and_how_long_it_usually_takes(capsys):
    with progress.building("the tiny model 'tiny'", "20-40 s on 2 CPU cores"):
        pass
    err = capsys.readouterr().err
    assert "building the tiny model 'tiny' (usually 20-40 s on 2 CPU cores" in err
    assert "built the tiny model 'tiny' in" in err


def test_the_tiny_model_build_is_announced(monkeypatch, tmp_path, capsys):
    pytest.importorskip("transformers")
    from earlyexp.agents.backends import tiny

    monkeypatch.setenv("EARLYEXP_CACHE", str(tmp_path))
    monkeypatch.setattr(
        tiny, "build_tiny", lambda spec, path: (path / "config.json").write_text("{}")
    )
    tiny.tiny_checkpoint("test")
    assert "building the tiny model 'test'" in capsys.readouterr().err
    tiny.tiny_checkpoint("test")  # cached: nothing to announce
    assert "building" not in capsys.readouterr().err


def test_rollouts_count_finished_episodes_on_their_bar(monkeypatch):
    from earlyexp.agents import rollout
    from earlyexp.agents.backends.scripted import ExpertPolicy

    seen: dict = {}

    class Bar:
        def __init__(self, **kwargs):
            seen.update(kwargs, n=0)

        def update(self, n):
            seen["n"] += n

        def close(self):
            seen["closed"] = True

    monkeypatch.setattr(rollout, "bar", lambda **kw: Bar(**kw))
    engine = rollout.RolloutEngine(ExpertPolicy())
    specs = [rollout.EpisodeSpec("test", i, 0) for i in range(5)]
    engine.run("EarlyExp/FrozenLake-v0", specs, 2, progress="expert demonstrations")
    assert seen == {"total": 5, "desc": "expert demonstrations", "unit": "episode", "n": 5,
                    "closed": True}  # fmt: skip
    seen.clear()
    engine.run("EarlyExp/FrozenLake-v0", specs, 2)  # no progress asked: no bar
    assert seen == {}


def test_the_command_quiets_other_libraries_but_not_earlyexp():
    from earlyexp.harness.cli import quiet_third_party

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn_explicit("old api", UserWarning, "x.py", 1, module="transformers.models")
        warnings.warn_explicit("soon gone", FutureWarning, "x.py", 1, module="torch.nn")
        warnings.warn_explicit("\x1b[33mWARN: env checker", UserWarning, "x.py", 1, module="a")
        warnings.warn_explicit("cell unreadable", RuntimeWarning, "x.py", 1,
                               module="earlyexp.harness.bench")  # fmt: skip
    assert [str(w.message) for w in caught] == ["cell unreadable"]
