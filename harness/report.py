"""Tables and plots from bench cells: success with Wilson 95% intervals, ID vs OOD."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earlyexp.agents.records import EpisodeRecord
from earlyexp.harness.stats import wilson_interval

if TYPE_CHECKING:
    from earlyexp.harness.bench import CellResult


@dataclass(frozen=True)
class SplitSummary:
    """Pooled metrics of one method on one env's panel (over seeds)."""

    n: int
    success: float
    ci_low: float
    ci_high: float
    score: float
    invalid_rate: float
    steps: float
    tokens: float


def summarize(records: list[EpisodeRecord]) -> SplitSummary | None:
    """Pool ``records`` into a :class:`SplitSummary` (None when empty)."""
    n = len(records)
    if n == 0:
        return None
    wins = sum(r.success for r in records)
    lo, hi = wilson_interval(wins, n)
    steps = sum(r.steps for r in records)
    return SplitSummary(
        n=n, success=wins / n, ci_low=lo, ci_high=hi,
        score=sum(r.score for r in records) / n,
        invalid_rate=sum(r.invalid for r in records) / max(steps, 1),
        steps=steps / n, tokens=sum(r.tokens for r in records) / n,
    )  # fmt: skip


def summary_rows(cells: list[CellResult]) -> list[dict[str, Any]]:
    """One row per (env, method): ID (test) and OOD summaries pooled over seeds."""
    pooled: dict[tuple[str, str], list[EpisodeRecord]] = defaultdict(list)
    errors: dict[tuple[str, str], str] = {}
    seeds: dict[tuple[str, str], list[int]] = defaultdict(list)
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    for cell in cells:
        key = (cell.env, cell.method)
        seeds[key].append(cell.seed)
        seconds[key] += cell.seconds
        if cell.status != "done":
            errors[key] = cell.error or "not finished"
        pooled[key] += cell.episodes
    rows = []
    for (env, method), recs in sorted(pooled.items()):
        ids = summarize([r for r in recs if r.split == "test"])
        ood = summarize([r for r in recs if r.split == "ood"])
        rows.append({
            "env": env, "method": method, "seeds": sorted(seeds[(env, method)]),
            "id": asdict(ids) if ids else None, "ood": asdict(ood) if ood else None,
            "error": errors.get((env, method)), "seconds": round(seconds[(env, method)], 1),
        })  # fmt: skip
    return rows


