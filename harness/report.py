"""A run's report, from its cells: ``results.json``, tables and figures.

:func:`write_report` (the end of ``earlyexp bench``) gathers everything the report shows into
``results.json``: the summary rows, every episode, each cell's learning curve, Reflexion
success@k and branching counts (copied from the cell folders) and the expert's step count on
every evaluated task (for the difficulty breakdown). :func:`render` then draws every table and
figure from that dictionary alone, so ``earlyexp report RUN_DIR`` (:func:`report_run`) redraws
a run from its ``results.json`` without the cell folders. Files written::

    results.json
    table.md  table.csv  table.tex              ID/OOD success with Wilson 95% intervals, ...
    seeds.csv                                   success of every seed (rows run with 2+ seeds)
    difficulty.csv  difficulty.tex              success by buckets of the expert's steps
    plots/success.{png,pdf}                     one panel per env, methods in the run's order
    plots/curves.{png,pdf}                      RL learning curves (samples, wall time)
    plots/difficulty.{png,pdf}
"""

from __future__ import annotations

import json
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earlyexp import __version__
from earlyexp.agents.records import EpisodeRecord
from earlyexp.harness import difficulty, figures
from earlyexp.harness.stats import wilson_interval
from earlyexp.harness.tables import (
    csv_table,
    difficulty_csv,
    difficulty_latex,
    difficulty_markdown,
    latex_table,
    markdown_table,
    seeds_csv,
    seeds_markdown,
    short_env,
)

if TYPE_CHECKING:
    from earlyexp.harness.bench import CellResult

__all__ = ["markdown_table", "render", "report_run", "summarize", "summary_rows", "write_report"]

CELL_FILES = {"curve": "curve.json", "success_at_k": "success_at_k.json",
              "branch_stats": "branch_stats.json", "sft_curve": "sft_curve.json"}  # fmt: skip
"""Small JSON files of a cell's folder that ``results.json`` keeps (under ``cell_files``)."""


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
    """One row per (env, method), in the run's order: ID (test) and OOD pooled over seeds.

    The order is the cells' (the bench plans them env by env, methods as given, a starting
    point's cell before the cells that start from it), never alphabetical.
    """
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
    return [
        {"env": env, "method": method, "seeds": sorted(seeds[(env, method)]),
         **split_summaries(recs),
         "error": errors.get((env, method)), "seconds": round(seconds[(env, method)], 1)}
        for (env, method), recs in pooled.items()
    ]  # fmt: skip


def split_summaries(records: list[EpisodeRecord]) -> dict[str, dict[str, Any] | None]:
    """``{"id": ..., "ood": ...}``: the :class:`SplitSummary` of the test and ood episodes as dicts."""
    out: dict[str, dict[str, Any] | None] = {}
    for key, split in (("id", "test"), ("ood", "ood")):
        s = summarize([r for r in records if r.split == split])
        out[key] = asdict(s) if s else None
    return out


def seed_rows(cells: list[CellResult]) -> list[dict[str, Any]]:
    """Per (env, method) run with two or more seeds: each seed's ID and OOD success and n.

    Rows keep the run's order; ``seeds`` maps a seed to ``{"id": SplitSummary | None,
    "ood": ...}`` as dicts, so the spread between seeds can be read beside the pooled row.
    """
    by_row: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for cell in cells:
        if cell.status != "done":
            continue
        by_row[(cell.env, cell.method)][cell.seed] = split_summaries(cell.episodes)
    return [
        {"env": env, "method": method, "seeds": dict(sorted(seeds.items()))}
        for (env, method), seeds in by_row.items()
        if len(seeds) >= 2
    ]


def _key(method: str, env: str, seed: int) -> str:
    """A cell's file-safe name (its folder under ``cells/``)."""
    from earlyexp.harness.bench import cell_name

    return cell_name(method, env, seed)


def read_cell_files(out: Path, cells: list[CellResult]) -> dict[str, dict[str, Any]]:
    """``{cell: {"curve": ..., ...}}``: the :data:`CELL_FILES` found in the cells' folders."""
    found: dict[str, dict[str, Any]] = {}
    for cell in cells:
        name_of_cell = _key(cell.method, cell.env, cell.seed)
        for key, name in CELL_FILES.items():
            path = out / "cells" / name_of_cell / name
            if path.is_file():
                try:
                    found.setdefault(name_of_cell, {})[key] = json.loads(path.read_text())
                except (OSError, ValueError) as err:
                    warnings.warn(f"Skipped unreadable {path}: {err}", RuntimeWarning, stacklevel=2)
    return found


