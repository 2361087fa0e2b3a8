"""Supervised fine-tuning on chat data with the loss on assistant tokens only.

Loss (IL, Early Experience eq. 1): L = -sum_i log pi(a_i | s_i), averaged over the trainable
tokens of a batch; the mask comes from :class:`~earlyexp.agents.chat.ChatEncoder` (the
assistant content and its end-of-turn token; prompts and observations are masked out).
AdamW, linear warmup then cosine decay to 0, gradient clipping, bf16 autocast on CUDA.
Seeded: the same seed, data and model give the same run.

Logits are computed only where a label is (:func:`masked_lm_loss`): an SFT example has a
few action tokens after hundreds of prompt tokens, and the vocabulary projection of every
prompt position would be wasted work (half of a tiny model's step, and gigabytes of logits
for a large vocabulary).

    python -m earlyexp.agents.sft --data runs/x/expert_sft.jsonl --model tiny --out ckpt/
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from earlyexp.agents.backends.hf import unwrap_peft
from earlyexp.agents.chat import ChatEncoder
from earlyexp.agents.prompting import Message

IGNORE = -100


@dataclass
class SFTConfig:
    """SFT hyper-parameters (each field's docstring is its ``--help``)."""

    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 16
    """Examples per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    warmup_ratio: float = 0.1
    """Share of the steps with a linear warmup (then cosine decay to 0)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    seed: int = 0
    """Seeds LoRA initialization, the batch order and dropout."""
    max_len: int = 1024
    """Examples longer than this keep their last max_len tokens."""
    train_on: str = "last"
    """Loss on the 'last' assistant message of each example (one (s, a) pair) or on 'all'."""
    lora_r: int = 0
    """LoRA rank (0: train every parameter); needs the lora extra."""
    log_every: int = 10
    """Log the loss every this many steps."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_len", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"Expect warmup_ratio in [0, 1), actually: {self.warmup_ratio}")
        if self.lr <= 0:
            raise ValueError(f"Expect lr > 0, actually: {self.lr}")


def encode_conversations(
    encoder: ChatEncoder, conversations: Sequence[Sequence[Message]], train_on: str, max_len: int
) -> list[tuple[list[int], list[int]]]:
    """Encode each conversation to (ids, mask), keeping the last ``max_len`` tokens."""
    out = []
    for messages in conversations:
        ids, mask = encoder.encode(messages, train_on)
        if sum(mask) == 0:
            raise ValueError("Expect an assistant message in every example, actually: none")
        out.append((ids[-max_len:], mask[-max_len:]))
    return out


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch: input_ids, attention_mask, labels (IGNORE off the mask), all (B, T)."""
    import torch

    T = max(len(ids) for ids, _ in batch)
    B = len(batch)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for i, (ids, mask) in enumerate(batch):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        attention[i, :n] = 1
        labels[i, :n] = torch.where(torch.tensor(mask, dtype=torch.bool), torch.tensor(ids), IGNORE)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batches(n: int, batch_size: int, steps: int, seed: int):
    """Yield ``steps`` index batches: shuffled epochs over ``n`` examples."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += rng.permutation(n).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


LOGITS_ARE_HEAD_OF_HIDDEN = (
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gpt2",
    "phi3",
    "olmo",
    "smollm3",
)
"""Model types whose logits are exactly ``lm_head(last hidden state)`` (no soft-capping or
scaling), so :func:`masked_lm_loss` may project the labelled positions only."""


def masked_lm_loss(model: Any, ids: Any, labels: Any) -> Any:
    """Mean -log pi over the labelled tokens of a (B, T) batch (labels ``IGNORE`` elsewhere).

    Equal to ``model(input_ids=ids, labels=labels).loss``; for the model types of
    :data:`LOGITS_ARE_HEAD_OF_HIDDEN` the vocabulary projection runs on the N labelled
    positions only ((N, V) logits instead of (B, T, V)). Other models take the full path.
    """
    import torch

    core = unwrap_peft(model)
    if getattr(core.config, "model_type", "") not in LOGITS_ARE_HEAD_OF_HIDDEN:
        return model(input_ids=ids, labels=labels).loss
    hidden = core.base_model(input_ids=ids).last_hidden_state  # (B, T, H)
    targets = labels[:, 1:]  # token t+1 is predicted at position t
    keep = targets != IGNORE  # (B, T-1)
    logits = core.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V)
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def train_sft(
    model: Any, examples: Sequence[tuple[list[int], list[int]]], pad_id: int, config: SFTConfig
) -> list[dict[str, float]]:
    """Train ``model`` in place on encoded ``examples``; return the loss log."""
    import torch

    if not examples:
        raise ValueError("Expect at least one training example, actually: none")
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = int(config.warmup_ratio * config.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, config.steps, warmup))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    log = []
    order = batches(len(examples), config.batch_size, config.steps, config.seed)
    bar = tqdm(order, total=config.steps, desc="sft", unit="step", leave=False, mininterval=2)
    for step, idx in enumerate(bar):
        batch = collate([examples[i] for i in idx], pad_id)
        # Right padding under a causal mask: real tokens never attend to the pads after them,
        # so the attention mask is left out (the fast causal attention kernel applies).
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)  # (B, T)
        with autocast:
            loss = masked_lm_loss(model, ids, labels)  # mean -log pi over labelled tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        sched.step()
        if step % config.log_every == 0 or step == config.steps - 1:
            log.append(
                {
                    "step": step,
                    "loss": loss.item(),
                    "grad_norm": norm.item(),
                    "lr": sched.get_last_lr()[0],
                }
            )
            bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
    model.eval()
    return log


def add_lora(model: Any, r: int, seed: int) -> Any:
    """Wrap ``model`` with LoRA adapters of rank ``r`` on its attention projections."""
    try:
        from peft import LoraConfig, get_peft_model
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "LoRA needs the lora extra: `pip install 'earlyexp[lora]'`"
        ) from e
    import torch

    torch.manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], lora_dropout=0.0
    )
    return get_peft_model(model, config)


def sft_on_conversations(
    model: Any, tokenizer: Any, conversations: Sequence[Sequence[Message]], config: SFTConfig
) -> tuple[Any, list[dict[str, float]]]:
    """Encode chat ``conversations`` and train; return (model, loss log)."""
    encoder = ChatEncoder(tokenizer)
    examples = encode_conversations(encoder, conversations, config.train_on, config.max_len)
    if config.lora_r > 0:
        model = add_lora(model, config.lora_r, config.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(encoder.eos_ids)
    return model, train_sft(model, examples, pad, config)


def save_checkpoint(model: Any, tokenizer: Any, path: Path) -> Path:
    """``save_pretrained`` model (LoRA merged into the weights) and tokenizer into ``path``."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@dataclass
class SFTRun:
    """What ``python -m earlyexp.agents.sft`` trains, from where and to where."""

    data: str = "expert_sft.jsonl"
    """Chat JSONL file, one {"messages": [...]} per line."""
    model: str = "tiny"
    """Checkpoint folder to start from, or 'tiny' (the built-in preset)."""
    out: str = "checkpoint"
    """Folder for the fine-tuned checkpoint (save_pretrained) and sft_log.json."""
    device: str = "auto"
    """auto, cpu or cuda."""


def main(argv: list[str] | None = None) -> int:
    """Fine-tune a checkpoint on a chat JSONL file."""
    from earlyexp.agents.backends.hf import load_model, resolve_device
    from earlyexp.agents.config import add_dataclass_args, from_args
    from earlyexp.agents.data import read_chat_jsonl
    from earlyexp.agents.models import resolve_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    add_dataclass_args(parser, SFTRun)
    add_dataclass_args(parser, SFTConfig)
    args = parser.parse_args(argv)
    run, config = from_args(SFTRun, args), from_args(SFTConfig, args)
    model, tokenizer = load_model(
        resolve_model(run.model), resolve_device(run.device), training=True
    )
    model, log = sft_on_conversations(model, tokenizer, read_chat_jsonl(Path(run.data)), config)
    out = save_checkpoint(model, tokenizer, Path(run.out))
    (out / "sft_log.json").write_text(json.dumps(log, indent=1))
    print(f"loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}; checkpoint in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
