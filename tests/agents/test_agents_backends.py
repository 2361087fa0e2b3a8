"""Each backend end to end on the tiny checkpoint; the HTTP one against our real server."""

from __future__ import annotations

import socket

import gymnasium as gym
import pytest
import torch

from earlyexp.agents.policy import Prompt, SamplingParams
from earlyexp.agents.prompting import parse_action

FL = "EarlyExp/FrozenLake-v0"

MESSAGES = [
    {"role": "system", "content": "Task: move the agent to the goal."},
    {"role": "user", "content": "Observation:\nDDAB\nAvailable actions: Up, Down, Left, Right"},
]
SHORT = [MESSAGES[0], {"role": "user", "content": "Observation:\nAB"}]


def test_tiny_checkpoint_loads_like_any_checkpoint(tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.vocab_size == len(tok) <= 1024
    text = "Observation:\nThe agent moved Up.\nEDaBDE\n<action>Left</action> é 中 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: any text round-trips
    assert tok.convert_ids_to_tokens(tok("DDAD", add_special_tokens=False)["input_ids"]) == list(
        "DDAD"
    )
    assert len(tok("<action>", add_special_tokens=False)["input_ids"]) == 1
    assert tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False).endswith(
        "<|assistant|>\n"
    )


def test_tiny_checkpoint_is_cached_and_atomic(tiny_path):
    from earlyexp.agents.backends.tiny import PRESETS, checkpoint_dir

    assert tiny_path.name.startswith("test-")
    assert not [p for p in tiny_path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    assert checkpoint_dir(PRESETS["test"], "test").name == tiny_path.name


def test_tokenizer_corpus_reads_the_train_stream_only(monkeypatch):
    from earlyexp.agents.backends.tiny import corpus
    from earlyexp.envs.core.base import TextEnv

    splits = []
    reset = TextEnv.reset

    def spy(self, *, seed=None, options=None):
        splits.append((options or {}).get("split", "train"))
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(TextEnv, "reset", spy)
    texts = list(corpus(["EarlyExp/FrozenLake-v0", "EarlyExp/Sokoban-v0"], 3, 0))
    assert len(texts) > 6 and splits == ["train"] * 6  # never a test or ood panel task


def test_hf_backend_returns_sampled_ids_and_their_logprobs(policy):
    sampling = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3)
    outs = policy.complete([Prompt(MESSAGES), Prompt(SHORT)], sampling)
    again = policy.complete([Prompt(MESSAGES), Prompt(SHORT)], sampling)
    assert [c.token_ids for c in outs] == [c.token_ids for c in again]  # seeded
    for prompt, c in zip([MESSAGES, SHORT], outs, strict=True):
        assert 1 <= len(c.token_ids) == len(c.logprobs) <= 12
        assert c.text == policy.tokenizer.decode(c.token_ids, skip_special_tokens=True)
        # the log-probs are the model's (temperature 1) for exactly these ids
        ctx = policy.context_ids(Prompt(prompt))
        ids = torch.tensor([ctx + c.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(policy.model(ids).logits[0].float(), -1)  # (T, V)
        want = [logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(c.token_ids)]
        assert c.logprobs == pytest.approx(want, abs=1e-4)


def test_hf_backend_batched_greedy_equals_one_at_a_time(policy):
    """Left padding and the KV cache do not change what each prompt generates."""
    greedy = SamplingParams(max_new_tokens=10, temperature=0.0, stop=())
    together = policy.complete([Prompt(MESSAGES), Prompt(SHORT)], greedy)
    alone = [policy.complete([Prompt(m)], greedy)[0] for m in (MESSAGES, SHORT)]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]


def test_hf_backend_stops_on_stop_strings(policy):
    close = policy.tokenizer.convert_tokens_to_ids("</action>")
    with torch.no_grad():
        policy.model.lm_head.weight.data[close] += 50.0  # make the stop token certain
    (c,) = policy.complete([Prompt(MESSAGES)], SamplingParams(max_new_tokens=8, seed=0))
    assert c.token_ids == [close] and c.finish_reason == "stop"


def test_lora_adapter_loads_through_peft(tiny_path, tmp_path):
    pytest.importorskip("peft")
    from earlyexp.agents.backends.hf import HFPolicy, load_model
    from earlyexp.agents.sft import add_lora

    model, _ = load_model(tiny_path)
    add_lora(model, r=4, seed=0).save_pretrained(tmp_path / "adapter")
    pol = HFPolicy.from_pretrained(tiny_path, "cpu", lora=tmp_path / "adapter")
    (c,) = pol.complete([Prompt(MESSAGES)], SamplingParams(max_new_tokens=4, seed=0))
    assert len(c.token_ids) >= 1 and type(pol.model).__name__.startswith("Peft")


def test_expert_and_random_policies_share_the_protocol():
    from earlyexp.agents.backends.scripted import ExpertPolicy, RandomPolicy

    env = gym.make(FL)
    _, info = env.reset(seed=0, options={"split": "test", "task": 0})
    expert = env.unwrapped.expert_action()
    prompt = Prompt(MESSAGES, available_actions=info["available_actions"], expert_action=expert)
    (e,) = ExpertPolicy().complete([prompt], SamplingParams())
    assert parse_action(e.text) == env.unwrapped.expert_action()
    picks = {
        parse_action(c.text) for c in RandomPolicy(0).complete([prompt] * 40, SamplingParams())
    }
    assert picks == set(info["available_actions"])
    with pytest.raises(ValueError, match="Prompt.expert_action"):
        ExpertPolicy().complete([Prompt(MESSAGES)], SamplingParams())


def test_http_backend_against_our_local_server(policy):
    from earlyexp.agents.backends.openai_http import OpenAIPolicy
    from earlyexp.agents.serve import ChatServer

    greedy = SamplingParams(max_new_tokens=10, temperature=0.0)
    direct = policy.complete([Prompt(MESSAGES), Prompt(SHORT)], greedy)
    with ChatServer(policy, name="tiny-test") as server:
        assert server.url.startswith("http://127.0.0.1:")
        client = OpenAIPolicy(server.url, "tiny-test", max_concurrency=2, timeout=30)
        try:
            over_http = client.complete([Prompt(MESSAGES), Prompt(SHORT)] * 2, greedy)
        finally:
            client.close()
    assert [c.text for c in over_http] == [c.text for c in direct] * 2
    for got, want in zip(over_http[:2], direct, strict=True):
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-5)
    assert [c.token_ids for c in over_http[:2]] == [c.token_ids for c in direct]


