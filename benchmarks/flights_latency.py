"""Reset and step latency of EarlyExp/FlightBooking-v0, and episodes per minute.

Each episode is the expert's booking of a panel task (every step is a real browser action
plus one DOM read). Wall-clock figures depend on the machine's load, so the script also
prints the CPU time that all processes involved (Python with the site's server thread, the
Playwright driver, Chromium and its renderers) spent per step: a figure that load does not
inflate. ``--envs 4`` steps four envs round-robin in one process (they share one
browser and one server); ``--procs 4`` runs one env in each of four processes.

Episodes run back to back with no agent think time (the next reset follows the last step
at once), so each env's spare context (``warm_spare``) is made while the episode's own
steps run; ``--think S`` sleeps S seconds before every step, as an agent's model call would,
and ``--no-warm`` runs without spare contexts (every reset makes its context in the
foreground).

    python benchmarks/flights_latency.py --episodes 20 --envs 1 4 --procs 4
    python benchmarks/flights_latency.py --episodes 20 --envs 1 --procs --think 0.2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Timings:
    resets: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    episodes: int = 0
    successes: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    reset_cpu: float = 0.0

    def merge(self, other: Timings) -> None:
        self.resets += other.resets
        self.steps += other.steps
        self.episodes += other.episodes
        self.successes += other.successes
        self.cpu += other.cpu
        self.reset_cpu += other.reset_cpu


def cpu_seconds() -> float:
    """CPU time of this process and all its descendants (live, and reaped ones)."""
    import psutil

    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def run_envs(
    n_envs: int, episodes: int, split: str, offset: int = 0, warm: bool = True, think: float = 0.0
) -> Timings:
    import gymnasium as gym

    import earlyexp.envs  # noqa: F401

    envs = [gym.make("EarlyExp/FlightBooking-v0", warm_spare=warm) for _ in range(n_envs)]
    out = Timings()
    envs[0].reset(options={"split": split, "task": 0})  # warm-up: browser launch, server start
    start, cpu0 = time.perf_counter(), cpu_seconds()
    todo = list(range(offset, offset + episodes))
    live: dict[int, bool] = {}

    def begin(i: int) -> None:
        cpu = cpu_seconds()
        t = time.perf_counter()
        envs[i].reset(options={"split": split, "task": todo.pop(0) % 200})
        out.resets.append(time.perf_counter() - t)
        out.reset_cpu += cpu_seconds() - cpu
        live[i] = True

    for i in range(n_envs):
        if todo:
            begin(i)
    while live:
        for i in list(live):
            env = envs[i]
            if think:
                time.sleep(think)
            action = env.unwrapped.expert_action()
            t = time.perf_counter()
            _, _, term, trunc, info = env.step(action)
            out.steps.append(time.perf_counter() - t)
            if term or trunc:
                out.episodes += 1
                out.successes += int(info["success"])
                del live[i]
                if todo:
                    begin(i)
    out.wall, out.cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    for env in envs:
        env.close()
    return out


def _proc(args: tuple[int, str, int, bool, float]) -> Timings:
    episodes, split, offset, warm, think = args
    return run_envs(1, episodes, split, offset, warm, think)


def report(name: str, t: Timings) -> None:
    ms = lambda xs, q: 1000 * float(np.percentile(xs, q))  # noqa: E731
    print(
        f"{name:<22} reset p50 {ms(t.resets, 50):6.0f} ms  p99 {ms(t.resets, 99):6.0f} ms | "
        f"step p50 {ms(t.steps, 50):5.0f} ms  p99 {ms(t.steps, 99):6.0f} ms | "
        f"{t.episodes / t.wall * 60:5.1f} episodes/min | {len(t.steps) / t.wall:5.1f} steps/s | "
        f"CPU/reset {1000 * t.reset_cpu / len(t.resets):4.0f} ms  "
        f"CPU/step {1000 * (t.cpu - t.reset_cpu) / len(t.steps):3.0f} ms | "
        f"success {t.successes}/{t.episodes}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20, help="episodes per configuration")
    p.add_argument("--envs", type=int, nargs="*", default=[1, 4], help="envs in one process")
    p.add_argument("--procs", type=int, nargs="*", default=[4], help="processes with one env each")
    p.add_argument("--split", default="test", choices=["test", "ood"])
    p.add_argument(
        "--no-warm", dest="warm", action="store_false", help="no spare context (warm_spare=False)"
    )
    p.add_argument(
        "--think", type=float, default=0.0, help="seconds of agent think time before each step"
    )
    args = p.parse_args()
    for n in args.envs:
        report(
            f"{n} env(s), 1 process",
            run_envs(n, args.episodes, args.split, warm=args.warm, think=args.think),
        )
    for n in args.procs:
        per = max(1, args.episodes // n)
        start = time.perf_counter()
        with mp.get_context("spawn").Pool(n) as pool:
            parts = pool.map(
                _proc, [(per, args.split, k * per, args.warm, args.think) for k in range(n)]
            )
        total = Timings()
        for part in parts:
            total.merge(part)
        total.wall = time.perf_counter() - start
        report(f"{n} processes x 1 env", total)


if __name__ == "__main__":
    main()
