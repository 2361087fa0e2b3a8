"""``earlyexp bench``: methods x envs x seeds -> a run folder with results, table and plots.

Every finished cell is written at once to ``cells/<cell>.json``; a rerun with the same
``--out`` skips finished cells, so an interrupted run resumes without losing work.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from earlyexp.harness.methods import METHODS, get_method, load_builtin_methods
from earlyexp.harness.profiles import Profile, get_profile
from earlyexp.harness.records import EpisodeRecord

RESULT_KEYS = ("profile", "model", "eval_tasks")  # config fields that change finished cells


@dataclass
class BenchConfig:
    """Arguments of ``earlyexp bench``."""

    profile: str = "quick"
    """Budget preset: quick (CPU, tiny model, minutes), smoke (seconds), standard, gpu."""
    methods: list[str] = field(default_factory=list)
    """Methods to run, comma-separated (default: the profile's methods that are installed)."""
    envs: list[str] = field(default_factory=list)
    """Env ids, comma-separated (default: every registered id)."""
    seeds: list[int] = field(default_factory=list)
    """Seeds, comma-separated (default: the profile's)."""
    model: str = "tiny"
    """LLM policy: 'tiny' (the built-in preset, trained locally) or a checkpoint path."""
    device: str = "auto"
    """auto (cuda when available), cpu or cuda."""
    eval_tasks: int = 0
    """Tasks per panel (0: the profile's value)."""
    out: str = ""
    """Run folder (default: runs/<profile>). An existing run folder is resumed."""
    fresh: bool = False
    """Delete the run folder's cells and report first, then start over."""


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"Expect --device auto, cpu or cuda, actually: {device!r}")
    if device != "auto":
        return device
    try:
        import torch
    except ModuleNotFoundError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_cells(cfg: BenchConfig, profile: Profile) -> list[tuple[str, str, int]]:
    """Return the (method, env id, seed) cells to run, validating every name."""
    import earlyexp.envs as envs

    load_builtin_methods()
    if cfg.methods:
        methods = [get_method(m).name for m in cfg.methods]
    else:
        methods = [m for m in profile.methods if m in METHODS]
        missing = [m for m in profile.methods if m not in METHODS]
        if missing:
            print(f"note: methods not installed here, skipped: {', '.join(missing)}")
    env_ids = cfg.envs or envs.env_ids()
    for e in env_ids:
        envs.entry(e)  # raises a ValueError naming the valid ids
    seeds = cfg.seeds or list(profile.seeds)
    cells: list[tuple[str, str, int]] = []
    for env_id in env_ids:
        for m in methods:
            if METHODS[m].kind == "sb3" and "control" not in envs.entry(env_id).tags:
                continue  # SB3 baselines need a numeric view (control envs only)
            cells.extend((m, env_id, s) for s in seeds)
    return cells


def cell_name(method: str, env_id: str, seed: int) -> str:
    """File-safe name of a cell."""
    return f"{method}__{env_id.replace('/', '_')}__s{seed}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _check_resume(out: Path, cfg: BenchConfig, profile: Profile) -> None:
    """Refuse to resume a run folder whose finished cells used other settings or budgets."""
    saved = out / "config.json"
    if not saved.exists() or cfg.fresh:
        return
    old = json.loads(saved.read_text())
    diff = [k for k in RESULT_KEYS if old.get(k) != asdict(cfg).get(k)]
    if old.get("resolved_profile") != json.loads(json.dumps(asdict(profile))):
        diff.append("profile budgets")
    if diff:
        raise ValueError(
            f"Expect the same {', '.join(diff)} as the run being resumed in {out} "
            f"(they changed); pass --fresh or another --out"
        )


def _clear_run(out: Path) -> None:
    """Delete a run folder's cells and report, so no cell of an earlier run can be resumed."""
    shutil.rmtree(out / "cells", ignore_errors=True)
    shutil.rmtree(out / "plots", ignore_errors=True)
    for name in ("results.json", "table.md"):
        (out / name).unlink(missing_ok=True)


def run_cell(
    method: str, env_id: str, seed: int, profile: Profile, cfg: BenchConfig, out: Path
) -> dict:
    """Run one cell and return its JSON record (status ``done`` or ``error``)."""
    m = get_method(method)
    cell_dir = out / "cells" / cell_name(method, env_id, seed)
    cell_dir.mkdir(parents=True, exist_ok=True)
    budget = profile.budget(m.kind, env_id, cfg.eval_tasks or None)
    start, cpu_start = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {
        "method": method,
        "env": env_id,
        "seed": seed,
        "budget": asdict(budget),
    }
    try:
        recs = m.fn(env_id=env_id, seed=seed, budget=budget, run_dir=cell_dir,
                    device=resolve_device(cfg.device), model=cfg.model)  # fmt: skip
        record.update(status="done", episodes=[r.to_json() for r in recs])
    except Exception as e:  # a failed cell must not lose the others
        record.update(
            status="error", error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()
        )
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["cpu_seconds"] = round(time.process_time() - cpu_start, 2)  # all threads of this process
    return record


def run_bench(cfg: BenchConfig) -> Path:
    """Run every cell not finished yet; write results.json, table.md and plots; return the folder."""
    from earlyexp.harness.report import write_report

    profile = get_profile(cfg.profile)
    out = Path(cfg.out or f"runs/{cfg.profile}")
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg, profile)
    if cfg.fresh:
        _clear_run(out)
    _write_json(out / "config.json", {**asdict(cfg), "resolved_profile": asdict(profile)})
    cells = plan_cells(cfg, profile)
    done = {}
    for method, env_id, seed in tqdm(cells, desc="bench", unit="cell"):
        path = out / "cells" / f"{cell_name(method, env_id, seed)}.json"
        if path.exists() and not cfg.fresh:
            prev = json.loads(path.read_text())
            if prev.get("status") == "done":
                done[path.name] = prev
                continue
        tqdm.write(f"running {method} on {env_id} (seed {seed})")
        record = run_cell(method, env_id, seed, profile, cfg, out)
        if record["status"] == "error":
            tqdm.write(f"  error: {record['error']}")
        _write_json(path, record)
        done[path.name] = record
    write_report(out, list(done.values()), cfg)
    return out


def episodes_of(cell: dict) -> list[EpisodeRecord]:
    """The episode records of a finished cell."""
    return [EpisodeRecord.from_json(e) for e in cell.get("episodes", [])]
