"""WebShop env throughput (steps/s, one process = one core) and policy success rates.

Usage:
    .venv/bin/python benchmarks/webshop_speed.py [--sizes 1000 10000] [--episodes 1000]

Policies: ``expert`` (the oracle), ``random`` (uniform over the available actions; on the
search page it searches 2-6 random words of the instruction) and ``mixed`` (expert with
probability 0.5, else random: the early-experience branching workload). Steps/s counts every
step() and reset() of the run over wall time and over the process's CPU time (the per-core
figure on a shared machine): ``loop`` includes the policy (the expert's planning scores up to
50 search results per goal), ``env only`` is the time inside reset() and step(). The catalog
is cached and loaded first; product and search caches warm only from the run itself.
Success = R == 1; score = mean R x 100.
"""

from __future__ import annotations

import argparse
import random
import time

import gymnasium as gym
import numpy as np

import earlyexp.envs  # noqa: F401


def pick(env, info, rng: random.Random, policy: str) -> str:
    if policy == "expert" or (policy == "mixed" and rng.random() < 0.5):
        return env.unwrapped.expert_action()
    a = rng.choice(info["available_actions"])
    if a.startswith("search["):
        words = info["task"].split()
        a = "search[" + " ".join(rng.sample(words, min(rng.randint(2, 6), len(words)))) + "]"
    return a


def run(size: int, policy: str, episodes: int, split: str, mode: str) -> dict:
    env = gym.make("EarlyExp/WebShop-v0", num_products=size, observation_mode=mode)
    rng = random.Random(0)
    steps, rewards, wins = 0, [], 0
    env_wall = env_cpu = 0.0  # time inside reset() and step() only

    def timed(fn, *args, **kwargs):
        nonlocal env_wall, env_cpu
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        env_wall += time.perf_counter() - w
        env_cpu += time.process_time() - c
        return out

    start, cpu = time.perf_counter(), time.process_time()
    for e in range(episodes):
        obs, info = timed(env.reset, options={"split": split, "task": e % 500})
        steps += 1
        done = False
        while not done:
            obs, r, term, trunc, info = timed(env.step, pick(env, info, rng, policy))
            steps += 1
            done = term or trunc
        rewards.append(r)
        wins += bool(info["success"])
    dt, dcpu = time.perf_counter() - start, time.process_time() - cpu
    env.close()
    return {
        "steps_per_s": steps / dt,
        "steps_per_cpu_s": steps / dcpu,
        "env_steps_per_s": steps / env_wall,
        "env_steps_per_cpu_s": steps / env_cpu,
        "steps": steps,
        "success": wins / episodes,
        "score": 100 * float(np.mean(rewards)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--mode", default="text", choices=["text", "text_rich", "html"])
    args = parser.parse_args()
    for size in args.sizes:
        gym.make("EarlyExp/WebShop-v0", num_products=size).close()  # build/load the catalog
        for policy in ("expert", "random", "mixed"):
            for split in ("test", "ood"):
                r = run(size, policy, args.episodes, split, args.mode)
                print(
                    f"{size:>9,} products  {policy:<6} {split:<4} {args.mode:<9} "
                    f"loop {r['steps_per_s']:>6,.0f}/s wall {r['steps_per_cpu_s']:>6,.0f}/CPU-s  "
                    f"env only {r['env_steps_per_s']:>6,.0f}/s wall "
                    f"{r['env_steps_per_cpu_s']:>6,.0f}/CPU-s  ({r['steps']} steps)  "
                    f"success {100 * r['success']:5.1f}%  score {r['score']:5.1f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
