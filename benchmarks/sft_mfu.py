"""SFT model FLOPs utilization (MFU) of the shared training loop, for a model built from a config.

The model is a ``LlamaForCausalLM`` with random weights, shaped like Qwen2.5-0.5B by default
(hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, vocabulary 151936, tied embeddings:
about 494M parameters); nothing is downloaded. The data are random token ids, ``--batch-size``
sequences of ``--seq-len`` tokens, the loss on every token. Each step is one
``train.loop.Trainer.step`` with ``train.losses.sft_loss``, exactly as ``il`` trains: float32
master weights, AdamW, the forward and backward under bf16 autocast on CUDA, gradient clipping.

FLOPs per token are counted as 6 N + 12 L H S (N: parameters without the embedding, plus the
output projection; L layers, H hidden size, S sequence length: the attention scores, the
PaLM appendix B convention). MFU = FLOPs/token x tokens/s / peak bf16 dense FLOP/s of the
device (looked up by name: H100/H200 SXM 989 TFLOP/s, H100 PCIe 756, A100 312, L40S 362;
``--peak-tflops`` for others).

    .venv/bin/python benchmarks/sft_mfu.py                       # on a GPU
    .venv/bin/python benchmarks/sft_mfu.py --device cpu --hidden 64 --layers 2 --heads 2 \
        --kv-heads 2 --intermediate 256 --vocab 2048 --seq-len 256 --steps 3   # a CPU check
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from earlyexp.agents.train.batch import TrainBatch
from earlyexp.agents.train.loop import TrainConfig, Trainer
from earlyexp.agents.train.losses import sft_loss

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0}


def build(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=max(args.seq_len, 2048),
        tie_word_embeddings=True, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(args.device)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> tuple[float, int]:
    """(6 N + 12 L H S, N): N counts the output projection once, not the input embedding."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())  # the tied matrix once: the output projection
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    return 6 * n + attention, n


def peak_flops(device: str, override: float) -> tuple[float | None, str]:
    if override:
        return override * 1e12, f"{override} TFLOP/s (given)"
    if not device.startswith("cuda"):
        return None, "unknown (CPU; give --peak-tflops)"
    name = torch.cuda.get_device_name()
    for key, tflops in PEAK_BF16_TFLOPS.items():  # "H100 PCIe" is checked before "H100"
        if key in name:
            return tflops * 1e12, f"{tflops} TFLOP/s bf16 dense ({name})"
    return None, f"unknown for {name!r} (give --peak-tflops)"


def batches(args: argparse.Namespace, vocab: int) -> list[TrainBatch]:
    rng = random.Random(0)
    examples = [([rng.randrange(vocab) for _ in range(args.seq_len)], [1] * args.seq_len)
                for _ in range(args.batch_size)]  # fmt: skip
    return [TrainBatch.from_examples(examples, 0)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--hidden", type=int, default=896)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--heads", type=int, default=14)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=4864)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="measured steps (after 3 warm-up)")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    args = p.parse_args()
    model = build(args)
    per_token, n = flops_per_token(model, args.seq_len)
    peak, peak_text = peak_flops(args.device, args.peak_tflops)
    data = batches(args, args.vocab)
    warm = 3
    trainer = Trainer(model, sft_loss, TrainConfig(steps=warm + args.steps, lr=1e-4,
                                                   warmup_ratio=0.0, log_every=1000))  # fmt: skip
    for _ in range(warm):
        trainer.step(data)
    sync(args.device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.step(data)
    sync(args.device)
    seconds = (time.perf_counter() - t0) / args.steps
    tokens = args.batch_size * args.seq_len
    achieved = per_token * tokens / seconds
    mem = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else 0.0
    print(f"model: Llama from config, {n / 1e6:.1f}M parameters, hidden {args.hidden}, "
          f"{args.layers} layers, vocab {args.vocab}; batch {args.batch_size} x {args.seq_len} "
          f"tokens; float32 master weights, bf16 autocast, AdamW; torch {torch.__version__}")  # fmt: skip
    print(f"peak: {peak_text}; FLOPs/token {per_token / 1e9:.2f} G (6N + 12LHS)")
    mfu = f"{achieved / peak:.1%}" if peak else "-"
    print("\n| device | params | tokens/step | s/step | tokens/s | TFLOP/s | MFU | peak mem GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.device} | {n / 1e6:.1f}M | {tokens} | {seconds:.3f} | {tokens / seconds:,.0f} | "
          f"{achieved / 1e12:.1f} | {mfu} | {mem:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
