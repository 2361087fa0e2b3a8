"""Can the tiny model copy from the page? Pretraining mixtures, SFT steps and copy probes (issue 20).

The text envs need a reply that copies from the context: a product id from the results page
(WebShop), a query word or an answer from a passage (SearchQA), a path or a sentence from the
user's request (ToolCall). This script measures whether, and after how many steps, the tiny
model learns that, on 2 CPU cores, in three stages (each optional):

1. **Pretrain** (``--pretrain-steps``) a fresh model of the tiny preset's shape with a
   next-token loss over packed rows of 1,024 tokens from ``--pretrain-episodes`` train-stream
   episodes per env of ``--pretrain-envs`` (each step: the expert's action, or with
   probability ``--p-random`` a random available action; rendered as the SFT examples are,
   window 0). ``--span-every K``: every K-th step instead copies 6 random 16-token spans of
   the row to its end after a marker (loss on the copied tokens after the first two).
   ``--repeat-every K``: every K-th step is a synthetic induction batch (256 tokens drawn
   from a row, then repeated; loss on the repeat). With ``--repeat-vary`` each batch of
   ``--repeat-rows`` rows draws its length (``--repeat-len``, default 16-199 tokens) and a
   gap of random tokens before the repeat (``--repeat-gap``, default 0-299), so the copy
   distance varies and only a content match (an induction head) can predict the repeat; a
   fixed 256 can be learnt as "copy the token 256 back". ``copy at (length, gap)`` reports
   the repeat's copy accuracy at six distances, the fixed training's and five others (every
   ``--probe-every`` steps with ``--repeat-vary``, and after pretraining): it tells the two
   apart. The number of tokens after which induction heads form is reported to grow with
   batch size x context (Aoyama et al. 2025, arXiv 2511.16893, fit N = T sqrt(B C)), so
   few short repeat rows per step may form them in fewer tokens.
2. **SFT** (``--sft-steps``) on ``--env``: IL's examples (the expert's action after each
   train-stream observation of ``--sft-episodes`` episodes), loss on the reply only, with the
   project's optimizer loop (:class:`~earlyexp.agents.train.loop.Trainer`: AdamW, warmup then
   cosine, clipping). ``--window N`` keeps N earlier turns in the SFT and probe prompts (the
   quick profile gives WebShop 1: its item page does not show the chosen options), and
   ``--max-len`` tokens of each (the bench's text envs: 2,048; prompts longer than the
   trained length garble the replies).
3. **Probes**, on 20 held-out train-stream episodes (seeds 90,000 on; the test and ood panels
   are never read): the share of expert replies that greedy decoding would emit exactly
   (teacher-forced: every reply token is the argmax), per action kind; for WebShop, the
   per-token accuracy of ``click[<id>]`` replies and of the ids in the available-actions
   list (pure copying from the observation a few hundred tokens earlier); chance is about
   1/36 per id character.

``--pair-ids`` trains the tokenizer with product ids cut into 2-character tokens (``B0`` and
four of the 1,296 pairs; vocabulary 3,600), so each id token is nearly unique on a page.
``--hidden-size W`` (``--layers L``) starts from a fresh model of that width instead (heads of
16 dimensions, init std 0.8 / sqrt(W) as the preset's 0.1 at width 64).

    .venv/bin/python benchmarks/text_copying.py --pretrain-steps 1400 --repeat-every 2 \
        --sft-steps 600 --env EarlyExp/WebShop-v0
"""

from __future__ import annotations

import argparse
import itertools
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import earlyexp.agents.backends.tiny as tiny
from earlyexp.agents.backends.pretrain import (
    PROMPT,
    PretrainSpec,
    PretrainStage,
    packed_rows,
    repeat_batch,
    train_messages,
    varied_repeat,
)
from earlyexp.agents.chat import ChatEncoder
from earlyexp.agents.prompting import PromptConfig
from earlyexp.agents.train.batch import TrainBatch
from earlyexp.agents.train.loop import TrainConfig, Trainer
from earlyexp.agents.train.losses import masked_lm_loss, sft_loss