def build_results(
    out: Path, cells: list[CellResult], config: dict[str, Any], previous: dict[str, Any] | None,
    *, measure: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """The content of ``results.json``: summary, cells, cell files and expert step counts.

    ``previous`` (an earlier ``results.json`` of the run, or None) keeps what is no longer on
    disk: cell files of removed folders and expert step counts measured before. With
    ``measure``, the scripted expert is played on evaluated tasks whose count is unknown.
    """
    previous = previous or {}
    files = {**previous.get("cell_files", {}), **read_cell_files(out, cells)}
    keys = {_key(c.method, c.env, c.seed) for c in cells}
    steps = difficulty.merge(difficulty.from_expert_cells(cells), previous.get("expert_steps", {}))
    need = difficulty.missing(cells, steps)
    if measure and need:
        steps = difficulty.merge(steps, difficulty.measure_expert_steps(need))
    return {
        "earlyexp_version": __version__,
        "config": config,
        "summary": summary_rows(cells),
        "cells": [c.to_json() for c in cells],
        "cell_files": {k: v for k, v in files.items() if k in keys},
        "expert_steps": steps,
    }


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out: Path, cells: list[CellResult], cfg: Any) -> str:
    """Write ``results.json``, the tables and the figures into ``out``; return the table."""
    previous = _load(out / "results.json") if (out / "results.json").exists() else None
    config = asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else dict(cfg)
    results = build_results(out, cells, config, previous)
    _write(out / "results.json", json.dumps(results, indent=1))
    render(out, results)
    return markdown_table(results["summary"])


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_run(run_dir: Path | str, *, measure: bool = True) -> list[Path]:
    """Redraw every table and figure of a run folder from its ``results.json``.

    A ``results.json`` written before it kept cell files and expert step counts is completed
    first (from the cell folders when they are there; with ``measure``, by playing the
    expert) and saved, so later reports need nothing else. Returns the files written.
    """
    run = Path(run_dir)
    path = run / "results.json"
    results = _load(path)
    if results is None or not isinstance(results.get("cells"), list):
        raise ValueError(
            f"Expect a run folder with a results.json written by earlyexp bench, actually: "
            f"{path} is {'missing' if not path.exists() else 'not one'}"
        )
    cells = _cells(results)
    fresh = build_results(run, cells, results.get("config", {}), results, measure=measure)
    if {k: fresh[k] for k in ("cell_files", "expert_steps")} != {
        k: results.get(k) for k in ("cell_files", "expert_steps")
    }:
        _write(path, json.dumps({**results, **fresh}, indent=1))
    return render(run, fresh)


def _cells(results: dict[str, Any]) -> list[CellResult]:
    from earlyexp.harness.bench import CellResult

    return [CellResult.from_json(c) for c in results["cells"]]


def curves_of(results: dict[str, Any], kind: str = "curve") -> list[dict[str, Any]]:
    """The learning curves in ``results``, with the tasks each point evaluated.

    ``kind``: ``"curve"`` (RL cells, by iteration) or ``"sft_curve"`` (IL with ``eval_every``,
    by SFT step).
    """
    out = []
    for c in results["cells"]:
        curve = results.get("cell_files", {}).get(_key_of(c), {}).get(kind)
        if curve and curve.get("eval"):
            out.append({"env": c["env"], "method": c["method"], "seed": c["seed"],
                        "eval": curve["eval"], "n": c["config"].get("eval_subset")})  # fmt: skip
    return out


def _key_of(cell_json: dict[str, Any]) -> str:
    return _key(cell_json["method"], cell_json["env"], cell_json["seed"])


