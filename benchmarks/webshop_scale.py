"""WebShop catalog at scale: build time, load time, peak RSS and search latency.

Usage:
    .venv/bin/python benchmarks/webshop_scale.py --size 1000000 [--queries 2000]

The build runs in this process (skipped when the catalog is already cached; --rebuild forces
it into a fresh cache dir); load, RSS and search are measured in a fresh subprocess, so the
figures are those of a user who opens an already-built catalog. Search latency is measured on
the raw index (no per-query cache) for three query families from train goals: the goal's
keyword query (the expert's first search), its last three words, and the whole instruction
pasted as the query.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

MEASURE = r"""
import json, resource, sys, time
import numpy as np
t0 = time.perf_counter()
from earlyexp.envs.webshop.catalog import load_catalog, search_terms
from earlyexp.envs.webshop.goals import make_goal
size, n = int(sys.argv[1]), int(sys.argv[2])
t1 = time.perf_counter()
cat = load_catalog(size)
t2 = time.perf_counter()
rng = np.random.default_rng(0)
goals = [make_goal(cat, rng, "train") for _ in range(n)]
queries = [g.query for g in goals]
short = [" ".join(q.split()[-3:]) for q in queries]  # 3-word queries, e.g. "mix 2 pound"
whole = [g.instruction for g in goals]  # the instruction pasted as the query
cat.index.search("warm up", 50)
out = {"import_s": t1 - t0, "load_s": t2 - t1}
for name, qs in (("goal", queries), ("short", short), ("instruction", whole)):
    wall, cpu = [], []
    for q in qs:
        terms = search_terms(q)  # what the env sends: distinct words, no stopwords
        s, c = time.perf_counter(), time.process_time()
        cat.index.search(terms, 50)  # the raw index, not the env's per-query cache
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - s)
    for kind, lat in (("wall", wall), ("cpu", cpu)):
        lat = np.array(lat) * 1000
        out[f"{name}_{kind}"] = [float(np.percentile(lat, p)) for p in (50, 90, 99)]
out["queries"] = n
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so after a build in the
# parent it would report the build's peak instead of this process's
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
out["peak_rss_mb"] = (
    int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
) / 1024
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rebuild", action="store_true", help="build into a fresh cache dir")
    args = parser.parse_args()
    if args.rebuild:
        os.environ["EARLYEXP_CACHE"] = tempfile.mkdtemp(prefix="earlyexp-bench-")
    from earlyexp.envs.webshop.catalog import build_catalog, catalog_dir

    folder = catalog_dir(args.size, 0)
    if not (folder / "meta.json").exists():
        t = time.perf_counter()
        build_catalog(args.size, 0, folder, progress=True)
        print(
            f"build: {time.perf_counter() - t:.1f} s "
            f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
        )
    meta = json.loads((folder / "meta.json").read_text())
    disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    print(
        f"catalog {args.size:,} products at {folder}: built in {meta['build_seconds']:.1f} s, "
        f"{disk:.0f} MB on disk"
    )
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(args.size), str(args.queries)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"load (fresh process): {r['load_s']:.2f} s (+ {r['import_s']:.2f} s imports); "
        f"peak RSS after {3 * r['queries']} searches: {r['peak_rss_mb']:.0f} MB"
    )
    kinds = (
        ("goal", "goal keyword queries"),
        ("short", "3-word queries"),
        ("instruction", "whole-instruction queries"),
    )
    for name, what in kinds:
        for kind in ("wall", "cpu"):
            p50, p90, p99 = r[f"{name}_{kind}"]
            print(
                f"search latency, {what}, {kind} time (top 50, tantivy BM25): "
                f"p50 {p50:.3f} ms, p90 {p90:.3f} ms, p99 {p99:.3f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