TEXT_ENVS = "EarlyExp/WebShop-v0,EarlyExp/SearchQA-v0,EarlyExp/ToolCall-v0"
ROW, HELD_OUT_SEED = 1024, 90_000  # ROW: as the base preset's corpus rows
PAIR_IDS = (r"B0(?=[A-Z0-9]{8}(?![A-Za-z0-9]))"
            r"|(?<=B0|B0[A-Z0-9]{2}|B0[A-Z0-9]{4}|B0[A-Z0-9]{6})[A-Z0-9]{2}")  # fmt: skip


def build_model(out: Path, pair_ids: bool) -> Path:
    """The tiny preset's tokenizer and fresh model (or the pair-id variant) in ``out``."""
    if not pair_ids:
        return tiny.tiny_checkpoint("tiny")
    chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pairs = ["".join(p) for p in itertools.product(chars, chars)]
    every_pair = " ".join("B0" + "".join(pairs[i : i + 4]) for i in range(0, len(pairs), 4))
    corpus, pretokenize = tiny.corpus, tiny.PRETOKENIZE
    tiny.PRETOKENIZE = PAIR_IDS + "|" + pretokenize
    tiny.corpus = lambda *a: itertools.chain(corpus(*a), [every_pair] * 3)  # type: ignore[assignment]
    try:
        tiny.build_tiny(replace(tiny.PRESETS["tiny"], vocab_size=3600), out)
    finally:
        tiny.corpus, tiny.PRETOKENIZE = corpus, pretokenize  # type: ignore[assignment]
    return out


def encoded(enc: ChatEncoder, messages, limit: int = ROW) -> tuple[list[int], list[int]]:
    ids, mask = enc.encode(messages, "last")
    return ids[-limit:], mask[-limit:]


def trainer(model, loss_fn, steps: int, lr: float, warmup: float, desc: str) -> Trainer:
    """The project's optimizer loop (AdamW, warmup then cosine, clipping 1.0), driven by step."""
    return Trainer(model, loss_fn, TrainConfig(steps=steps, lr=lr, warmup_ratio=warmup), desc=desc)


