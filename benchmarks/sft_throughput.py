"""SFT training tokens/s of ``train_sft`` (the shared training loop) on the tiny preset.

Data: expert episodes of ``--envs`` (default FrozenLake and Sokoban; train stream,
``--episodes`` per env, prompt window 2, one example per expert step) encoded with the preset's tokenizer; ``--steps`` steps
of ``--batch-size`` examples, seed 0, each thread count in turn, a fresh model per run.
Figures: trainable tokens/s (the masked action tokens the loss is on) and all tokens/s (the
non-pad tokens fed to the model) per wall second, and all tokens per CPU second of the process
(steadier than wall time on a shared machine). ``--baseline FILE`` also times the
``train_sft`` of another copy of ``agents/sft.py`` (``git show REV:agents/sft.py >
/tmp/old_sft.py``) on the same data and seed, interleaved with the current one, and says
whether their loss logs are equal. ``--plain`` also times the current loop with the shared
prefix of a batch's rows run as every row's own tokens (``losses.decoder_hidden``'s plain path:
the same maths, every token computed per row), interleaved, and prints the largest difference
of the two loss logs.

    .venv/bin/python benchmarks/sft_throughput.py --repeats 2 --baseline /tmp/old_sft.py
    .venv/bin/python benchmarks/sft_throughput.py --threads 2 --plain
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import torch

from earlyexp.agents import sft
from earlyexp.agents.backends.hf import cpu_threads, load_model
from earlyexp.agents.chat import ChatEncoder
from earlyexp.agents.data import collect_expert, step_messages
from earlyexp.agents.models import resolve_model
from earlyexp.agents.prompting import PromptConfig
from earlyexp.agents.train import losses

ENVS = ("EarlyExp/FrozenLake-v0", "EarlyExp/Sokoban-v0")


def dataset(tokenizer, episodes, envs=ENVS):
    window = 2
    convs = []
    for env_id in envs:
        for traj in collect_expert(env_id, episodes, seed=0, prompt=PromptConfig(window=window)):
            convs += step_messages(traj, window)
    return sft.encode_conversations(ChatEncoder(tokenizer), convs, "last", 1024)


def token_counts(examples, config):
    trainable = every = 0
    for idx in sft.batches(len(examples), config.batch_size, config.steps, config.seed):
        trainable += sum(sum(examples[i][1]) for i in idx)
        every += sum(len(examples[i][0]) for i in idx)
    return trainable, every


def timed(train_sft, config, path, device, examples):
    model, tokenizer = load_model(path, device, training=True)
    start, cpu = time.perf_counter(), time.process_time()
    log = train_sft(model, examples, tokenizer.pad_token_id, config)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, log


def load_baseline(path):
    spec = importlib.util.spec_from_file_location("baseline_sft", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # a copy of this repo's own sft.py
    return module


def plain_train_sft(*args):
    """``train_sft`` with no prefix shared across a batch's rows (every token run per row)."""
    before, losses.SHARED_PREFIX_MIN = losses.SHARED_PREFIX_MIN, 10**9
    try:
        return sft.train_sft(*args)
    finally:
        losses.SHARED_PREFIX_MIN = before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="'tiny', 'tiny:<preset>' or a checkpoint")
    p.add_argument("--envs", default=",".join(ENVS),
                   help="comma-separated env ids (a bench cell trains on one: its rows share "
                   "the system prompt)")  # fmt: skip
    p.add_argument("--episodes", type=int, default=100, help="expert episodes per env")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", default="1,2", help="torch CPU thread counts, comma-separated")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--baseline", default="", help="another sft.py whose train_sft to time too")
    p.add_argument("--plain", action="store_true", help="also time the unshared-prefix forward")
    args = p.parse_args()
    path = resolve_model(args.model)
    _, tokenizer = load_model(path)
    envs = tuple(args.envs.split(","))
    examples = dataset(tokenizer, args.episodes, envs)
    config = sft.SFTConfig(steps=args.steps, batch_size=args.batch_size, log_every=1)
    trainable, every = token_counts(examples, config)
    impls = {"current": sft.train_sft}
    if args.baseline:
        impls = {"baseline": load_baseline(args.baseline).train_sft, **impls}
    if args.plain:
        impls = {"plain": plain_train_sft, **impls}
    print(
        f"model {path}, {len(examples)} examples from {args.episodes} episodes x {len(envs)} "
        f"envs ({', '.join(envs)})"
    )
    print(f"{args.steps} steps x batch {args.batch_size}: {trainable} trainable, {every} tokens")
    print(f"torch {torch.__version__}, device {args.device}")
    rows, logs = [], {}
    for threads in [int(x) for x in args.threads.split(",")]:
        with cpu_threads(threads):
            warm = sft.SFTConfig(steps=5, batch_size=args.batch_size)
            timed(sft.train_sft, warm, path, args.device, examples)
            for rep in range(args.repeats):
                for name, fn in impls.items():
                    s, cpu, log = timed(fn, config, path, args.device, examples)
                    logs[name] = log
                    rows.append((name, threads, rep, s, cpu))
                    print(f"  {name} {threads} threads, run {rep + 1}: {s:.2f} s", flush=True)
    print(
        "\n| loop | threads | run | wall s | trainable tok/s | all tok/s | CPU s | all tok/CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, threads, rep, s, cpu in rows:
        print(f"| {name} | {threads} | {rep + 1} | {s:.1f} | {trainable / s:,.0f} | "
              f"{every / s:,.0f} | {cpu:.1f} | {every / cpu:,.0f} |")  # fmt: skip
    if args.baseline:
        print(f"\nloss logs equal (baseline vs current): {logs['baseline'] == logs['current']}")
    if args.plain:
        pairs = zip(logs["plain"], logs["current"], strict=True)
        gap = max(abs(a["loss"] - b["loss"]) for a, b in pairs)
        print(f"\nlargest loss difference, plain vs current (shared prefix): {gap:.2e}")


if __name__ == "__main__":
    main()