def test_http_backend_reports_bad_requests_and_dead_servers(policy):
    from earlyexp.agents.backends.openai_http import OpenAIPolicy, ServerError
    from earlyexp.agents.serve import ChatServer

    with ChatServer(policy) as server:
        client = OpenAIPolicy(server.url, "x", retries=0)
        with pytest.raises(ServerError, match="400"):
            client.complete([Prompt([])], SamplingParams())  # empty messages: not retried
        client.close()
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "x", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(ServerError, match="after 3 attempts"):
        client.complete([Prompt(MESSAGES)], SamplingParams())
    client.close()


def small_pretraining(steps: int = 6):
    from earlyexp.agents.backends.pretrain import PretrainSpec, PretrainStage

    stages = (PretrainStage(steps=steps, repeat_every=2, repeat_len=(4, 8), repeat_gap=(0, 4)),)
    return PretrainSpec(stages=stages, envs=("EarlyExp/ToolCall-v0",), episodes=2)


def test_pretraining_corpus_reads_the_train_stream_only(monkeypatch, tiny_path):
    import numpy as np
    from transformers import AutoTokenizer

    from earlyexp.agents.backends.pretrain import ROW, packed_rows
    from earlyexp.envs.core.base import TextEnv

    splits = []
    reset = TextEnv.reset

    def spy(self, *, seed=None, options=None):
        splits.append(((options or {}).get("split", "train"), seed))
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(TextEnv, "reset", spy)
    rows = packed_rows(AutoTokenizer.from_pretrained(tiny_path), small_pretraining(),
                       np.random.default_rng(0))  # fmt: skip
    assert splits == [("train", 10_000), ("train", 10_001)]  # never a test or ood panel task
    assert rows.ndim == 2 and rows.shape[1] == ROW and len(rows) >= 1