def lm_loss(model, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token loss of ``(ids, labels)`` (labels -100 where no loss)."""
    return masked_lm_loss(model, *batch), {}


def greedy_hits(model, x: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Whether the argmax predicts each labelled token of ``x`` (``labelled``: (B, T-1))."""
    pred = model(input_ids=x).logits[:, :-1].argmax(-1)
    return pred[labelled] == x[:, 1:][labelled]


def corpus_rows(tok, args, rng: np.random.Generator) -> torch.Tensor:
    spec = PretrainSpec(stages=(stage_of(args),), envs=tuple(args.pretrain_envs.split(",")),
                        episodes=args.pretrain_episodes, p_random=args.p_random)  # fmt: skip
    rows = packed_rows(tok, spec, rng)
    print(f"pretraining corpus: {rows.numel():,} tokens, {len(rows)} rows")
    return rows


def stage_of(args) -> PretrainStage:
    """The pretraining stage of the command line (its repeat settings)."""
    return PretrainStage(steps=max(1, args.pretrain_steps), lr=args.lr,
                         repeat_every=args.repeat_every, repeat_rows=args.repeat_rows,
                         repeat_len=args.repeat_len, repeat_gap=args.repeat_gap)  # fmt: skip


def span_batch(x: torch.Tensor, marker: int, g: torch.Generator):
    """Copy 6 random 16-token spans of each row to its end, after ``marker``."""
    x, labels = x.clone(), torch.full_like(x, -100)
    spans, length = 6, 16
    tail = spans * (length + 1)
    for r in range(len(x)):
        for k in range(spans):
            p = int(torch.randint(0, ROW - tail - length, (1,), generator=g))
            at = ROW - tail + k * (length + 1)
            x[r, at] = marker
            x[r, at + 1 : at + 1 + length] = x[r, p : p + length]
            labels[r, at + 3 : at + 1 + length] = x[r, at + 3 : at + 1 + length]
    return x, labels


def span_of(text: str) -> tuple[int, int]:
    """``"16:200"`` -> ``(16, 200)`` (``hi`` excluded)."""
    lo, hi = (int(v) for v in text.split(":"))
    if not 0 <= lo < hi:
        raise ValueError(f"Expect lo:hi with 0 <= lo < hi, actually: {text!r}")
    return lo, hi


COPY_PROBES = ((256, 0), (128, 0), (64, 100), (32, 400), (24, 0), (16, 40))
"""(length, gap) of the copy probes: the fixed-distance training's 256, three other long ones,
and two short ones (within the range of short ``--repeat-len`` training)."""


def repeat_copy(model, rows: torch.Tensor) -> str:
    """Greedy copy accuracy on held-out repeats at each of :data:`COPY_PROBES`."""
    g, out = torch.Generator().manual_seed(12345), []
    model.eval()
    with torch.no_grad():
        for half, gap in COPY_PROBES:
            x, labels = repeat_batch(rows, g, half, gap, 16)
            hits = greedy_hits(model, x, labels[:, 1:] != -100)
            out.append(f"({half}, {gap}) {hits.float().mean().item():.2f}")
    model.train()
    return ", ".join(out)


def pretrain(model, tok, args) -> None:
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    rows = corpus_rows(tok, args, rng)
    marker = tok.convert_tokens_to_ids("<|user|>")
    loop = trainer(model, lm_loss, args.pretrain_steps, args.lr, 0.05, "pretrain")
    start = time.perf_counter()
    for step in range(args.pretrain_steps):
        x = rows[torch.randint(len(rows), (4,), generator=g)]
        kind, labels = "lm", x
        if args.repeat_every and step % args.repeat_every == 0:
            batch = (varied_repeat(rows, g, stage_of(args)) if args.repeat_vary
                     else repeat_batch(rows, g, 256, 0, 8))  # fmt: skip
            (x, labels), kind = batch, "repeat"
        elif args.span_every and step % args.span_every == 0:
            (x, labels), kind = span_batch(x, marker, g), "span"
        loss = loop.step([(x, labels)])["loss"]
        if step % args.probe_every == 0 or step == args.pretrain_steps - 1:
            copy = (
                f"; copy at (length, gap): {repeat_copy(model, rows)}" if args.repeat_vary else ""
            )
            print(f"pretrain step {step} ({kind}) loss {loss:.3f} "
                  f"{time.perf_counter() - start:.0f} s{copy}", flush=True)  # fmt: skip
    print(f"pretraining: {args.pretrain_steps} steps in {time.perf_counter() - start:.0f} s")
    if args.repeat_every:
        print(f"copy at (length, gap): {repeat_copy(model, rows)}")


def kind_of(action: str) -> str:
    return re.split(r"[\[(]", action)[0] + ("[id]" if "[B0" in action else "")


def probe(model, enc: ChatEncoder, held: list) -> str:
    """Teacher-forced exact match of the expert's replies, per action kind."""
    model.eval()
    counts: dict[str, list[int]] = {}
    with torch.no_grad():
        for ids, mask, action in held:
            hits = greedy_hits(model, torch.tensor([ids]), torch.tensor([mask[1:]]).bool())
            c = counts.setdefault(kind_of(action), [0, 0])
            c[0] += 1
            c[1] += int(hits.all())
    model.train()
    return ", ".join(f"{k} {c[1]}/{c[0]}" for k, c in sorted(counts.items()) if c[0] >= 2)


def id_copy(model, tok, held_messages: list) -> str:
    """Per-character accuracy of the product ids in WebShop's available-actions lists."""
    right, seen = np.zeros(10), np.zeros(10)
    with torch.no_grad():
        for messages, _, _ in held_messages:
            text = messages[-2]["content"]  # the current user turn
            if "click[B0" not in text:
                continue
            start = text.index("Available actions:")
            enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
            ids = torch.tensor([enc["input_ids"]])
            pred = model(input_ids=ids).logits[0].argmax(-1)
            for m in re.finditer(r"click\[(B0[A-Z0-9]{8})\]", text[start:]):
                a, b = start + m.start(1), start + m.end(1)
                toks = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if s >= a and e <= b]
                for k, i in enumerate(toks[:10]):
                    seen[k] += 1
                    right[k] += int(pred[i - 1] == ids[0, i])
    return " ".join(f"{r / s:.2f}" for r, s in zip(right, seen, strict=True) if s)