def render(out: Path, results: dict[str, Any]) -> list[Path]:
    """Write the tables and figures of ``results`` (a ``results.json``) into ``out``; list them."""
    cells = _cells(results)
    rows = results["summary"]
    config = results.get("config", {})
    steps = results.get("expert_steps", {})
    buckets = difficulty.breakdown(cells, steps)
    spread = {
        (c.env, split): difficulty.tasks_per_bucket(
            steps, c.env, split, [r.task for r in c.episodes if r.split == split]
        )
        for c in cells
        for split in ("test", "ood")
    }
    table = markdown_table(rows)
    _write(out / "table.csv", csv_table(rows))
    per_seed = seed_rows(cells)
    if per_seed:
        _write(out / "seeds.csv", seeds_csv(per_seed))
    title = f"earlyexp bench: profile {config.get('profile')}, model {config.get('model')}"
    _write(out / "table.tex", latex_table(rows, title))
    _write(out / "difficulty.csv", difficulty_csv(buckets))
    _write(out / "difficulty.tex", difficulty_latex(buckets))
    seeds = sorted({c.seed for c in cells})
    plots = _figures(out / "plots", rows, results, buckets, seeds)
    wall, cpu = sum(c.seconds for c in cells), sum(c.cpu_seconds for c in cells)
    note = (
        ""
        if figures.available()
        else "\n\n(plots skipped: install the `report` extra for matplotlib)"
    )
    sections = [
        seeds_markdown(per_seed),
        reflexion_section(results),
        sft_curve_section(results),
        difficulty_markdown(buckets, spread),
    ]
    _write(
        out / "table.md",
        f"# {title}\n\n"
        "Success = the env's success flag; ID = the `test` panel, OOD = the `ood` panel; "
        "intervals are Wilson 95%. `wall s`: seconds the row's cells took. "
        "The same numbers: `table.csv`, `table.tex` (booktabs).\n\n"
        + table
        + "".join(f"\n\n{s}" for s in sections if s)
        + f"\n\nCells: {duration(wall)} wall, {duration(cpu)} CPU of the bench process."
        + note
        + "\n",
    )
    tables = ("table.md", "table.csv", "table.tex", "difficulty.csv", "difficulty.tex")
    return [out / name for name in tables] + [out / "seeds.csv"] * bool(per_seed) + plots


def duration(seconds: float) -> str:
    """``"42.0 s"`` under two minutes, else ``"3.5 min"`` (or hours past two)."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _figures(
    plots: Path, rows: list[dict[str, Any]], results: dict[str, Any],
    buckets: list[difficulty.BucketRow], seeds: list[int],
) -> list[Path]:  # fmt: skip
    """Draw the run's figures and list their files; one that fails warns, the others are drawn."""
    plots.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Callable[[], list[Path]]]] = [
        ("success", lambda: figures.plot_success(rows, plots / "success.png", seeds)),
        ("curves", lambda: figures.plot_curves(curves_of(results), plots / "curves.png")),
        (
            "sft_curves",
            lambda: figures.plot_curves(
                curves_of(results, "sft_curve"), plots / "sft_curves.png", sft=True
            ),
        ),
        ("difficulty", lambda: figures.plot_difficulty(buckets, plots / "difficulty.png")),
    ]
    drawn: list[Path] = []
    for name, job in jobs:
        try:
            drawn += job()
        except Exception as err:  # a figure must not lose the tables of a finished run
            warnings.warn(f"Figure {name} not drawn: {type(err).__name__}: {err}", RuntimeWarning,
                          stacklevel=2)  # fmt: skip
    return drawn


def sft_curve_section(results: dict[str, Any]) -> str:
    """Markdown: the first test success and the best point of each IL cell's SFT curve.

    Read from the ``sft_curve.json`` of IL cells with ``eval_every`` ("" when none wrote one).
    """
    curves = curves_of(results, "sft_curve")
    if not curves:
        return ""
    lines = [
        "## SFT learning curves",
        "",
        "Greedy success on the first n test tasks every `eval_every` SFT steps "
        "(`sft_curve.json`; the learning rate decays over the cell's whole `steps`).",
        "",
        "| env | method | seed | n | first success: step (wall s) | best: success % at step |",
        "|---|---|---|---|---|---|",
    ]
    for c in curves:
        first = next((e for e in c["eval"] if e["success"] > 0), None)
        best = max(c["eval"], key=lambda e: (e["success"], -e["iteration"]))
        at = f"{first['iteration']} ({first['wall_s']:.0f})" if first else "none"
        lines.append(f"| {short_env(c['env'])} | {c['method']} | {c['seed']} | {c['n']} | {at} "
                     f"| {100 * best['success']:.1f} at {best['iteration']} |")  # fmt: skip
    return "\n".join(lines)


def reflexion_section(results: dict[str, Any]) -> str:
    """Markdown: Reflexion's success % after each trial, pooled over seeds ("" when none ran).

    Read from the ``success_at_k.json`` each Reflexion cell writes (kept in ``results.json``);
    the main table's row of such a cell is its success@k.
    """
    solved: dict[tuple[str, str, str], list[list[float]]] = defaultdict(list)  # [n, wins@1..k]
    providers: set[str] = set()
    for c in results["cells"]:
        data = results.get("cell_files", {}).get(_key_of(c), {}).get("success_at_k")
        if c.get("status", "done") != "done" or not data:
            continue
        providers.add(data["provider"])
        for split, s in data["splits"].items():
            solved[(c["env"], c["method"], split)].append(
                [s["n"], *(x * s["n"] for x in s["success"])]
            )
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
        lines.append(f"| {short_env(env)} | {method} | {split} | {n:.0f} | {cols} |")
    return "\n".join(lines)
