"""``earlyexp ablate``: one method, one config field swept over values, success against the value.

Each value is an ordinary bench run (``<out>/<field>=<value>/``, resumable like any other)
with ``--set METHOD.FIELD=VALUE``; the sweep then writes ``ablation.md`` (ID and OOD success
with Wilson 95% intervals per value), ``ablation.png`` / ``.pdf`` and ``ablation.json`` (the
sweep's settings), all from the runs' ``results.json``, so ``earlyexp report SWEEP_DIR``
redraws them. Early Experience's K ablation::

    earlyexp ablate --method iwm --field K --values 1,2,4,8 --env EarlyExp/FrozenLake-v0

``--model``, ``--eval-tasks``, ``--init`` and ``--set`` are held fixed in every value's run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from earlyexp.harness.bench import BenchConfig, run_bench
from earlyexp.harness.figures import plot_ablation
from earlyexp.harness.tables import pct, short_env


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
    model: str = ""
    """LLM policy, as for earlyexp bench (default: the profile's)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    eval_tasks: int = 0
    """Tasks per panel (0: the profile's value), as for earlyexp bench."""
    set: list[str] = dataclasses.field(default_factory=list)
    """Other config fields held fixed across the sweep, comma-separated METHOD.FIELD=VALUE
    (e.g. iwm.steps=1200), as for earlyexp bench."""
    init: list[str] = dataclasses.field(default_factory=list)
    """Starting point of a method with an init field (grpo, erl, herl), as for earlyexp bench."""
    out: str = ""
    """Sweep folder (default: runs/ablate_<method>_<field>)."""


def run_ablation(cfg: AblationConfig) -> Path:
    """Run the sweep; return its folder (with ablation.md and the plot)."""
    if not cfg.values:
        raise ValueError("Expect at least one value to sweep, actually: none")
    _check_fixed(cfg)
    out = Path(cfg.out or f"runs/ablate_{cfg.method}_{cfg.field}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(asdict(cfg), indent=1))
    for value in cfg.values:
        bench = BenchConfig(
            profile=cfg.profile, methods=[cfg.method], envs=[cfg.env], seeds=cfg.seeds,
            model=cfg.model, device=cfg.device, eval_tasks=cfg.eval_tasks, init=cfg.init,
            set=[*cfg.set, f"{cfg.method}.{cfg.field}={value}"], out=str(run_dir(out, cfg, value)),
        )  # fmt: skip
        run_bench(bench)
    write_sweep(out, cfg)
    return out


def _check_fixed(cfg: AblationConfig) -> None:
    """Reject fixed settings that would override the swept field in every run."""
    swept = f"{cfg.method}.{cfg.field}"
    clash = [s for s in cfg.set if s.partition("=")[0].strip() == swept]
    if cfg.eval_tasks and cfg.field == "eval_tasks":
        clash.append(f"--eval-tasks {cfg.eval_tasks}")
    if clash:
        raise ValueError(
            f"Expect --set and --eval-tasks to leave the swept field {swept} to --values, "
            f"actually: {', '.join(clash)} would give every run the same value"
        )


def run_dir(out: Path, cfg: AblationConfig, value: str) -> Path:
    """The bench run folder of one value of the sweep."""
    return out / f"{cfg.field}={value}"


def write_sweep(out: Path, cfg: AblationConfig) -> list[Path]:
    """Write ``ablation.md`` and the figure from the value runs' ``results.json``."""
    rows = []
    for value in cfg.values:
        results = run_dir(out, cfg, value) / "results.json"
        summary = json.loads(results.read_text())["summary"] if results.exists() else []
        row = next((r for r in summary if r["method"] == cfg.method), None)
        rows.append((value, row, branch_counts(run_dir(out, cfg, value))))
    (out / "ablation.md").write_text(_table(cfg, rows))
    title = f"{cfg.method} on {short_env(cfg.env)}"
    plotted = plot_ablation(
        [v for v, _, _ in rows], [r for _, r, _ in rows], out / "ablation.png",
        field=cfg.field, title=title,
    )  # fmt: skip
    return [out / "ablation.md", *plotted]


def sweep_config(out: Path) -> AblationConfig:
    """The settings of the sweep in ``out``: its ``ablation.json``, else read off its runs.

    A sweep written before ``ablation.json`` existed is recognised by its ``FIELD=VALUE``
    run folders and the ``--set METHOD.FIELD=VALUE`` each run's config holds.
    """
    saved = out / "ablation.json"
    if saved.exists():
        return AblationConfig(**json.loads(saved.read_text()))
    runs = sorted(p.parent for p in out.glob("*=*/results.json"))
    fields = {p.name.partition("=")[0] for p in runs}
    if not runs or len(fields) != 1:
        raise ValueError(
            f"Expect a sweep folder of earlyexp ablate (FIELD=VALUE run folders of one field), "
            f"actually: {out} has {sorted(p.name for p in runs) or 'none'}"
        )
    (field,) = fields
    config = json.loads((runs[0] / "results.json").read_text())["config"]
    method = next(s.split(".")[0] for s in config["set"] if s.split("=")[0].endswith(f".{field}"))
    values = sorted((p.name.partition("=")[2] for p in runs), key=_natural)
    env = (config.get("envs") or [""])[0]
    return AblationConfig(method=method, field=field, values=values, env=env,
                          profile=config["profile"], out=str(out))  # fmt: skip


def _natural(value: str) -> tuple[int, float, str]:
    """Sort key: numbers by value (``2`` before ``10``), then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def is_sweep(out: Path) -> bool:
    """Whether ``out`` is a sweep folder of ``earlyexp ablate``."""
    return (out / "ablation.json").exists() or (
        not (out / "results.json").exists() and any(out.glob("*=*/results.json"))
    )


def branch_counts(run: Path) -> tuple[int, int] | None:
    """(samples, shortfall) of the run's Early Experience branching, summed over its cells.

    The shortfall counts alternatives that could not be found (an env with fewer distinct
    actions than K): two values with the same samples trained on the same data. None when the
    method does not branch.
    """
    stats = _branch_stats(run)
    if not stats:
        return None
    return sum(s["samples"] for s in stats), sum(s.get("shortfall", 0) for s in stats)


def _branch_stats(run: Path) -> list[dict[str, Any]]:
    """The cells' ``branch_stats.json``: from the cell folders, else ``results.json``'s copies."""
    files = sorted(run.glob("cells/*/branch_stats.json"))
    if files:
        return [json.loads(f.read_text()) for f in files]
    path = run / "results.json"
    kept = json.loads(path.read_text()).get("cell_files", {}) if path.exists() else {}
    return [f["branch_stats"] for _, f in sorted(kept.items()) if "branch_stats" in f]


def _table(cfg: AblationConfig, rows: list[tuple[str, Any, Any]]) -> str:
    head = f"# {cfg.method}: success against {cfg.field} on {cfg.env}\n\n"
    branching = any(b is not None for _, _, b in rows)
    extra = (" branch samples | alternatives short |", "---:|---:|") if branching else ("", "")
    lines = [f"| {cfg.field} | ID success % [95% CI] | OOD success % [95% CI] |{extra[0]}",
             f"|---|---|---|{extra[1]}"]  # fmt: skip
    for value, r, b in rows:
        counts = (f" {b[0]} | {b[1]} |" if b else " - | - |") if branching else ""
        lines.append(f"| {value} | {_pct(r, 'id')} | {_pct(r, 'ood')} |{counts}")
    ns = sorted(
        {r[k]["n"] for _, r, _ in rows if r for k in ("id", "ood") if (r.get(k) or {}).get("n")}
    )
    lines.append(
        f"\nIntervals: Wilson 95%; n = {'/'.join(map(str, ns)) or '-'} episodes per panel and value."
    )
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
    return pct(s)