def test_repeat_batch_repeats_and_labels_the_repeat_only():
    from earlyexp.agents.backends.pretrain import repeat_batch

    rows = torch.arange(3000).reshape(3, 1000)
    x, labels = repeat_batch(rows, torch.Generator().manual_seed(0), length=5, gap=3, n=4)
    assert x.shape == (4, 13)
    assert torch.equal(x[:, 8:], x[:, :5])  # the repeat
    assert (labels[:, :9] == -100).all() and torch.equal(labels[:, 9:], x[:, 9:])
    for r in range(4):  # every token of a row comes from one corpus row
        assert len({int(t) // 1000 for t in x[r]}) == 1


def test_pretraining_stages_are_checked():
    from earlyexp.agents.backends.pretrain import PretrainStage

    with pytest.raises(ValueError, match="repeat_gap"):
        PretrainStage(steps=5, repeat_gap=(4, 4))
    with pytest.raises(ValueError, match="steps >= 1"):
        PretrainStage(steps=0)


def test_pretrained_preset_trains_its_weights_and_has_its_own_cache_key(tmp_path, tiny_path):
    from dataclasses import replace

    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from earlyexp.agents.backends.pretrain import packed_rows
    from earlyexp.agents.backends.tiny import PRESETS, build_tiny, checkpoint_dir
    from earlyexp.agents.train.losses import masked_lm_loss

    spec = replace(PRESETS["test"], pretrain=small_pretraining(steps=30))
    assert checkpoint_dir(spec, "x") != checkpoint_dir(PRESETS["test"], "x")
    build_tiny(spec, tmp_path)  # the test preset (tiny_path), then 30 pretraining steps
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.get_vocab() == AutoTokenizer.from_pretrained(tiny_path).get_vocab()
    rows = packed_rows(tok, spec.pretrain, np.random.default_rng(1))[:2]
    with torch.no_grad():
        fresh, trained = (
            masked_lm_loss(AutoModelForCausalLM.from_pretrained(p), rows, rows).item()
            for p in (tiny_path, tmp_path)
        )
    assert trained < fresh - 0.5  # the weights moved, down the loss


def ngrams(ids, n):
    return [tuple(ids[j : j + n]) for j in range(len(ids) - n + 1)]


def test_no_repeat_ngram_keeps_a_completion_from_repeating_itself(policy):
    greedy = SamplingParams(max_new_tokens=24, temperature=0.0, stop=())
    guarded = SamplingParams(max_new_tokens=24, temperature=0.0, stop=(), no_repeat_ngram=2)
    prompt = Prompt(messages=MESSAGES)
    loop = policy.complete([prompt], greedy)[0].token_ids
    ids = policy.complete([prompt], guarded)[0].token_ids
    assert len(set(ngrams(loop, 2))) < len(ngrams(loop, 2))  # the random model loops ...
    assert len(set(ngrams(ids, 2))) == len(ngrams(ids, 2))  # ... the guard stops it
    k = next(j for j, (a, b) in enumerate(zip(loop, ids, strict=False)) if a != b)
    assert ids[:k] == loop[:k]  # until a repeat, the same greedy tokens
    with pytest.raises(ValueError, match="no_repeat_ngram 0 .off. or >= 2"):
        SamplingParams(no_repeat_ngram=1)


def test_http_backend_refuses_no_repeat_ngram():
    from earlyexp.agents.backends.openai_http import OpenAIPolicy

    with pytest.raises(ValueError, match="no_repeat_ngram 0 for an HTTP model"):
        OpenAIPolicy("http://127.0.0.1:9/v1", "m")._body(
            Prompt(messages=MESSAGES), SamplingParams(no_repeat_ngram=3), 0
        )


def test_no_repeats_bans_exactly_the_tokens_that_close_a_repeat():
    from earlyexp.agents.backends.hf import _no_repeats

    logits = torch.zeros(3, 10)
    rows = [[1, 2, 3, 1, 2], [4, 5, 6], []]  # the prompt is not in a row: copying stays free
    out = _no_repeats(logits, rows, 3)
    assert torch.isinf(out[0]).nonzero()[:, 0].tolist() == [3]  # 1 2 -> 3 would repeat "1 2 3"
    assert not torch.isinf(out[1:]).any() and not torch.isinf(logits).any()
    assert torch.isinf(_no_repeats(logits, [[7, 7]], 2)[0]).nonzero()[:, 0].tolist() == [7]
