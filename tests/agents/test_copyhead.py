"""The copy-head model: a normalized mixture, the same numbers cached or not, trained or sampled."""

from __future__ import annotations

import pytest
import torch

from earlyexp.agents.policy import SamplingParams

IGNORE = -100


def small_copy_model(seed: int = 0, context: int = 1):
    from earlyexp.agents.backends.copyhead import CopyConfig, CopyForCausalLM

    config = CopyConfig(
        copy_context=context,
        vocab_size=50, hidden_size=16, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
        initializer_range=0.1, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    return CopyForCausalLM(config).eval()


def test_logits_are_a_normalized_log_mixture_that_starts_out_copying():
    model = small_copy_model()
    ids = torch.tensor([[5, 6, 7, 8, 9, 5, 6, 7, 8]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits  # (1, 9, V)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(1, 9), atol=1e-5)
    # identity q and k: a repeated token attends to its earlier occurrence and copies what followed
    assert logits[0, 5:8].argmax(-1).tolist() == [6, 7, 8]
    # position 0 has no earlier source: the vocabulary alone
    vocab = torch.log_softmax(model.lm_head(model.model(input_ids=ids).last_hidden_state), -1)
    assert torch.allclose(logits[0, 0], vocab[0, 0], atol=1e-5)


@pytest.mark.parametrize("context", [1, 3])
def test_cached_generation_scores_what_the_full_forward_scores(context):
    from earlyexp.agents.backends.hf import cache_argument, new_cache

    model = small_copy_model(context=context)
    ids = torch.randint(2, 50, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        cache = {cache_argument(model): new_cache(model)}
        attn = torch.ones(2, 8, dtype=torch.long)
        steps = [
            model(input_ids=ids[:, :8], attention_mask=attn, use_cache=True, **cache).logits[:, -1]
        ]
        for t in range(8, 12):
            attn = torch.cat([attn, torch.ones(2, 1, dtype=torch.long)], 1)
            out = model(
                input_ids=ids[:, t : t + 1], attention_mask=attn,
                position_ids=torch.full((2, 1), t), use_cache=True, logits_to_keep=1, **cache,
            )  # fmt: skip
            steps.append(out.logits[:, -1])
    for k, step in enumerate(steps):
        assert torch.allclose(step, full[:, 7 + k], atol=1e-5)


def test_a_longer_copy_context_matches_the_span_not_one_recurring_token():
    # "/" recurs; what follows it depends on the token before it: 9 / 5 ... 8 / 6 ... 9 /
    ids = torch.tensor([[9, 3, 5, 8, 3, 6, 2, 9, 3]])
    for context, expect in ((1, None), (2, 5)):
        model = small_copy_model(context=context)
        with torch.no_grad():
            model.copy_gate.bias.fill_(-20.0)  # the pointer alone
            p = model(input_ids=ids).logits[0, -1].exp()
        if expect is None:  # one token of context: the two continuations of 3 tie, roughly
            assert p[5] < 0.9 and p[6] > 0.05
        else:
            assert p[expect] > 0.9


def test_left_padding_is_never_copied():
    from earlyexp.agents.backends.hf import sample_batch

    model = small_copy_model()
    greedy = SamplingParams(max_new_tokens=4, temperature=0.0)
    alone = sample_batch(model, [[9, 9]], greedy, pad_id=0, end_ids={1})
    padded = sample_batch(model, [[5, 6, 7, 5, 6], [9, 9]], greedy, pad_id=0, end_ids={1})
    assert padded[1][0] == alone[0][0]
    assert padded[1][1] == pytest.approx(alone[0][1], abs=1e-4)


@pytest.mark.parametrize("context", [1, 3])
def test_the_labelled_path_equals_the_full_forward_and_trains_the_copy_head(context):
    from earlyexp.agents.train.losses import masked_lm_loss, token_logprobs

    model = small_copy_model(context=context)
    ids = torch.randint(2, 50, (3, 40), generator=torch.Generator().manual_seed(4))
    ids[:, :34] = ids[0, :34]  # a shared prefix (the decoder runs it once)
    labels = ids.clone()
    labels[:, :30] = IGNORE
    loss = masked_lm_loss(model, ids, labels)
    assert loss.item() == pytest.approx(model(input_ids=ids, labels=labels).loss.item(), abs=1e-5)
    loss.backward()
    assert model.copy_q.weight.grad.abs().sum() > 0 and model.copy_gate.bias.grad.abs() > 0
    with torch.no_grad():
        lp = token_logprobs(model, ids, labels)
        full = torch.log_softmax(model(input_ids=ids).logits, -1)[:, :-1]
    expect = full.gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(lp[:, 29:], expect[:, 29:], atol=1e-5)
    assert (lp[:, :29] == 0).all()


def test_the_copy_preset_saves_loads_and_has_its_own_cache_key(tmp_path, tiny_path):
    from dataclasses import replace

    from transformers import AutoModelForCausalLM

    from earlyexp.agents.backends.hf import load_model
    from earlyexp.agents.backends.tiny import PRESETS, build_tiny, checkpoint_dir

    assert PRESETS["copy"].copy_head and not PRESETS["tiny"].copy_head
    spec = replace(PRESETS["test"], copy_head=3)
    assert checkpoint_dir(spec, "x") != checkpoint_dir(PRESETS["test"], "x")
    build_tiny(spec, tmp_path)
    model, tokenizer = load_model(tmp_path)
    assert type(model).__name__ == "CopyForCausalLM" and model.config.copy_context == 3
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([tokenizer("Observation:\nDDAB", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, again(input_ids=ids).logits)