def sft(model, tok, args, held: list, enc: ChatEncoder, prompt: PromptConfig) -> None:
    rng = np.random.default_rng(0)
    train = [
        encoded(enc, m, args.max_len)
        for m, _, _ in train_messages(args.env, 0, args.sft_episodes, 0.0, rng, prompt)
    ]
    loop = trainer(model, sft_loss, args.sft_steps, args.lr, 0.1, "sft")
    start = time.perf_counter()
    print(f"sft: {len(train)} examples of {args.env}")
    for step in range(1, args.sft_steps + 1):
        batch = TrainBatch.from_examples(
            [train[i] for i in rng.integers(len(train), size=args.batch_size)], tok.pad_token_id
        )
        loss = loop.step([batch])["loss"]
        if step % args.probe_every == 0 or step == args.sft_steps:
            print(f"sft step {step} loss {loss:.3f} {time.perf_counter() - start:.0f} s; "
                  f"exact: {probe(model, enc, held)}", flush=True)  # fmt: skip


def reshaped(model, width: int, layers: int):
    """A fresh model of the same config at ``width`` (heads of 16) and ``layers``."""
    from transformers import LlamaForCausalLM

    config = model.config
    config.hidden_size, config.intermediate_size = width, 4 * width
    config.num_attention_heads = config.num_key_value_heads = width // 16
    config.head_dim, config.num_hidden_layers = 16, layers or config.num_hidden_layers
    config.initializer_range = 0.8 / width**0.5  # the tiny preset's 0.1 at width 64
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="EarlyExp/WebShop-v0", help="the SFT and probe env")
    p.add_argument("--pretrain-envs", default=TEXT_ENVS)
    p.add_argument("--pretrain-episodes", type=int, default=300, help="per env")
    p.add_argument("--pretrain-steps", type=int, default=0, help="rows of 1,024 tokens x 4")
    p.add_argument("--p-random", type=float, default=0.25)
    p.add_argument("--span-every", type=int, default=0, help="every K-th step: span copies")
    p.add_argument("--repeat-every", type=int, default=0, help="every K-th step: repeats")
    p.add_argument("--repeat-vary", action="store_true", help="repeats of varied distance")
    p.add_argument("--repeat-rows", type=int, default=8, help="rows per repeat batch")
    p.add_argument("--repeat-len", default="16:200", type=span_of,
                   help="varied repeat length, lo:hi tokens")  # fmt: skip
    p.add_argument("--repeat-gap", default="0:300", type=span_of,
                   help="varied gap before the repeat, lo:hi")  # fmt: skip
    p.add_argument("--sft-steps", type=int, default=0)
    p.add_argument("--sft-episodes", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16, help="SFT examples per step")
    p.add_argument("--window", type=int, default=0, help="SFT and probe prompts: turns of history")
    p.add_argument("--max-len", type=int, default=ROW,
                   help="SFT and probe examples keep their last N tokens")  # fmt: skip
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--probe-every", type=int, default=200)
    p.add_argument("--pair-ids", action="store_true", help="2-character product-id tokens")
    p.add_argument("--hidden-size", type=int, default=0, help="another width (0: the preset's)")
    p.add_argument("--layers", type=int, default=0, help="with --hidden-size (0: the preset's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="", help="save the final checkpoint here")
    p.add_argument("--init", default="", help="start from this saved checkpoint (an --out)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.init) if args.init else build_model(Path(tmp), args.pair_ids)
        tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    if args.hidden_size:
        model = reshaped(model, args.hidden_size, args.layers)
    print(f"model: {sum(t.numel() for t in model.parameters()):,} parameters, "
          f"vocabulary {len(tok)}")  # fmt: skip
    enc = ChatEncoder(tok)
    rng = np.random.default_rng(1)
    prompt = replace(PROMPT, window=args.window)  # the SFT and probe prompts
    held_messages = list(train_messages(args.env, HELD_OUT_SEED, 20, 0.0, rng, prompt))
    held = [(*encoded(enc, m, args.max_len), a) for m, a, _ in held_messages]
    if args.pretrain_steps:
        pretrain(model, tok, args)
    print(f"exact after pretraining: {probe(model, enc, held)}")
    if "WebShop" in args.env:
        print(f"id characters copied in the action list: {id_copy(model, tok, held_messages)}")
    if args.sft_steps:
        sft(model, tok, args, held, enc, prompt)
    if args.out:
        model.save_pretrained(args.out)
        tok.save_pretrained(args.out)


if __name__ == "__main__":
    main()