def _pct(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{100 * s['success']:.1f} [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table: ID and OOD success (%) with Wilson 95% intervals and more."""
    head = (
        "| env | method | ID success % [95% CI] | OOD success % [95% CI] | ID score | OOD score "
        "| invalid % | steps | tokens | n (ID/OOD) | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        i, o = r["id"], r["ood"]
        both = [s for s in (i, o) if s]
        n_steps = sum(s["steps"] * s["n"] for s in both)
        invalid = sum(s["invalid_rate"] * s["steps"] * s["n"] for s in both) / max(n_steps, 1e-9)
        steps = n_steps / max(sum(s["n"] for s in both), 1)
        tokens = sum(s["tokens"] * s["n"] for s in both) / max(sum(s["n"] for s in both), 1)
        name = r["method"] + (" (error)" if r["error"] else "")
        lines.append(
            f"| {r['env'].removeprefix('EarlyExp/')} | {name} | {_pct(i)} | {_pct(o)} "
            f"| {i['score']:.3f} | {o['score']:.3f} | {100 * invalid:.1f} | {steps:.1f} "
            f"| {tokens:.0f} | {i['n']}/{o['n']} | {r.get('seconds', 0):.0f} |"
            if i and o
            else f"| {r['env'].removeprefix('EarlyExp/')} | {name} | {_pct(i)} | {_pct(o)} | - | - | - | - | - | - | - |"
        )
    return "\n".join(lines)


def plot_success(rows: list[dict[str, Any]], path: Path) -> bool:
    """Bar chart of ID vs OOD success with Wilson intervals, one panel per env (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return False
    envs = sorted({r["env"] for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=False):
        sub = [r for r in rows if r["env"] == env and r["id"] and r["ood"]]
        xs = range(len(sub))
        for off, key, label in ((-0.2, "id", "ID"), (0.2, "ood", "OOD")):
            vals = [100 * r[key]["success"] for r in sub]
            err = [[max(0.0, v - 100 * r[key]["ci_low"]) for v, r in zip(vals, sub, strict=False)],
                   [max(0.0, 100 * r[key]["ci_high"] - v) for v, r in zip(vals, sub, strict=False)]]  # fmt: skip
            ax.bar([x + off for x in xs], vals, 0.4, yerr=err, capsize=3, label=label)
        ax.set_xticks(list(xs), [r["method"] for r in sub], rotation=30)
        ax.set_title(env.removeprefix("EarlyExp/"))
        ax.set_ylim(0, 100)
        ax.set_ylabel("success %")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return True


def plot_curves(out: Path) -> list[Path]:
    """One learning-curve figure per cell that wrote ``curve.json`` (RL methods).

    Success and score of the greedy evaluations against iterations, samples and wall time
    (PNG and PDF).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return []
    written = []
    for path in sorted((out / "cells").glob("*/curve.json")):
        evals = json.loads(path.read_text()).get("eval", [])
        if not evals:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
        for ax, (key, label) in zip(
            axes,
            (("iteration", "iteration"), ("samples", "episodes sampled"), ("wall_s", "wall s")),
            strict=True,
        ):
            xs = [e[key] for e in evals]
            ax.plot(xs, [100 * e["success"] for e in evals], marker="o", label="success %")
            ax.plot(xs, [100 * e["score"] for e in evals], marker=".", label="score x 100")
            ax.set_xlabel(label)
            ax.set_ylim(0, 100)
        axes[0].set_ylabel("test subset")
        axes[0].legend()
        fig.suptitle(path.parent.name)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            target = out / "plots" / f"curve_{path.parent.name}.{ext}"
            fig.savefig(target, dpi=110)
            written.append(target)
        plt.close(fig)
    return written


def reflexion_section(out: Path, cells: list[CellResult]) -> str:
    """Markdown: Reflexion's success % after each trial, pooled over seeds ("" when none ran).

    Read from the ``success_at_k.json`` each Reflexion cell writes; the main table's row of
    such a cell is its success@k.
    """
    from earlyexp.harness.bench import cell_name

    solved: dict[tuple[str, str, str], list[list[float]]] = defaultdict(list)  # [n, wins@1..k]
    providers: set[str] = set()
    for c in cells:
        path = out / "cells" / cell_name(c.method, c.env, c.seed) / "success_at_k.json"
        if c.status != "done" or not path.exists():
            continue
        data = json.loads(path.read_text())
        providers.add(data["provider"])
        for split, s in data["splits"].items():
            solved[(c.env, c.method, split)].append([s["n"], *(x * s["n"] for x in s["success"])])
    if not solved:
        return ""
    k = max(len(runs[0]) - 1 for runs in solved.values())
    lines = [
        "## Reflexion success@1..k",
        "",
        "Success % of a panel's tasks solved within the first j trials (after a failed trial "
        "the agent writes a reflection and retries with its last reflections in context; no "
        f"weights change). Reflections written by: {', '.join(sorted(providers))}.",
        "",
        "| env | method | split | n | " + " | ".join(f"@{j}" for j in range(1, k + 1)) + " |",
        "|---|---|---|---|" + "---|" * k,
    ]
    for (env, method, split), runs in sorted(
        solved.items(), key=lambda x: (*x[0][:2], x[0][2] != "test")
    ):
        n = sum(run[0] for run in runs)
        # a seed run with fewer trials keeps its last value (a solved task stays solved)
        wins = [sum(run[min(j, len(run) - 1)] for run in runs) for j in range(1, k + 1)]
        cols = " | ".join(f"{100 * w / max(n, 1):.1f}" for w in wins)
        lines.append(f"| {env.removeprefix('EarlyExp/')} | {method} | {split} | {n:.0f} | {cols} |")
    return "\n\n" + "\n".join(lines)


def write_report(out: Path, cells: list[CellResult], cfg: Any) -> str:
    """Write results.json, table.md and plots/success.png into ``out``; return the table."""
    rows = summary_rows(cells)
    table = markdown_table(rows)
    (out / "plots").mkdir(exist_ok=True)
    plotted = plot_success(rows, out / "plots" / "success.png")
    plot_curves(out)
    results = {"config": asdict(cfg), "summary": rows, "cells": [c.to_json() for c in cells]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    note = "" if plotted else "\n\n(plots skipped: install the `report` extra for matplotlib)"
    wall = sum(c.seconds for c in cells)
    cpu = sum(c.cpu_seconds for c in cells)
    (out / "table.md").write_text(
        f"# earlyexp bench: profile {cfg.profile}\n\n"
        "Success = the env's success flag; ID = the `test` panel, OOD = the `ood` panel; "
        "intervals are Wilson 95%. `wall s`: seconds the row's cells took.\n\n"
        + table
        + reflexion_section(out, cells)
        + f"\n\nCells: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU of the bench process."
        + note
        + "\n"
    )
    return table
