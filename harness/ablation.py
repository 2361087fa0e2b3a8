"""``earlyexp ablate``: one method, one config field swept over values, success against the value.

Each value is an ordinary bench run (``<out>/<field>=<value>/``, resumable like any other)
with ``--set METHOD.FIELD=VALUE``; the sweep then writes ``ablation.md`` (ID and OOD success
with Wilson 95% intervals per value) and ``ablation.png`` / ``.pdf``. Early Experience's K
ablation::

    earlyexp ablate --method iwm --field K --values 1,2,4,8 --env EarlyExp/FrozenLake-v0
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.harness.bench import BenchConfig, run_bench


@dataclass
class AblationConfig:
    """Arguments of ``earlyexp ablate``."""

    method: str = "iwm"
    """The method whose config field is swept."""
    field: str = "K"
    """The config field (see earlyexp bench --help-method METHOD)."""
    values: list[str] = dataclasses.field(default_factory=lambda: ["1", "2", "4", "8"])
    """Values, comma-separated."""
    env: str = "EarlyExp/FrozenLake-v0"
    """The env."""
    profile: str = "quick"
    """Bench profile the other settings come from."""
    seeds: list[int] = dataclasses.field(default_factory=list)
    """Seeds, comma-separated (default: the profile's)."""
    model: str = "tiny"
    """LLM policy, as for earlyexp bench."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    out: str = ""
    """Sweep folder (default: runs/ablate_<method>_<field>)."""


def run_ablation(cfg: AblationConfig) -> Path:
    """Run the sweep; return its folder (with ablation.md and the plot)."""
    if not cfg.values:
        raise ValueError("Expect at least one value to sweep, actually: none")
    out = Path(cfg.out or f"runs/ablate_{cfg.method}_{cfg.field}")
    rows = []
    for value in cfg.values:
        bench = BenchConfig(
            profile=cfg.profile, methods=[cfg.method], envs=[cfg.env], seeds=cfg.seeds,
            model=cfg.model, device=cfg.device, set=[f"{cfg.method}.{cfg.field}={value}"],
            out=str(out / f"{cfg.field}={value}"),
        )  # fmt: skip
        run = run_bench(bench)
        summary = json.loads((run / "results.json").read_text())["summary"]
        rows.append((value, summary[0] if summary else None, branch_counts(run)))
    (out / "ablation.md").write_text(_table(cfg, rows))
    _plot(cfg, rows, out / "ablation.png")
    return out


def branch_counts(run: Path) -> tuple[int, int] | None:
    """(samples, shortfall) of the run's Early Experience branching, summed over its cells.

    The shortfall counts alternatives that could not be found (an env with fewer distinct
    actions than K): two values with the same samples trained on the same data. None when the
    method does not branch.
    """
    files = sorted(run.glob("cells/*/branch_stats.json"))
    if not files:
        return None
    stats = [json.loads(f.read_text()) for f in files]
    return sum(s["samples"] for s in stats), sum(s.get("shortfall", 0) for s in stats)


def _table(cfg: AblationConfig, rows: list[tuple[str, Any, Any]]) -> str:
    head = f"# {cfg.method}: success against {cfg.field} on {cfg.env}\n\n"
    branching = any(b is not None for _, _, b in rows)
    extra = (" branch samples | alternatives short |", "---:|---:|") if branching else ("", "")
    lines = [f"| {cfg.field} | ID success % [95% CI] | OOD success % [95% CI] |{extra[0]}",
             f"|---|---|---|{extra[1]}"]  # fmt: skip
    for value, r, b in rows:
        counts = (f" {b[0]} | {b[1]} |" if b else " - | - |") if branching else ""
        lines.append(f"| {value} | {_pct(r, 'id')} | {_pct(r, 'ood')} |{counts}")
    note = ""
    if branching and any(b and b[1] for _, _, b in rows):
        note = ("\nAlternatives short: the env had fewer distinct actions than K at those states "
                "(every alternative differs from the expert's); values with equal branch samples "
                "trained on the same data.\n")  # fmt: skip
    return head + "\n".join(lines) + "\n" + note


def _pct(row: Any, key: str) -> str:
    s = row and row.get(key)
    if not s:
        return "- (error)" if row and row.get("error") else "-"
    return f"{100 * s['success']:.1f} [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"


def _plot(cfg: AblationConfig, rows: list[tuple[str, Any, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    xs = list(range(len(rows)))
    for key, label in (("id", "ID"), ("ood", "OOD")):
        pts = [(x, r[key]) for x, (_, r, _) in zip(xs, rows, strict=True) if r and r.get(key)]
        if not pts:
            continue
        ys = [100 * s["success"] for _, s in pts]
        err = [[y - 100 * s["ci_low"] for y, (_, s) in zip(ys, pts, strict=True)],
               [100 * s["ci_high"] - y for y, (_, s) in zip(ys, pts, strict=True)]]  # fmt: skip
        ax.errorbar([x for x, _ in pts], ys, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xticks(xs, [v for v, _, _ in rows])
    ax.set_xlabel(cfg.field)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 100)
    ax.set_title(f"{cfg.method} on {cfg.env.removeprefix('EarlyExp/')}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
