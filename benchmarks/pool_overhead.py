"""What Ray actors cost per env step, and what they buy on FlightBooking.

Overhead: the same episodes (the ``test`` panel, in order, refilled as in the rollout engine)
are played on an in-process pool and on a Ray pool of the same size (``--envs`` slots over
``--workers`` actors), with the expert (computed where the env runs) or a seeded random
policy. Both runs make the same sequence of ``pool.step`` calls (same slots, same actions),
so call ``i`` of one is paired with call ``i`` of the other:
overhead per env step = (Ray call time - in-process call time) / envs in the call;
its p50 and p99 are printed with the per-env-step times of each pool. Only step calls are
timed (resets are not).

FlightBooking: expert episodes per minute with ``--flight-envs`` envs on ``--workers`` Ray
actors (each actor has its own browser and site server) against one in-process env, and
against the same envs in-process (what batching alone gives). Each pool first resets every
slot once (browser launch, server start) before the clock starts. ``--think`` adds model time
per turn (one batched generation for all envs, as in the rollout engine); with 0 the env's
own CPU is the bottleneck (a FlightBooking episode costs about a CPU-second: Python, the
site's server thread, Chromium), so 2 cores bound what any pool gains. ``cores busy`` is the
pool's CPU seconds over its wall seconds; the 1-env row's value bounds what ANY pool can gain
on this machine: ``cores / cores busy`` (printed as the ceiling). The machine's 1-minute
load average is printed per row: other work on the machine shifts every figure.

    .venv/bin/python benchmarks/pool_overhead.py
    .venv/bin/python benchmarks/pool_overhead.py --env-ids EarlyExp/WebShop-v0 --no-flights
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from earlyexp.agents.backends.scripted import random_action
from earlyexp.agents.envpool import EnvView, PoolConfig, ResetRequest, make_pool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flights_latency import cpu_seconds  # noqa: E402  (the sibling benchmark's CPU clock)


@dataclass
class Played:
    calls: list[float] = field(default_factory=list)  # seconds per step call
    envs: list[int] = field(default_factory=list)  # envs in each step call
    episodes: int = 0
    successes: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds of this process and its descendants (Ray's, browsers)


def play(pool, episodes: int, split: str, policy: str, think: float = 0.0, seed: int = 0) -> Played:
    """Play ``episodes`` panel tasks on ``pool`` with continuous refill; time the step calls.

    ``think`` seconds pass before every step call: one batched model call for all the
    active envs, as in the rollout engine.
    """
    rng = np.random.default_rng(seed)
    queue = deque(range(episodes))
    out, views = Played(), {}

    def start(slots: list[int]) -> None:
        todo = [(s, queue.popleft()) for s in slots if queue]
        got = pool.reset([ResetRequest(s, t, split, t % 200) for s, t in todo])
        views.update({s: v for (s, _), v in zip(todo, got, strict=True)})

    def act(view: EnvView) -> str:
        if policy == "expert":
            return str(view.expert_action)
        return random_action(view.info["available_actions"], rng)

    begin, cpu = time.perf_counter(), cpu_seconds()
    start(list(range(pool.size)))
    while views:
        slots = sorted(views)
        actions = [act(views[s]) for s in slots]
        if think:
            time.sleep(think)
        t = time.perf_counter()
        stepped = pool.step(slots, actions)
        out.calls.append(time.perf_counter() - t)
        out.envs.append(len(slots))
        ended = []
        for s, v in zip(slots, stepped, strict=True):
            views[s] = v
            if v.done:
                out.episodes += 1
                out.successes += int(v.info.get("success", False))
                ended.append(s)
                del views[s]
        start(ended)
    out.wall, out.cpu = time.perf_counter() - begin, cpu_seconds() - cpu
    return out


def timed_pool(env_id, size, config, policy, episodes, env_kwargs=None, think=0.0) -> Played:
    """Make a pool, warm every slot up with one reset, play, close."""
    pool = make_pool(env_id, size, config, env_kwargs, expert=policy == "expert")
    try:
        pool.reset([ResetRequest(s, 0, "test", s) for s in range(size)])
        return play(pool, episodes, "test", policy, think)
    finally:
        pool.close()


def ms(xs, q) -> float:
    return 1000 * float(np.percentile(xs, q))


def overhead_row(env_id, policy, envs, workers, episodes) -> None:
    here = timed_pool(env_id, envs, PoolConfig(), policy, episodes)
    there = timed_pool(env_id, envs, PoolConfig(workers=workers), policy, episodes)
    if here.envs != there.envs:
        raise RuntimeError("Expect the same step calls on both pools, actually: they differ")
    n = np.array(here.envs)
    local, ray = np.array(here.calls) / n, np.array(there.calls) / n
    over = ray - local
    print(f"| {env_id} | {policy} | {envs} / {workers} | {len(n)} | "
          f"{ms(local, 50):.3f} / {ms(local, 99):.3f} | {ms(ray, 50):.3f} / {ms(ray, 99):.3f} | "
          f"**{ms(over, 50):.3f}** / {ms(over, 99):.3f} | "
          f"{ms(here.calls, 50):.2f} / {ms(there.calls, 50):.2f} |", flush=True)  # fmt: skip


def flights_rows(envs, workers, episodes, warm: bool, think: float) -> None:
    kwargs = {"warm_spare": warm}
    env_id = "EarlyExp/FlightBooking-v0"
    runs = {
        "1 env, in-process": (1, PoolConfig()),
        f"{envs} envs, in-process": (envs, PoolConfig()),
        f"{envs} envs, {workers} Ray workers": (envs, PoolConfig(workers=workers)),
    }
    rate, busy = {}, {}
    for name, (size, config) in runs.items():
        p = timed_pool(env_id, size, config, "expert", episodes, kwargs, think)
        rate[name], busy[name] = p.episodes / p.wall * 60, p.cpu / p.wall
        print(f"| {name} | {warm} | {think:g} | {p.episodes} | {p.successes} | {p.wall:.1f} | "
              f"{rate[name]:.1f} | {ms(p.calls, 50):.0f} | {p.cpu / p.episodes:.2f} | "
              f"{busy[name]:.2f} | {os.getloadavg()[0]:.1f} |",
              flush=True)  # fmt: skip
    one, local, ray = rate.values()
    ceiling = (os.cpu_count() or 1) / busy["1 env, in-process"]
    print(f"| Ray / 1 env: **{ray / one:.2f}x**, Ray / {envs} in-process: {ray / local:.2f}x, "
          f"ceiling on {os.cpu_count()} cores: {ceiling:.2f}x | | | | | | | | | | |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--env-ids", nargs="*", default=["EarlyExp/WebShop-v0", "EarlyExp/FrozenLake-v0"]
    )
    p.add_argument("--policies", nargs="*", default=["expert", "random"])
    p.add_argument("--envs", type=int, default=8, help="slots of the overhead pools")
    p.add_argument("--workers", type=int, default=2, help="Ray actors")
    p.add_argument("--episodes", type=int, default=800, help="episodes per overhead run")
    p.add_argument("--flight-envs", type=int, default=4)
    p.add_argument("--flight-episodes", type=int, default=24, help="episodes per flights run")
    p.add_argument("--no-flights", dest="flights", action="store_false")
    p.add_argument("--warm", choices=["on", "off", "both"], default="off",
                   help="FlightBooking's warm_spare")  # fmt: skip
    p.add_argument("--think", type=float, nargs="*", default=[0.0, 0.2],
                   help="seconds of model time per turn (FlightBooking runs)")  # fmt: skip
    args = p.parse_args()

    import ray

    from earlyexp.agents.envpool_ray import connect

    started = connect()  # one local Ray for every pool (each pool would start its own)
    print(f"ray {ray.__version__}, {ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    try:
        print("\nPer env step, ms (p50 / p99); overhead = (Ray call - in-process call) / envs")
        print("| env | policy | envs / workers | step calls | in-process | Ray | overhead "
              "| call p50 in-process / Ray |\n|---|---|---|---:|---:|---:|---:|---:|")  # fmt: skip
        for env_id in args.env_ids:
            for policy in args.policies:
                overhead_row(env_id, policy, args.envs, args.workers, args.episodes)
        if args.flights:
            print("\nFlightBooking, expert, episodes back to back")
            print("| pool | warm_spare | think s | episodes | successes | wall s | episodes/min "
                  "| step call p50 ms | CPU s/episode | cores busy | load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
            for warm in {"on": [True], "off": [False], "both": [True, False]}[args.warm]:
                for think in args.think:
                    flights_rows(args.flight_envs, args.workers, args.flight_episodes, warm, think)
    finally:
        if started:
            ray.shutdown()


if __name__ == "__main__":
    main()
