"""WebShop catalog at scale: build time, load time, peak RSS and search latency.

Usage:
    .venv/bin/python benchmarks/webshop_scale.py --size 1000000 [--queries 2000]

The build runs in this process (skipped when the catalog is already cached; --rebuild forces
it into a fresh cache dir); load, RSS and search are measured in a fresh subprocess, so the
figures are those of a user who opens an already-built catalog.
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
from earlyexp.envs.webshop.catalog import load_catalog
from earlyexp.envs.webshop.goals import make_goal
size, n = int(sys.argv[1]), int(sys.argv[2])
t1 = time.perf_counter()
cat = load_catalog(size)
t2 = time.perf_counter()
rng = np.random.default_rng(0)
queries = [make_goal(cat, rng, "train").query for _ in range(n)]
words = [q.split() for q in queries]
short = [" ".join(w[-3:]) for w in words]  # e.g. "party mix 2 pound"-like partial queries
lat = []
for q in queries + short:
    s = time.perf_counter()
    hits = cat.index.search(q, 50)  # the raw index: no per-query cache
    lat.append(time.perf_counter() - s)
lat = np.array(lat) * 1000
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "queries": len(lat),
                  "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
                  "p99_ms": float(np.percentile(lat, 99)), "peak_rss_mb": rss}))
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
        f"peak RSS after {r['queries']} searches: {r['peak_rss_mb']:.0f} MB"
    )
    print(
        f"search latency (top 50, tantivy BM25): p50 {r['p50_ms']:.3f} ms, "
        f"p90 {r['p90_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
