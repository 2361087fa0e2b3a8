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


def test_the_bench_report_shows_il_sft_curves(tiny_path, tmp_path, monkeypatch):
    from earlyexp.harness.bench import BenchConfig, run_bench

    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))
    out = tmp_path / "run"
    sets = ["il.steps=4", "il.eval_every=2", "il.eval_subset=2"]
    run_bench(BenchConfig(profile="smoke", envs=[FL], methods=["il"], set=sets,
                          model="tiny:test", device="cpu", out=str(out)))  # fmt: skip
    cell = "il__EarlyExp_FrozenLake-v0__s0"
    curve = json.loads((out / "cells" / cell / SFT_CURVE).read_text())
    assert [e["iteration"] for e in curve["eval"]] == [2, 4]
    table = (out / "table.md").read_text()
    assert "## SFT learning curves" in table
    row = next(
        line for line in table.splitlines() if line.startswith("| FrozenLake-v0 | il | 0 | 2 |")
    )
    first = next((e for e in curve["eval"] if e["success"] > 0), None)
    assert (f"| {first['iteration']} (" in row) if first else ("| none |" in row)
    assert (out / "plots" / "sft_curves.png").stat().st_size > 1000
    kept = json.loads((out / "results.json").read_text())["cell_files"]
    assert kept[cell]["sft_curve"] == curve
