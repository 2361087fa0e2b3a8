"""Throughput of EarlyExp/SearchQA-v0 and EarlyExp/ToolCall-v0, and BM25 latency at 100k articles.

Prints steps/s (expert and random policy) of both envs and the search latency (p50/p99) on
a freshly built 100k-article encyclopedia. Run:

    .venv/bin/python benchmarks/tools_throughput.py            # everything
    .venv/bin/python benchmarks/tools_throughput.py --articles 20000 --episodes 100
    .venv/bin/python benchmarks/tools_throughput.py --part latency
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np

import earlyexp.envs  # noqa: F401  (registers the ids)
from earlyexp.envs.searchqa.corpus import get_corpus
from earlyexp.envs.searchqa.questions import generate_task
from earlyexp.envs.searchqa.world import generate_world


@dataclass
class Args:
    """Benchmark settings."""

    episodes: int = 200
    """episodes per (env, policy, split)"""
    articles: int = 100_000
    """size of the encyclopedia for the latency benchmark"""
    queries: int = 2000
    """search queries timed on the large encyclopedia"""
    repeats: int = 3
    """times each query is timed"""
    seed: int = 0
    """seed of the random policy"""
    part: str = "all"
    """what to run: all, envs (steps/s table) or latency (100k-article search)"""


def parse() -> Args:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in fields(Args):
        p.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    return Args(**vars(p.parse_args()))


def throughput(env_id: str, policy: str, split: str, episodes: int, seed: int, **kwargs) -> dict:
    env = gym.make(env_id, **kwargs)
    raw = env.unwrapped
    env.action_space.seed(seed)
    size = raw.panel_sizes[split]
    steps, scores, t0 = 0, [], time.perf_counter()
    for ep in range(episodes):
        env.reset(seed=seed + ep, options={"split": split, "task": ep % size})
        done = False
        while not done:
            action = raw.expert_action() if policy == "expert" else env.action_space.sample()
            _, reward, term, trunc, _ = env.step(action)
            steps += 1
            done = term or trunc
        scores.append(reward)
    dt = time.perf_counter() - t0
    env.close()
    return {
        "steps/s": steps / dt,
        "ms/step": 1000 * dt / steps,
        "steps": steps,
        "score": float(np.mean(scores)),
    }


def envs_table(a: Args) -> None:
    print(
        f"{'env':<22}{'policy':<8}{'split':<6}{'steps/s':>10}{'ms/step':>9}{'steps':>7}{'score':>7}"
    )
    for env_id in ("EarlyExp/SearchQA-v0", "EarlyExp/ToolCall-v0"):
        gym.make(env_id).reset(options={"split": "test", "task": 0})  # warm caches (corpus, index)
        for policy in ("expert", "random"):
            for split in ("test", "ood"):
                r = throughput(env_id, policy, split, a.episodes, a.seed)
                print(
                    f"{env_id:<22}{policy:<8}{split:<6}{r['steps/s']:>10.0f}{r['ms/step']:>9.2f}"
                    f"{r['steps']:>7}{r['score']:>7.2f}"
                )


def latency(a: Args) -> None:
    t0 = time.perf_counter()
    generate_world(0, a.articles)
    t_world = time.perf_counter() - t0
    t0 = time.perf_counter()
    corpus = get_corpus(0, a.articles, cache=False)  # world + in-memory index, kept for the env
    t_build = time.perf_counter() - t0
    rng = np.random.default_rng(a.seed)
    tasks = [generate_task(corpus, rng, "ood", 5) for _ in range(a.queries // 3)]
    queries = [h.query for t in tasks for h in t.hops][: a.queries]
    for q in queries[:50]:
        corpus.search(q, 5)  # warm up
    lat = np.zeros((len(queries), a.repeats))  # (Q, R) seconds
    for r in range(a.repeats):
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            corpus.search(q, 5)
            lat[i, r] = time.perf_counter() - t0
    kwargs = {"n_articles": a.articles, "cache": False}
    r = throughput("EarlyExp/SearchQA-v0", "expert", "test", a.episodes, a.seed, **kwargs)
    ms, best = lat.ravel() * 1000, lat.min(axis=1) * 1000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_pass = len(corpus.world.passages)
    print(
        f"\n{a.articles} articles, {n_pass} passages: world {t_world:.1f} s, "
        f"world + index {t_build:.1f} s"
    )
    print(f"peak RSS {rss:.0f} MiB")
    print(
        f"search top-5, {len(queries)} expert queries x {a.repeats}: "
        f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
        f"mean {ms.mean():.2f} ms"
    )
    print(
        f"per-query best of {a.repeats} (filters scheduler noise): p50 "
        f"{np.percentile(best, 50):.2f} ms, p99 {np.percentile(best, 99):.2f} ms"
    )
    print(
        f"SearchQA-v0 expert, {a.articles} articles: {r['steps/s']:.0f} steps/s, "
        f"score {r['score']:.2f}"
    )


def main() -> None:
    a = parse()
    if a.part not in ("all", "envs", "latency"):
        raise ValueError(f"Expect --part in all, envs, latency, actually: {a.part!r}")
    if a.part in ("all", "envs"):
        envs_table(a)
    if a.part in ("all", "latency"):
        latency(a)


if __name__ == "__main__":
    main()
