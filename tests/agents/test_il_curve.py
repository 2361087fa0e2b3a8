"""IL's learning curve (``il.eval_every``): the points it writes, and training left unchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from earlyexp.agents.methods import get_method, load_builtin_methods
from earlyexp.agents.methods.il import SFT_CURVE, ILConfig

FL = "EarlyExp/FrozenLake-v0"
load_builtin_methods()


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "checkpoint" / "model.safetensors"))


def test_il_eval_every_writes_the_sft_curve_and_trains_the_same(tiny_path, tmp_path, monkeypatch):
    from earlyexp.harness.profiles import get_profile

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    method = get_method("il")
    config = dataclasses.replace(
        get_profile("smoke").config_for(method, FL), steps=5, eval_every=2, eval_subset=3
    )
    kw = {"env_id": FL, "seed": 0, "device": "cpu", "model": "tiny:test"}
    method.run(run_dir=tmp_path / "curve", config=config, **kw)
    curve = json.loads((tmp_path / "curve" / SFT_CURVE).read_text())
    assert [p["iteration"] for p in curve["eval"]] == [2, 4, 5]  # every 2 steps and the last
    for point in curve["eval"]:
        assert point["samples"] == point["iteration"] * config.sft_batch_size
        assert 0.0 <= point["success"] <= 1.0 and 0.0 <= point["score"] <= 1.0
    walls = [p["wall_s"] for p in curve["eval"]]
    assert walls == sorted(walls)

    method.run(run_dir=tmp_path / "plain", config=dataclasses.replace(config, eval_every=0), **kw)
    assert not (tmp_path / "plain" / SFT_CURVE).exists()
    with_curve, plain = _weights(tmp_path / "curve"), _weights(tmp_path / "plain")
    assert with_curve.keys() == plain.keys()
    assert all(bool((with_curve[k] == plain[k]).all()) for k in plain)

    # a finished run resumed: no step left to train, the points stay as they were
    method.run(run_dir=tmp_path / "curve", config=config, **kw)
    assert json.loads((tmp_path / "curve" / SFT_CURVE).read_text())["eval"] == curve["eval"]


def test_trainer_fit_calls_on_step_after_every_step():
    import torch

    from earlyexp.agents.train.loop import TrainConfig, Trainer

    model = torch.nn.Linear(2, 1)
    seen = []

    def loss_fn(m, batch):
        return m(batch).pow(2).mean(), {}

    def on_step(done):
        seen.append((done, model.training))
        model.eval()  # the loop puts it back in training mode

    trainer = Trainer(model, loss_fn, TrainConfig(steps=3, lr=1e-2))
    trainer.fit(lambda k: torch.ones(4, 2), on_step)
    assert seen == [(1, True), (2, True), (3, True)]


def test_il_config_rejects_a_negative_eval_every():
    with pytest.raises(ValueError, match="eval_every >= 0"):
        ILConfig(eval_every=-1)
    with pytest.raises(ValueError, match="eval_subset >= 1"):
        ILConfig(eval_subset=0)
