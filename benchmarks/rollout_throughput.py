"""Generated tokens/s: the batched rollout engine vs a plain per-episode ``generate`` loop.

Both play the same episodes (the first N tasks of the ``test`` panel, one per env) with the
same model, prompts and sampling (temperature 1, ``max_new_tokens`` per turn, no stop
string, so both generate about the same number of tokens). The engine steps N envs at once
with one batched KV-cache generation per turn; the plain loop plays one episode after the
other and calls ``model.generate`` on one prompt per turn. The env's share of the engine's
wall time is reported too. ``--devices``: CPU rows, and GPU rows when CUDA is available.
With ``--workers W`` (default 2; 0 skips it) the engine also plays the same episodes with
its envs on W Ray actors (``PoolConfig(workers=W)``, one local Ray for the whole run): the
Ray columns. ``benchmarks/pool_overhead.py`` measures the pool's own cost per env step.

    .venv/bin/python benchmarks/rollout_throughput.py --envs 1,8,64
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import gymnasium as gym
import torch

import earlyexp.envs  # noqa: F401
from earlyexp.agents.backends.hf import HFPolicy, cpu_threads
from earlyexp.agents.envpool import PoolConfig
from earlyexp.agents.models import resolve_model
from earlyexp.agents.policy import SamplingParams
from earlyexp.agents.prompting import (
    NO_ACTION,
    PromptConfig,
    conversation,
    parse_action,
    system_prompt,
    user_message,
)
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine


@dataclass
class Row:
    device: str
    envs: int
    engine_tps: float
    plain_tps: float
    env_share: float
    engine_tokens: int
    plain_tokens: int
    ray_tps: float | None = None
    ray_env_share: float | None = None


def engine_run(policy, env_id, n, sampling, window, pool=None):
    engine = RolloutEngine(policy, PromptConfig(window=window), sampling, pool)
    specs = [EpisodeSpec("test", i, 0) for i in range(n)]
    engine.run(env_id, specs, num_envs=n)
    s = engine.stats
    return s.tokens / s.total_s, s.env_s / s.total_s, s.tokens


def plain_run(policy, env_id, n, sampling, window):
    """One episode at a time, ``model.generate`` on one prompt per turn."""
    model, tok, cfg = policy.model, policy.tokenizer, PromptConfig(window=window)
    device = next(model.parameters()).device
    env = gym.make(env_id)
    tokens, start = 0, time.perf_counter()
    for i in range(n):
        obs, info = env.reset(seed=0, options={"split": "test", "task": i})
        system = system_prompt(info["task"], env.unwrapped.action_help())
        turns, done, error = [], False, False
        while not done:
            user = user_message(obs, info, cfg, error)
            ids = policy.context_ids_from(conversation(system, turns, user, window))
            x = torch.tensor([ids], device=device)
            out = model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=sampling.max_new_tokens,
                do_sample=True, temperature=sampling.temperature, top_k=0,
                pad_token_id=policy.pad_id, eos_token_id=sorted(policy.encoder.eos_ids),
            )  # fmt: skip
            new = out[0, len(ids) :].tolist()
            tokens += len(new)
            text = tok.decode(new, skip_special_tokens=True)
            action = parse_action(text)
            obs, _, term, trunc, info = env.step(NO_ACTION if action is None else action)
            turns.append((user, text))
            done, error = term or trunc, action is None
    env.close()
    return tokens / (time.perf_counter() - start), tokens


def measure(path, device, env_id, counts, max_new_tokens, window, workers=0):
    policy = HFPolicy.from_pretrained(path, device, batch_size=max(counts))
    policy.context_ids_from = lambda msgs: policy.encoder.encode(msgs)[0]
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, stop=(), seed=0)
    engine_run(policy, env_id, 2, sampling, window)  # warm-up
    rows = []
    for n in counts:
        tps, share, tok_e = engine_run(policy, env_id, n, sampling, window)
        ptps, tok_p = plain_run(policy, env_id, n, sampling, window)
        row = Row(device, n, tps, ptps, share, tok_e, tok_p)
        if workers:
            ray = PoolConfig(workers=workers)
            row.ray_tps, row.ray_env_share, _ = engine_run(policy, env_id, n, sampling, window, ray)
        rows.append(row)
        print(f"  {device} {n:>3} envs: engine {tps:8.1f} tok/s, plain {ptps:8.1f} tok/s, "
              f"x{tps / ptps:5.2f}, env share {share:6.1%}{ray_text(row)}", flush=True)  # fmt: skip
    return rows


def ray_text(row: Row) -> str:
    if row.ray_tps is None:
        return ""
    return f"; on Ray {row.ray_tps:8.1f} tok/s, env share {row.ray_env_share:6.1%}"


def start_ray(workers: int) -> tuple[int, bool]:
    """Return (workers, whether this script started Ray); 0 workers when ray is missing."""
    if not workers:
        return 0, False
    try:
        from earlyexp.agents.envpool_ray import connect

        return workers, connect()
    except ModuleNotFoundError as e:
        print(f"no Ray columns: {e}")
        return 0, False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="'tiny' or a checkpoint folder")
    p.add_argument("--env", default="EarlyExp/FrozenLake-v0")
    p.add_argument("--envs", default="1,8,64", help="env counts, comma-separated")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--window", type=int, default=2)
    p.add_argument("--devices", default="cpu,cuda", help="cpu and/or cuda (cuda: when available)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--workers", type=int, default=2, help="Ray actors for the Ray columns (0: none)"
    )
    args = p.parse_args()
    counts = [int(x) for x in args.envs.split(",")]
    path = resolve_model(args.model)
    print(
        f"model {path}, env {args.env}, {args.max_new_tokens} new tokens/turn, window {args.window}"
    )
    print(f"torch {torch.__version__}, CPU threads {args.threads or torch.get_num_threads()}")
    workers, started = start_ray(args.workers)
    rows = []
    try:
        run = (args.env, counts, args.max_new_tokens, args.window, workers)
        devices = args.devices.split(",")
        if "cpu" in devices:
            with cpu_threads(args.threads):
                rows += measure(path, "cpu", *run)
        if "cuda" in devices and torch.cuda.is_available():
            rows += measure(path, "cuda", *run)
    finally:
        if started:
            import ray

            ray.shutdown()
    ray_cols = f" engine on Ray ({workers} workers) tok/s | env share on Ray |" if workers else ""
    print(f"\n| device | envs | engine tok/s | plain generate tok/s | speedup | env share of rollout |"
          f"{ray_cols}")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if workers else ""))
    for r in rows:
        ray = f" {r.ray_tps:.1f} | {r.ray_env_share:.1%} |" if r.ray_tps is not None else ""
        print(f"| {r.device} | {r.envs} | {r.engine_tps:.1f} | {r.plain_tps:.1f} | "
              f"{r.engine_tps / r.plain_tps:.2f}x | {r.env_share:.1%} |{ray}")  # fmt: skip
    if "cuda" in args.devices and not torch.cuda.is_available():
        for n in counts:
            none = " - | - |" if workers else ""
            print(f"| cuda | {n} | no GPU available | no GPU available | - | - |{none}")


if __name__ == "__main__":
    main()
