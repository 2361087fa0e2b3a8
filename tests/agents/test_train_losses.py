"""Each loss against a small example computed by hand (plain math, not the function itself)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from earlyexp.agents.train.batch import TrainBatch
from earlyexp.agents.train.losses import (
    IGNORE,
    clipped_pg,
    group_advantages,
    kl_k3,
    masked_lm_loss,
    policy_loss,
    raft_loss,
    reference_logprobs,
    sft_loss,
    shaped_offpolicy,
    token_logprobs,
    weighted_nll,
)

# P[i][j] = pi(next token j | previous token i): a bigram "model" whose logits are log P,
# so every log-prob below is a plain math.log of an entry.
P = [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]]
L = math.log


class Bigram(torch.nn.Module):
    """logits(position t) = log P[ids[t]]: identity embedding, lm_head weight log P^T."""

    def __init__(self, model_type: str) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type=model_type)
        embed = torch.nn.Embedding(3, 3)
        embed.weight.data = torch.eye(3)
        self.base_model = Inner(embed)
        self.lm_head = torch.nn.Linear(3, 3, bias=False)
        self.lm_head.weight.data = torch.tensor(P).log().T.contiguous()

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, labels=None):
        logits = self.lm_head(self.base_model(input_ids=input_ids).last_hidden_state)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, 3), labels[:, 1:].reshape(-1)
            )
        return SimpleNamespace(logits=logits, loss=loss)


class Inner(torch.nn.Module):
    def __init__(self, embed):
        super().__init__()
        self.embed = embed

    def forward(self, input_ids):
        return SimpleNamespace(last_hidden_state=self.embed(input_ids))


IDS = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])  # row 1 ends with a pad (id 0)
LABELS = torch.tensor([[IGNORE, IGNORE, 2, 0], [IGNORE, 2, 1, IGNORE]])
# log pi of the labelled tokens, column t scoring token t + 1
EXPECTED = [[0.0, L(0.7), L(1 / 3)], [L(1 / 3), L(1 / 3), 0.0]]


@pytest.mark.parametrize("model_type", ["llama", "not-listed"])
def test_token_logprobs_and_masked_nll_by_hand(model_type):
    model = Bigram(model_type)
    lp = token_logprobs(model, IDS, LABELS)
    assert lp.shape == (2, 3)
    assert torch.allclose(lp, torch.tensor(EXPECTED), atol=1e-6)
    mask = LABELS != IGNORE
    assert torch.allclose(token_logprobs(model, IDS, mask), lp)
    nll = -(L(0.7) + L(1 / 3) + L(1 / 3) + L(1 / 3)) / 4
    assert masked_lm_loss(model, IDS, LABELS).item() == pytest.approx(nll, rel=1e-6)
    batch = TrainBatch.from_examples([([0, 1, 2, 0], [0, 0, 1, 1]), ([2, 2, 1], [0, 1, 1])], 0)
    assert sft_loss(model, batch)[0].item() == pytest.approx(nll, rel=1e-6)
    aligned = reference_logprobs(model, batch)  # (B, T): column t scores token t
    assert aligned.shape == (2, 4) and not aligned.requires_grad
    assert torch.allclose(aligned[:, 1:], torch.tensor(EXPECTED), atol=1e-6)
    assert aligned[:, 0].tolist() == [0.0, 0.0]


def test_fast_token_logprobs_equal_the_full_log_softmax(tiny_path):
    from earlyexp.agents.backends.hf import load_model

    model, _ = load_model(tiny_path)
    V = model.config.vocab_size
    ids = torch.randint(5, V, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, 5:9], mask[1, 2:], mask[2, 11] = True, True, True
    fast = token_logprobs(model, ids, mask)
    full = model(input_ids=ids).logits.log_softmax(-1)[:, :-1]  # (B, T-1, V)
    full = full.gather(-1, ids[:, 1:, None])[..., 0].where(mask[:, 1:], 0.0)
    assert torch.allclose(fast, full, atol=1e-5)


def test_weighted_nll_by_hand_and_a_zero_weight_row_counts_for_nothing():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0], [-4.0, 0.0]])
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    loss = weighted_nll(logp, mask, torch.tensor([2.0, 0.0, 1.0]))
    assert loss.item() == pytest.approx((2 * (1 + 2) + 1 * 4) / 3)
    without = weighted_nll(logp[[0, 2]], mask[[0, 2]], torch.tensor([2.0, 1.0]))
    assert loss.item() == without.item()
    assert weighted_nll(logp, mask, torch.zeros(3)).item() == 0.0
    ones = weighted_nll(logp, mask, torch.ones(3))
    assert ones.item() == pytest.approx((1 + 2 + 0.5 + 9 + 4) / 5)


def test_raft_loss_trains_only_positive_weight_rows():
    model = Bigram("llama")
    batch = TrainBatch.from_examples(
        [([0, 1, 2, 0], [0, 0, 1, 1]), ([2, 2, 1], [0, 1, 1])], 0, weights=[3.0, 0.0]
    )
    loss, _ = raft_loss(model, batch)
    assert loss.item() == pytest.approx(-3 * (L(0.7) + L(1 / 3)) / 2, rel=1e-6)


def test_group_advantages_by_hand():
    A = group_advantages([1.0, 0.0, 0.0, 0.5, 0.5, 3.0], ["a", "a", "a", "b", "b", "c"])
    # group a: mean 1/3, unbiased std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = 1/sqrt(3)
    assert A[:3] == pytest.approx(
        [2 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)], rel=1e-5
    )
    assert A[3:] == [0.0, 0.0, 0.0]  # equal rewards, and a group of one
    assert group_advantages([0.1, 0.1, 0.1], [0, 0, 0]) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="one group id per reward"):
        group_advantages([1.0, 0.0], [0])


def test_clipped_pg_with_clip_higher_by_hand():
    rho = torch.tensor([[1.5, 0.5, 1.0], [1.1, 0.7, 1.0]])
    old = torch.tensor([[0.1, -1.0, 0.0], [-0.3, -2.0, 0.0]])
    logp = (old + rho.log()).requires_grad_()
    logp.data[0, 2] = 3.0  # a masked position: must not count
    mask = torch.tensor([[True, True, False], [True, True, False]])
    loss, metrics = clipped_pg(logp, old, torch.tensor([1.0, -2.0]), mask, 0.2, 0.28)
    # A = +1: min(1.5, 1.28) = 1.28 (clipped), min(0.5, 0.8) = 0.5
    # A = -2: min(-2.2, -2.2) = -2.2, min(-1.4, -1.6) = -1.6 (clipped)
    assert loss.item() == pytest.approx((-1.28 - 0.5 + 2.2 + 1.6) / 4, rel=1e-6)
    assert metrics["clip_frac"] == pytest.approx(0.5)
    loss.backward()
    # d/dlogp of -rho A / 4 where unclipped; 0 where the clip is active or masked
    expected = torch.tensor([[0.0, -0.5 / 4, 0.0], [2.2 / 4, 0.0, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_kl_k3_by_hand():
    p = torch.tensor([[-1.0, -2.0, -0.5, -7.0]])
    d = torch.tensor([[0.0, math.log(2), -math.log(2), 5.0]])  # q - p
    mask = torch.tensor([[True, True, True, False]])
    # (0) + (2 - log 2 - 1) + (1/2 + log 2 - 1) = 1/2 over 3 tokens
    assert kl_k3(p, p + d, mask).item() == pytest.approx(1 / 6, rel=1e-6)


def test_shaped_offpolicy_by_hand_and_unclipped():
    old = torch.tensor([[-1.0, -1.0]])
    logp = (old + torch.tensor([[1.0, 3.0]]).log()).requires_grad_()  # rho = 1, 3
    mask = torch.ones_like(old, dtype=torch.bool)
    A = torch.tensor([2.0])
    loss = shaped_offpolicy(logp, old, A, mask, gamma=1.0)
    assert loss.item() == pytest.approx(-2 * (1 / 2 + 3 / 4) / 2, rel=1e-6)
    half = shaped_offpolicy(logp, old, A, mask, gamma=0.5)
    assert half.item() == pytest.approx(-2 * (1 / 1.5 + 3 / 3.5) / 2, rel=1e-6)
    loss.backward()
    # d/dlogp of -A rho / (rho + g) = -A g rho / (rho + g)^2, over 2 tokens
    expected = [-2 * 1 / 4 / 2, -2 * 3 / 16 / 2]
    assert logp.grad[0].tolist() == pytest.approx(expected, rel=1e-6)
    far = (old + torch.tensor([[50.0, 50.0]]).log()).requires_grad_()
    shaped_offpolicy(far, old, A, mask).backward()
    assert (far.grad != 0).all()  # no clip: a ratio far from 1 keeps a gradient
    with pytest.raises(ValueError, match="gamma > 0"):
        shaped_offpolicy(logp, old, A, mask, gamma=0.0)


def test_policy_loss_composes_clip_shaped_weight_and_kl_by_hand():
    model = Bigram("llama")
    batch = TrainBatch.from_examples([([0, 1, 2], [0, 1, 1]), ([2, 2, 1], [0, 1, 1])], 0)
    logp = [[L(0.25), L(0.7)], [L(1 / 3), L(1 / 3)]]  # row 0: 0 -> 1 -> 2, row 1: 2 -> 2 -> 1
    rho = [[1.5, 1.0], [3.0, 1.0]]
    old = [
        [0.0] + [lp - L(r) for lp, r in zip(a, b, strict=True)]
        for a, b in zip(logp, rho, strict=True)
    ]
    d = [[0.0, math.log(2)], [-math.log(2), 0.0]]  # q - p
    ref = [
        [0.0] + [lp + x for lp, x in zip(a, b, strict=True)] for a, b in zip(logp, d, strict=True)
    ]
    batch.old_logprobs, batch.ref_logprobs = torch.tensor(old), torch.tensor(ref)
    batch.advantages, batch.off_policy = torch.tensor([1.0, -1.0]), torch.tensor([False, True])
    loss, metrics = policy_loss(model, batch, beta=0.1, gamma=1.0)
    # on-policy row, A = +1: -min(1.5, 1.28) = -1.28, -1.0; off-policy row, A = -1 (shaped):
    # 3/4 and 1/2; KL: 0 + (2 - log 2 - 1) + (1/2 + log 2 - 1) + 0 = 1/2 over 4 tokens
    pg = (-1.28 - 1.0 + 0.75 + 0.5) / 4
    assert loss.item() == pytest.approx(pg + 0.1 * 0.5 / 4, rel=1e-5)
    assert metrics["clip_frac"] == pytest.approx(0.5)
    assert metrics["kl"] == pytest.approx(0.125, rel=1e-5)
    batch.old_logprobs = batch.ref_logprobs = None  # on-policy, one update: rho = 1
    batch.off_policy = torch.tensor([False, False])
    loss, metrics = policy_loss(model, batch)
    assert loss.item() == pytest.approx(-(1 + 1 - 1 - 1) / 4) and "kl" not in metrics


def test_shared_prefix_len_by_hand():
    from earlyexp.agents.train.losses import shared_prefix_len

    assert shared_prefix_len(torch.tensor([[1, 2, 3, 4], [1, 2, 5, 4]])) == 2
    assert shared_prefix_len(torch.tensor([[7, 2], [1, 2]])) == 0
    assert shared_prefix_len(torch.tensor([[1, 2, 3], [1, 2, 3]])) == 2  # one token stays per row


def _qwen2_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    return Qwen2ForCausalLM(config)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_a_shared_prefix_runs_once_with_the_plain_forwards_loss_and_gradients(
    kind, tiny_path, monkeypatch
):
    """Rows sharing 40 tokens (a system prompt), then different lengths, right-padded."""
    from earlyexp.agents.backends.hf import load_model
    from earlyexp.agents.train import losses

    model = load_model(tiny_path)[0] if kind == "llama" else _qwen2_model()
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(5, 300, (40,), generator=g).tolist()
    examples = []
    for n in (9, 14, 5):
        tail = torch.randint(5, 300, (n,), generator=g).tolist()
        examples.append((prefix + tail, [0] * 40 + [0] * (n - 3) + [1] * 3))
    batch = TrainBatch.from_examples(examples, pad_id=0)
    assert losses._shares_prefix(model, batch.input_ids) == 40

    def run():
        model.zero_grad()
        loss = masked_lm_loss(model, batch.input_ids, batch.labels)
        loss.backward()
        lp = token_logprobs(model, batch.input_ids, batch.labels).detach()
        return loss.item(), lp, [p.grad.clone() for p in model.parameters()]

    shared = run()
    monkeypatch.setattr(losses, "SHARED_PREFIX_MIN", 10**9)
    assert losses._shares_prefix(model, batch.input_ids) == 0
    plain = run()
    assert shared[0] == pytest.approx(plain[0], abs=1e-5)
    assert torch.allclose(shared[1], plain[1], atol=1e-5)
    for a, b in zip(shared[2], plain[2], strict=True):
        assert torch.allclose(a, b, atol=1e-5)
