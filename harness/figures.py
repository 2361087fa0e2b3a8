"""Figures of a run, drawn from ``results.json`` alone (PNG at 200 dpi and PDF, for papers).

- :func:`plot_success`: one figure per run, a panel per env, methods in the run's order, ID
  and OOD bars side by side with Wilson 95% intervals; n under each method.
- :func:`plot_curves`: learning curves of the RL methods, success against episodes sampled
  and against wall time (mean over seeds, each seed thin).
- :func:`plot_difficulty`: success by difficulty (buckets of the expert's steps).
- :func:`plot_ablation`: success against a swept config value (``earlyexp ablate``).

Every function returns the files it wrote (empty without matplotlib: the ``report`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from earlyexp.harness.difficulty import LABELS, BucketRow
from earlyexp.harness.tables import short_env

DPI = 200
ID_OOD = (("id", "ID (test panel)", "#4C72B0"), ("ood", "OOD (ood panel)", "#DD8452"))
WILSON = "error bars: 95% Wilson interval"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return None
    return plt


def available() -> bool:
    """Whether matplotlib (the ``report`` extra) is installed."""
    return _pyplot() is not None


def _save(plt: Any, fig: Any, path: Path, caption: str) -> list[Path]:
    """Write ``path`` (PNG) and its PDF with ``caption`` under the axes; close the figure."""
    fig.text(0.01, 0.005, caption, ha="left", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.035 + 0.012 * caption.count("\n"), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for target in (path.with_suffix(".png"), path.with_suffix(".pdf")):
        fig.savefig(target, dpi=DPI)
        written.append(target)
    plt.close(fig)
    return written


def _errors(vals: list[float], stats: list[dict]) -> list[list[float]]:
    return [
        [max(0.0, v - 100 * s["ci_low"]) for v, s in zip(vals, stats, strict=True)],
        [max(0.0, 100 * s["ci_high"] - v) for v, s in zip(vals, stats, strict=True)],
    ]


def color(i: int, count: int) -> Any:
    """The ``i``-th of ``count`` line colours (tab10, or tab20 past ten)."""
    import matplotlib

    return matplotlib.colormaps["tab20" if count > 10 else "tab10"](
        i % 20 if count > 10 else i % 10
    )


def _grid(plt: Any, panels: int, width: float, height: float, cols: int = 3) -> tuple[Any, list]:
    cols = max(1, min(cols, panels))
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.4), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def plot_success(rows: list[dict[str, Any]], path: Path, seeds: Sequence[int] = ()) -> list[Path]:
    """ID vs OOD success bars with Wilson intervals, one panel per env (``rows``' order kept)."""
    plt = _pyplot()
    envs = list(dict.fromkeys(r["env"] for r in rows if r["id"] or r["ood"]))
    if plt is None or not envs:
        return []
    widest = max(sum(1 for r in rows if r["env"] == e) for e in envs)
    fig, axes = _grid(
        plt, len(envs), max(3.4, 1.2 + 0.55 * widest), 3.4, cols=2 if widest > 5 else 3
    )
    for ax, env in zip(axes, envs, strict=True):
        sub = [r for r in rows if r["env"] == env and (r["id"] or r["ood"])]
        xs = list(range(len(sub)))
        for off, (key, label, color) in zip((-0.2, 0.2), ID_OOD, strict=True):
            pts = [(x, r[key]) for x, r in zip(xs, sub, strict=True) if r[key]]
            vals = [100 * s["success"] for _, s in pts]
            ax.bar([x + off for x, _ in pts], vals, 0.4, color=color, label=label,
                   yerr=_errors(vals, [s for _, s in pts]), capsize=2, ecolor="0.25",
                   error_kw={"elinewidth": 0.8})  # fmt: skip
            for (x, st), v in zip(pts, vals, strict=True):  # a 0% bar still shows its value
                top = 100 * st["ci_high"] + 1
                ax.text(x + off, top, f"{v:.0f}", ha="center", va="bottom", fontsize=6)
        labels = [f"{r['method']}\nn={_n(r)}" for r in sub]
        ax.set_xticks(xs, labels, rotation=35, ha="right", fontsize=7)
        ax.set_title(short_env(env), fontsize=9)
        ax.set_xlim(-0.6, widest - 0.4)  # the same bar width in every panel
        ax.set_ylim(0, 110)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("success %")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    seed_note = f"pooled over seeds {', '.join(map(str, seeds))}; " if len(seeds) > 1 else ""
    caption = (
        f"Success % on the test (ID) and ood (OOD) panels; {seed_note}{WILSON}; "
        "n = episodes per bar (ID/OOD: tasks x seeds)."
    )
    return _save(plt, fig, path, caption)


def _n(row: dict[str, Any]) -> str:
    return "/".join(str(row[k]["n"]) if row[k] else "-" for k, _, _ in ID_OOD)


def _mean_curve(runs: list[list[dict]]) -> list[dict[str, float]]:
    """The mean of several seeds' eval points at the iterations every seed has."""
    common = set.intersection(*({e["iteration"] for e in run} for run in runs))
    out = []
    for it in sorted(common):
        pts = [next(e for e in run if e["iteration"] == it) for run in runs]
        keys = ("iteration", "samples", "wall_s", "success")
        out.append({k: sum(p[k] for p in pts) / len(pts) for k in keys})
    return out


def plot_curves(curves: list[dict[str, Any]], path: Path, sft: bool = False) -> list[Path]:
    """Success against episodes sampled and against wall time, a row of panels per env.

    ``curves``: ``{"env", "method", "seed", "eval": [{iteration, samples, wall_s, success,
    ...}], "n": tasks per point}`` per RL cell, in the run's order. ``sft``: IL's curves
    (``sft_curve.json``), against SFT steps instead of episodes.
    """
    plt = _pyplot()
    curves = [c for c in curves if c.get("eval")]
    if plt is None or not curves:
        return []
    envs = list(dict.fromkeys(c["env"] for c in curves))
    fig, axes = plt.subplots(len(envs), 2, figsize=(9, 3.1 * len(envs) + 0.4), squeeze=False)
    ns: set[int] = set()
    for (ax_s, ax_t), env in zip(axes, envs, strict=True):
        methods = list(dict.fromkeys(c["method"] for c in curves if c["env"] == env))
        for i, method in enumerate(methods):
            runs = [c for c in curves if (c["env"], c["method"]) == (env, method)]
            ns.update(c["n"] for c in runs if c.get("n"))
            rgb = color(i, len(methods))
            for ax, key in ((ax_s, "iteration" if sft else "samples"), (ax_t, "wall_s")):
                if len(runs) > 1:
                    for c in runs:
                        ax.plot([e[key] for e in c["eval"]],
                                [100 * e["success"] for e in c["eval"]],
                                color=rgb, alpha=0.25, lw=0.8)  # fmt: skip
                mean = _mean_curve([c["eval"] for c in runs])
                ax.plot([e[key] for e in mean], [100 * e["success"] for e in mean], color=rgb,
                        marker="o", ms=3, label=f"{method} ({len(runs)} seed{'s' * (len(runs) > 1)})")  # fmt: skip
        first = "SFT steps" if sft else "episodes sampled"
        for ax, label in ((ax_s, first), (ax_t, "wall time (s)")):
            ax.set_xlabel(label)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        ax_s.set_ylabel(f"success % ({short_env(env)})")
        ax_s.legend(fontsize=7)
    n_note = f"the first {'/'.join(map(str, sorted(ns)))} test tasks" if ns else "test tasks"
    caption = (
        f"Greedy success on {n_note} during {'SFT' if sft else 'RL training'} (the "
        "learning-curve subset, not the "
        "full panel); lines: mean over seeds, thin: each seed."
    )
    return _save(plt, fig, path, caption)


def plot_difficulty(rows: Sequence[BucketRow], path: Path) -> list[Path]:
    """Success against buckets of the expert's steps: a row per env, ID and OOD side by side."""
    plt = _pyplot()
    if plt is None or not rows:
        return []
    envs = list(dict.fromkeys(r.env for r in rows))
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.1 * len(envs) + 0.5), squeeze=False)
    for (ax_id, ax_ood), env in zip(axes, envs, strict=True):
        methods = list(dict.fromkeys(r.method for r in rows if r.env == env))
        for ax, split, name in ((ax_id, "test", "ID"), (ax_ood, "ood", "OOD")):
            _difficulty_panel(ax, [r for r in rows if (r.env, r.split) == (env, split)], methods)
            ax.set_title(f"{short_env(env)}, {name}", fontsize=9)
        ax_id.set_ylabel("success %")
        ax_ood.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    caption = (
        f"Success % by task difficulty (buckets of the expert's steps on the task); {WILSON}; "
        "n = episodes per bucket (tasks x seeds; a method evaluated on fewer tasks has fewer)."
    )
    return _save(plt, fig, path, caption)


