"""Steps per second of every registered env under the expert and a random policy, one core.

Prints env-only rates (time inside ``env.step``/``env.reset``) and loop rates (including the
policy's choice, e.g. the expert's search), next to Gymnasium's own FrozenLake-v1 as the
yardstick. Usage:

    python benchmarks/env_throughput.py [--seconds 3] [--ids EarlyExp/FrozenLake-v0,...]
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import earlyexp.envs as envs


def measure(env: gym.Env, policy: str, seconds: float, seed: int = 0) -> tuple[float, float, int]:
    """Return (env-only steps/s, loop steps/s, steps) for ``policy`` in ``expert|random``."""
    rng = np.random.default_rng(seed)
    env_time = 0.0
    steps = 0
    t0 = time.perf_counter()
    t = time.perf_counter()
    obs, info = env.reset(seed=seed)
    env_time += time.perf_counter() - t
    while time.perf_counter() - t0 < seconds:
        if policy == "expert":
            action = env.unwrapped.expert_action()
        else:
            acts = info.get("available_actions") if isinstance(info, dict) else None
            action = acts[int(rng.integers(len(acts)))] if acts else env.action_space.sample()
        t = time.perf_counter()
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            obs, info = env.reset()
        env_time += time.perf_counter() - t
        steps += 1
    loop = time.perf_counter() - t0
    return steps / env_time, steps / loop, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--ids", default="", help="comma-separated ids (default: all registered)")
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    ids = [i for i in args.ids.split(",") if i] or envs.env_ids()
    print(f"{'env':34s} {'policy':7s} {'env steps/s':>12s} {'loop steps/s':>13s} {'steps':>8s}")
    yard = gym.make("FrozenLake-v1", is_slippery=False)
    for policy in ("random",):
        rate, loop, n = measure(yard, policy, args.seconds)
        print(
            f"{'gymnasium FrozenLake-v1 (yardstick)':34s} {policy:7s} {rate:12,.0f} {loop:13,.0f} {n:8d}"
        )
    yard.close()
    for env_id in ids:
        env = gym.make(env_id)
        for policy in ("random", "expert"):
            rate, loop, n = measure(env, policy, args.seconds)
            print(f"{env_id:34s} {policy:7s} {rate:12,.0f} {loop:13,.0f} {n:8d}")
        env.close()


if __name__ == "__main__":
    main()
