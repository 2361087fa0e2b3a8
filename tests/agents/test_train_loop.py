"""The shared optimizer loop: it trains, it resumes a killed run exactly, it stops on NaN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from earlyexp.agents.train.batch import TrainBatch
from earlyexp.agents.train.loop import TrainConfig, Trainer, latest_checkpoint
from earlyexp.agents.train.losses import sft_loss

V = 64


def make_model(dropout: float = 0.1):
    """A 2-layer Llama with attention dropout, so a resume must restore the RNG stream too."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attention_dropout=dropout,
    )
    return LlamaForCausalLM(config)


def batch_at(k: int) -> TrainBatch:
    """Micro-batch ``k``: 4 random sequences, the second half of each trained."""
    g = torch.Generator().manual_seed(k)
    rows = []
    for _ in range(4):
        n = int(torch.randint(4, 12, (1,), generator=g))
        ids = torch.randint(1, V, (n,), generator=g).tolist()
        rows.append((ids, [0] * (n // 2) + [1] * (n - n // 2)))
    return TrainBatch.from_examples(rows, pad_id=0)


RESUMED = TrainConfig(steps=10, lr=1e-2, log_every=1, checkpoint_every=3, grad_accum=2)


def train(state_dir, kill_at=None):
    """Train RESUMED from scratch (or from ``state_dir``); SIGKILL itself at micro-batch kill_at."""
    torch.set_num_threads(1)

    def at(k):
        if k == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch_at(k)

    trainer = Trainer(make_model(), sft_loss, RESUMED, state_dir)
    start = trainer.done
    log = trainer.fit(at)
    return trainer.model, log, start


def weights(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_loss_goes_down_and_every_trainable_parameter_changes():
    model = make_model()
    before = weights(model)
    fixed = batch_at(0)
    config = TrainConfig(steps=30, lr=1e-2, warmup_ratio=0.0, log_every=5)
    log = Trainer(model, sft_loss, config).fit(lambda k: fixed)
    assert [e["step"] for e in log] == [0, 5, 10, 15, 20, 25, 29]
    assert set(log[0]) == {"step", "loss", "grad_norm", "lr"}
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert [n for n, p in model.state_dict().items() if torch.equal(p, before[n])] == []
    assert not model.training


def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    state = tmp_path / "state"
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); from test_train_loop import train; "
        "train(sys.argv[1], kill_at=int(sys.argv[2]))"
    )
    # micro-batch 15 is the second half of step 7: killed mid-step, after the step-6 checkpoint
    job = subprocess.run(
        [sys.executable, "-c", code, str(state), "15"], capture_output=True, timeout=300
    )
    assert job.returncode == -signal.SIGKILL, job.stderr.decode()[-2000:]
    assert [p.name for p in state.iterdir()] == ["step-00000006"]
    resumed, log, start = train(state)
    assert start == 6
    reference, ref_log, _ = train(None)
    assert log == ref_log
    ref = weights(reference)
    assert [n for n, p in resumed.state_dict().items() if not torch.equal(p, ref[n])] == []
    assert latest_checkpoint(state).name == "step-00000010"  # the last step is saved too
    again = Trainer(make_model(), sft_loss, RESUMED, state)
    assert again.done == 10 and again.fit(batch_at) == ref_log  # nothing left to do
    with pytest.raises(ValueError, match="Expect the config of the run checkpointed"):
        Trainer(make_model(), sft_loss, TrainConfig(steps=12, checkpoint_every=3), state)


def test_stepping_one_update_at_a_time_equals_fit():
    calls = []

    def recorded(k):
        calls.append(k)
        return batch_at(k)

    config = TrainConfig(steps=4, grad_accum=2, log_every=1)
    fitted = Trainer(make_model(), sft_loss, config)
    fitted.fit(recorded)
    assert calls == list(range(8))  # micro-batch k = step * grad_accum + j
    stepped = Trainer(make_model(), sft_loss, config)
    for step in range(4):
        stepped.step([batch_at(2 * step), batch_at(2 * step + 1)])
    a, b = weights(fitted.model), weights(stepped.model)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert stepped.log == fitted.log
    with pytest.raises(ValueError, match="Expect at most 4 optimizer steps"):
        stepped.step([batch_at(0)])


def test_grad_accum_averages_the_micro_batch_losses():
    config = dict(steps=2, warmup_ratio=0.0, grad_clip=1e9)
    one = Trainer(make_model(dropout=0.0), sft_loss, TrainConfig(**config))
    two = Trainer(make_model(dropout=0.0), sft_loss, TrainConfig(grad_accum=2, **config))
    one.model.eval()
    m1 = one.step([batch_at(0)])
    m2 = two.step([batch_at(0), batch_at(0)])
    assert m2["loss"] == pytest.approx(m1["loss"])
    for p, q in zip(one.params, two.params, strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    assert not one.model.training  # step() restores the mode it found


def test_a_nan_loss_stops_the_run_naming_the_step():
    calls = []

    def loss_fn(model, batch):
        loss, _ = sft_loss(model, batch)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 4 else loss), {"tokens": 7.0}

    trainer = Trainer(make_model(), loss_fn, TrainConfig(steps=10))
    with pytest.raises(FloatingPointError, match=r"at step 3 \(metrics \{'tokens': 7.0\}\)"):
        trainer.fit(batch_at)
    assert trainer.done == 3
    assert all(torch.isfinite(p).all() for p in trainer.params)  # no update from the NaN


def test_train_config_validates():
    with pytest.raises(ValueError, match="Expect grad_accum >= 1"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match="Expect checkpoint_every >= 0"):
        TrainConfig(checkpoint_every=-1)
    with pytest.raises(ValueError, match="Expect warmup_ratio"):
        TrainConfig(warmup_ratio=1.0)
