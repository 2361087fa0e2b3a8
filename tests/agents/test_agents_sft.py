"""Expert data export and SFT: loss goes down, every trainable parameter changes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from earlyexp.agents.chat import ChatEncoder
from earlyexp.agents.data import (
    EXPERT_FILE,
    collect_expert,
    expert_records,
    read_chat_jsonl,
    write_chat_jsonl,
)
from earlyexp.agents.prompting import PromptConfig, format_action
from earlyexp.agents.sft import (
    SFTConfig,
    add_lora,
    collate,
    encode_conversations,
    lr_factor,
    main,
    masked_lm_loss,
    save_checkpoint,
    train_sft,
)

FL = "EarlyExp/FrozenLake-v0"


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    trajs = collect_expert(FL, episodes=12, seed=0, prompt=PromptConfig(window=1))
    path = tmp_path_factory.mktemp("data") / EXPERT_FILE
    return write_chat_jsonl(expert_records(trajs, window=1), path), trajs


def test_expert_sft_jsonl_has_one_chat_per_expert_step(expert_file):
    path, trajs = expert_file
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == sum(len(t.steps) for t in trajs)
    for line in lines:
        roles = [m["role"] for m in line["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant" and roles[-2] == "user"
        assert len(roles) in (3, 5)  # window 1: at most one earlier turn
    first = trajs[0]
    assert lines[0]["messages"][-1]["content"] == format_action(first.steps[0].action)
    assert read_chat_jsonl(path) == [x["messages"] for x in lines]
    bad = path.parent / "bad.jsonl"
    bad.write_text('{"text": "no messages"}\n')
    with pytest.raises(ValueError, match="messages"):
        read_chat_jsonl(bad)


def test_prompt_variants_revise_the_system_prompt_and_keep_the_expert_replies(expert_file):
    from earlyexp.agents.methods.il import ILConfig, vary_prompts
    from earlyexp.agents.prompting import REPLY_FORMAT
    from earlyexp.agents.reflect import RETRY_INSTRUCTION, RULES_HEADING

    _, trajs = expert_file
    prompt = PromptConfig(window=1)
    assert vary_prompts(FL, trajs, ILConfig(prompt_variants=0.0), 0, prompt, None) == trajs
    varied = vary_prompts(FL, trajs, ILConfig(prompt_variants=1.0), 0, prompt, None)
    assert len(varied) == len(trajs)
    kinds = []
    for old, new in zip(trajs, varied, strict=True):
        assert new.system != old.system and new.system.startswith(old.system.strip())
        assert new.system.endswith(REPLY_FORMAT) and len(new.system) <= 2000 + len(REPLY_FORMAT) + 2
        assert [s.completion for s in new.steps] == [s.completion for s in old.steps]
        assert (new.split, new.task, new.seed) == (old.split, old.task, old.seed)
        retry, rules = RETRY_INSTRUCTION in new.system, RULES_HEADING in new.system
        kinds.append("retry" if retry and not rules else "rulebook" if rules else "?")
    assert kinds == [("rulebook", "retry")[n % 2] for n in range(len(trajs))]
    half = vary_prompts(FL, trajs, ILConfig(prompt_variants=0.5), 0, prompt, None)
    changed = sum(a.system != b.system for a, b in zip(trajs, half, strict=True))
    assert 0 < changed < len(trajs)
    assert half == vary_prompts(FL, trajs, ILConfig(prompt_variants=0.5), 0, prompt, None)
    records = expert_records(half, window=1)  # the variant is what SFT trains on
    assert {r["messages"][0]["content"] for r in records} == {t.system for t in half}
    with pytest.raises(ValueError, match="prompt_variants"):
        ILConfig(prompt_variants=1.5)


def _examples(tiny_path, path):
    from earlyexp.agents.backends.hf import load_model

    model, tok = load_model(tiny_path)
    ex = encode_conversations(ChatEncoder(tok), read_chat_jsonl(path), "last", 512)
    return model, tok, ex


def test_sft_loss_goes_down_and_every_parameter_changes(tiny_path, expert_file, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok, ex = _examples(tiny_path, expert_file[0])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log = train_sft(
        model, ex, tok.pad_token_id, SFTConfig(steps=30, batch_size=8, lr=3e-3, log_every=5)
    )
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
    out = save_checkpoint(model, tok, tmp_path / "ckpt")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([ex[0][0]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, model(ids).logits, atol=1e-5)


def test_masked_loss_equals_the_full_forward_loss_and_its_gradients(tiny_path, expert_file):
    model, tok, ex = _examples(tiny_path, expert_file[0])
    batch = collate(ex[:6], tok.pad_token_id)
    ids, labels = batch["input_ids"], batch["labels"]
    full = model(input_ids=ids, labels=labels).loss
    full.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    masked = masked_lm_loss(model, ids, labels)
    masked.backward()
    assert masked.item() == pytest.approx(full.item(), rel=1e-5)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-6), n


def test_sft_is_seeded(tiny_path, expert_file):
    logs = []
    for _ in range(2):
        model, tok, ex = _examples(tiny_path, expert_file[0])
        logs.append(
            train_sft(model, ex, tok.pad_token_id, SFTConfig(steps=3, batch_size=4, log_every=1))
        )
    assert logs[0] == logs[1]


def test_lora_trains_only_and_every_adapter_parameter(tiny_path, expert_file):
    pytest.importorskip("peft")
    model, tok, ex = _examples(tiny_path, expert_file[0])
    model = add_lora(model, r=4, seed=0)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_sft(
        model, ex, tok.pad_token_id, SFTConfig(steps=4, batch_size=4, lr=1e-2, warmup_ratio=0.0)
    )
    params = dict(model.named_parameters())
    assert [n for n in trainable if torch.equal(params[n], trainable[n])] == []
    assert [n for n in frozen if not torch.equal(params[n], frozen[n])] == []


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] < 0.01


def test_group_by_length_keeps_every_example_and_cuts_padding():
    from earlyexp.agents.sft import batches, group_by_length

    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.choice([100, 400, 1200], size=90, p=[0.75, 0.15, 0.10])]
    order = list(batches(len(lengths), 16, 70, seed=3))
    grouped = group_by_length(order, lengths, seed=3)
    assert sorted(i for b in grouped for i in b) == sorted(i for b in order for i in b)
    assert sorted(map(len, grouped)) == sorted(map(len, order))
    assert grouped == group_by_length(order, lengths, seed=3)

    def padded(o):
        return sum(len(b) * max(lengths[i] for i in b) for b in o)

    assert padded(grouped) < 0.6 * padded(order)


def test_sft_config_validates():
    with pytest.raises(ValueError, match="Expect steps"):
        SFTConfig(steps=0)
    with pytest.raises(ValueError, match="Expect batch_size"):
        SFTConfig(batch_size=0)


class Interrupted(Exception):
    pass


class StopsAfter(list):
    """The examples, raising on the ``n``-th lookup (a run that dies mid-training)."""

    def __init__(self, items, n):
        super().__init__(items)
        self.left = n

    def __getitem__(self, i):
        self.left -= 1
        if self.left < 0:
            raise Interrupted
        return super().__getitem__(i)


def test_an_interrupted_sft_run_resumes_to_the_same_weights(tiny_path, expert_file, tmp_path):
    config = SFTConfig(steps=9, batch_size=4, log_every=1, checkpoint_every=4)
    model, tok, ex = _examples(tiny_path, expert_file[0])
    reference = train_sft(model, ex, tok.pad_token_id, config)
    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    config.state_dir = str(tmp_path / "state")
    model, tok, ex = _examples(tiny_path, expert_file[0])
    with pytest.raises(Interrupted):  # dies in step 6, after the step-4 checkpoint
        train_sft(model, StopsAfter(ex, 6 * 4 + 2), tok.pad_token_id, config)
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["step-00000004"]
    model, tok, ex = _examples(tiny_path, expert_file[0])  # a fresh process: fresh weights
    assert train_sft(model, ex, tok.pad_token_id, config) == reference
    assert all(torch.equal(p, ref[n]) for n, p in model.named_parameters())


def test_sft_cli_trains_and_saves_a_checkpoint(tiny_path, expert_file, tmp_path, capsys):
    out = tmp_path / "ckpt"
    argv = ["--data", str(expert_file[0]), "--model", str(tiny_path), "--out", str(out)]
    argv += ["--steps", "3", "--batch-size", "2", "--checkpoint-every", "2"]
    assert main([*argv, "--state-dir", str(tmp_path / "state")]) == 0
    assert (out / "config.json").exists() and len(json.loads((out / "sft_log.json").read_text()))
    assert "checkpoint in" in capsys.readouterr().out
    assert (tmp_path / "state" / "step-00000003").is_dir()
