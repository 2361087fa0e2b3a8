"""Supervised fine-tuning on chat data with the loss on assistant tokens only.

Loss (IL, Early Experience eq. 1): L = -sum_i log pi(a_i | s_i), averaged over the trainable
tokens of a batch; the mask comes from :class:`~earlyexp.agents.chat.ChatEncoder` (the
assistant content and its end-of-turn token; prompts and observations are masked out).
The optimizer loop is the shared :class:`~earlyexp.agents.train.loop.Trainer` (AdamW, linear
warmup then cosine decay to 0, gradient clipping, bf16 autocast on CUDA, checkpoints every
``checkpoint_every`` steps into ``state_dir``, from which a killed run resumes).
Seeded: the same seed, data and model give the same run.

Logits are computed only where a label is
(:func:`~earlyexp.agents.train.losses.masked_lm_loss`): an SFT example has a few action tokens
after hundreds of prompt tokens, and the vocabulary projection of every prompt position would
be wasted work (half of a tiny model's step, and gigabytes of logits for a large vocabulary).

    python -m earlyexp.agents.sft --data runs/x/expert_sft.jsonl --model tiny --out ckpt/
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earlyexp.agents.chat import ChatEncoder
from earlyexp.agents.prompting import Message
from earlyexp.agents.train.batch import TrainBatch, pad_examples
from earlyexp.agents.train.loop import TrainConfig, Trainer, lr_factor
from earlyexp.agents.train.losses import (
    IGNORE,
    LOGITS_ARE_HEAD_OF_HIDDEN,
    masked_lm_loss,
    sft_loss,
)

__all__ = [
    "IGNORE",
    "LOGITS_ARE_HEAD_OF_HIDDEN",
    "SFTConfig",
    "SFTRun",
    "add_lora",
    "batches",
    "collate",
    "encode_conversations",
    "group_by_length",
    "lr_factor",
    "main",
    "masked_lm_loss",
    "save_checkpoint",
    "sft_on_conversations",
    "train_sft",
]


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
    group_by_length: bool = False
    """Regroup the shuffled batches of each run of 32 by example length (as transformers'
    ``group_by_length``): less padding when lengths differ widely; the same examples, as often."""
    train_on: str = "last"
    """Loss on the 'last' assistant message of each example (one (s, a) pair) or on 'all'."""
    lora_r: int = 0
    """LoRA rank (0: train every parameter); needs the lora extra."""
    log_every: int = 10
    """Log the loss every this many steps."""
    checkpoint_every: int = 0
    """Write the training state into state_dir every this many steps (0: never)."""
    state_dir: str | None = None
    """Folder of the training state: a killed run started again on it resumes there."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        self.train_config()  # validates the loop's fields

    def train_config(self) -> TrainConfig:
        """The optimizer-loop part of this config (one micro-batch per step)."""
        return TrainConfig(
            steps=self.steps,
            lr=self.lr,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            seed=self.seed,
            log_every=self.log_every,
            checkpoint_every=self.checkpoint_every,
        )


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
    input_ids, attention, labels = pad_examples(batch, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def batches(n: int, batch_size: int, steps: int, seed: int):
    """Yield ``steps`` index batches: shuffled epochs over ``n`` examples."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += rng.permutation(n).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


def group_by_length(
    order: Sequence[list[int]], lengths: Sequence[int], seed: int, window: int = 32
) -> list[list[int]]:
    """``order`` regrouped by example length, ``window`` batches at a time.

    The examples of each ``window`` consecutive batches are sorted by length, cut into
    batches of the same sizes again, and those batches shuffled (seeded).
    """
    rng = np.random.default_rng(seed + 1)
    out: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        flat = sorted((i for b in chunk for i in b), key=lambda i: -lengths[i])
        regrouped, at = [], 0
        for b in chunk:
            regrouped.append(flat[at : at + len(b)])
            at += len(b)
        out += [regrouped[j] for j in rng.permutation(len(regrouped))]
    return out


def train_sft(
    model: Any,
    examples: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    config: SFTConfig,
    on_step: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on encoded ``examples``; return the loss log.

    Resumes from ``config.state_dir`` when it holds a checkpoint of the same run;
    ``on_step(done)`` runs after each optimizer step (:meth:`Trainer.fit`).
    """
    if not examples:
        raise ValueError("Expect at least one training example, actually: none")
    order = list(batches(len(examples), config.batch_size, config.steps, config.seed))
    if config.group_by_length:
        order = group_by_length(order, [len(ids) for ids, _ in examples], config.seed)

    def batch_at(step: int) -> TrainBatch:
        # Right padding under a causal mask: real tokens never attend to the pads after them,
        # so the attention mask is left out (the fast causal attention kernel applies).
        return TrainBatch.from_examples([examples[i] for i in order[step]], pad_id)

    trainer = Trainer(model, sft_loss, config.train_config(), config.state_dir, desc="sft")
    return trainer.fit(batch_at, on_step)


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
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    config: SFTConfig,
    on_step: Callable[[int], None] | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Encode chat ``conversations`` and train; return (model, loss log)."""
    encoder = ChatEncoder(tokenizer)
    examples = encode_conversations(encoder, conversations, config.train_on, config.max_len)
    if config.lora_r > 0:
        model = add_lora(model, config.lora_r, config.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(encoder.eos_ids)
    return model, train_sft(model, examples, pad, config, on_step)


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