def _difficulty_panel(ax: Any, sub: Sequence[BucketRow], methods: list[str]) -> None:
    """One env and split: a line per method over the buckets that hold tasks."""
    labels = [b for b in LABELS if any(r.bucket == b for r in sub)]
    width = 0.5 / max(len(methods), 1)
    for i, method in enumerate(methods):
        pts = [r for r in sub if r.method == method]
        if not pts:
            continue
        xs = [labels.index(r.bucket) + (i - (len(methods) - 1) / 2) * width for r in pts]
        ys = [100 * r.success for r in pts]
        err = [[y - 100 * r.ci_low for y, r in zip(ys, pts, strict=True)],
               [100 * r.ci_high - y for y, r in zip(ys, pts, strict=True)]]  # fmt: skip
        ax.errorbar(xs, ys, yerr=err, fmt="o-", ms=3, lw=1, capsize=1.5, elinewidth=0.6,
                    color=color(i, len(methods)), label=method)  # fmt: skip
    n = {b: max(r.n for r in sub if r.bucket == b) for b in labels}
    ax.set_xticks(range(len(labels)), [f"{b}\nn={n[b]}" for b in labels], fontsize=7)
    ax.set_xlabel("expert steps on the task")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)


def plot_ablation(
    values: Sequence[str], summaries: Sequence[dict | None], path: Path, *, field: str, title: str
) -> list[Path]:
    """ID and OOD success (Wilson 95% intervals) against the values of one config field."""
    plt = _pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    xs = list(range(len(values)))
    for off, (key, label, color) in zip((-0.05, 0.05), ID_OOD, strict=True):
        pts = [(x, r[key]) for x, r in zip(xs, summaries, strict=True) if r and r.get(key)]
        if not pts:
            continue
        ys = [100 * s["success"] for _, s in pts]
        ax.errorbar([x + off for x, _ in pts], ys, yerr=_errors(ys, [s for _, s in pts]),
                    marker="o", capsize=3, label=label, color=color)  # fmt: skip
    ns = {r[k]["n"] for r in summaries if r for k, _, _ in ID_OOD if (r.get(k) or {}).get("n")}
    ax.set_xticks(xs, list(values))
    ax.set_xlabel(field)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    n = "/".join(map(str, sorted(ns))) or "-"
    caption = f"Success % against {field}; {WILSON}; n = {n} episodes per point."
    return _save(plt, fig, path, caption)
