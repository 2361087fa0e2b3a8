"""``earlyexp bench``: methods x envs x seeds -> a run folder with results, table and plots.

Every finished cell is written at once to ``cells/<cell>.json``; a rerun with the same
``--out`` skips finished cells, so an interrupted run resumes without losing work. A cell
whose method config changed since it finished is refused rather than mixed. A cell file that
cannot be read back (truncated, empty, not the shape the bench writes) is moved aside to
``<cell>.json.unreadable`` with a warning naming it, and that cell runs again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from earlyexp.agents.config import parse_value
from earlyexp.agents.envpool import PoolConfig
from earlyexp.agents.methods import METHODS, Method, get_method, load_builtin_methods
from earlyexp.agents.models import parse_model, resolve_device
from earlyexp.agents.records import EpisodeRecord
from earlyexp.harness.profiles import Profile, get_profile

RESULT_KEYS = ("profile", "model", "eval_tasks")  # bench options that change finished cells


@dataclass
class BenchConfig:
    """Arguments of ``earlyexp bench``."""

    profile: str = "quick"
    """Preset: quick (CPU, tiny model, minutes), smoke (seconds), standard, gpu."""
    methods: list[str] = field(default_factory=list)
    """Methods to run, comma-separated: registered names or module:function (default: the
    profile's)."""
    envs: list[str] = field(default_factory=list)
    """Env ids, comma-separated (default: the profile's, else every registered id)."""
    seeds: list[int] = field(default_factory=list)
    """Seeds, comma-separated (default: the profile's)."""
    model: str = ""
    """LLM policy: tiny (the built-in preset, trained locally), tiny:base (tiny pretrained to
    copy from its context, built once in about 14 min), tiny:copy (tiny with a copy head), a
    checkpoint folder, or
    http://HOST:PORT/v1#MODEL (an OpenAI-compatible server; evaluation-only methods). Default:
    the profile's (tiny; tiny:base in standard)."""
    device: str = "auto"
    """auto (cuda when available), cpu, cuda or cuda:N."""
    eval_tasks: int = 0
    """Tasks per panel for every method (0: the profile's value)."""
    set: list[str] = field(default_factory=list)
    """Method config fields, comma-separated METHOD.FIELD=VALUE (e.g. il.lr=0.001); see
    --help-method."""
    init: list[str] = field(default_factory=list)
    """Starting points of methods with an init field (grpo), comma-separated: raw, il, iwm,
    sr (that method's cell runs first and its checkpoint is used) or a checkpoint path; one
    row per init (default: the profile's)."""
    workers: int = 0
    """Ray actors hosting the envs (0: in this process); needs the ray extra."""
    ray_address: str = ""
    """Ray cluster to join with --workers (auto, ray://host:port; empty: a local Ray)."""
    out: str = ""
    """Run folder (default: runs/<profile>). An existing run folder is resumed."""
    fresh: bool = False
    """Delete the run folder's cells and report first, then start over."""
    help_method: str = ""
    """Print the config fields of this method (their defaults and help) and exit."""

    def __post_init__(self) -> None:
        # a comma-separated string is a list (BenchConfig(methods="il,random") from Python)
        for name in ("methods", "envs", "set", "init"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [v.strip() for v in value.split(",") if v.strip()])
        if isinstance(self.seeds, str):
            self.seeds = [int(v) for v in self.seeds.split(",") if v.strip()]
        if self.workers < 0:
            raise ValueError(f"Expect --workers >= 0, actually: {self.workers}")


@dataclass(frozen=True)
class Cell:
    """One (method, env, seed) of a bench run, with its resolved method config.

    Attributes:
        method: the registered method.
        env_id: the env.
        seed: the seed.
        config: the resolved config.
        init: the cell whose checkpoint this one starts from (``--init il``), else None.
    """

    method: Method
    env_id: str
    seed: int
    config: Any
    init: Cell | None = None

    @property
    def label(self) -> str:
        """The row name: the method, with its starting point when it has one (``grpo+il``)."""
        start = getattr(self.config, "init", None)
        return self.method.name if start is None else f"{self.method.name}+{Path(start).name}"

    @property
    def name(self) -> str:
        """File-safe name of the cell."""
        return cell_name(self.label, self.env_id, self.seed)


@dataclass
class CellResult:
    """A cell's outcome as written to ``cells/<name>.json``."""

    method: str
    env: str
    seed: int
    config: dict[str, Any]
    status: str = "done"
    episodes: list[EpisodeRecord] = field(default_factory=list)
    error: str = ""
    trace: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The cell file's content."""
        d = asdict(self)
        d["episodes"] = [e.to_json() for e in self.episodes]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CellResult:
        """Inverse of :meth:`to_json`."""
        eps = [EpisodeRecord.from_json(e) for e in d.get("episodes", [])]
        keep = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "episodes"}
        return cls(**keep, episodes=eps)


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """``["il.lr=0.001", ...]`` -> ``{"il": {"lr": "0.001"}}`` (values still text)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (eq and dot and method and name):
            raise ValueError(f"Expect --set METHOD.FIELD=VALUE, actually: {item!r}")
        out.setdefault(method.strip(), {})[name.strip()] = value.strip()
    return out


def _method_sets(method: Method, sets: dict[str, dict[str, str]]) -> dict[str, Any]:
    raw = sets.get(method.name, {})
    return {k: parse_value(method.config, k, v) for k, v in raw.items()}


def plan_cells(cfg: BenchConfig, profile: Profile) -> list[Cell]:
    """Return the cells to run with their configs, validating every name first."""
    import earlyexp.envs as envs

    load_builtin_methods()
    methods = [get_method(m) for m in (cfg.methods or profile.methods)]
    if parse_model(cfg.model).is_remote:
        trains = [m.name for m in methods if m.trains]
        if trains:
            raise ValueError(
                f"Expect evaluation-only methods with an HTTP model (its weights cannot be "
                f"trained here), actually: {', '.join(trains)} train weights; "
                "use --model tiny or --model PATH"
            )
    sets = parse_sets(cfg.set)
    unknown = sorted(set(sets) - _set_targets(methods, cfg, profile))
    if unknown:
        raise ValueError(
            f"Expect --set for methods being run (or run as a starting point by --init), "
            f"actually: {', '.join(unknown)}"
        )
    env_ids = cfg.envs or list(profile.envs) or envs.env_ids()
    cells: list[Cell] = []
    for env_id in env_ids:
        tags = envs.entry(env_id).tags  # raises a ValueError naming the valid ids
        for m in methods:
            if not m.runs_on(tags):
                continue  # e.g. SB3 baselines need a numeric view (control envs only)
            if not cfg.methods and not profile.runs(m.name, env_id):
                continue  # the profile runs this method on some envs only
            config = profile.config_for(m, env_id, _method_sets(m, sets))
            if cfg.eval_tasks:
                config = dataclasses.replace(config, eval_tasks=cfg.eval_tasks)
            for seed in cfg.seeds or profile.seeds:
                cells += _cells_of(m, env_id, seed, config, cfg, profile, sets)
    return list({c.name: c for c in cells}.values())  # an init cell asked for twice runs once


def _starts(m: Method, config: Any, cfg: BenchConfig, profile: Profile) -> list[str]:
    """Where a method with an ``init`` field starts: ``--init``, the profile's, or its config's."""
    return list(cfg.init or profile.inits.get(m.name) or [config.init])


def _set_targets(methods: list[Method], cfg: BenchConfig, profile: Profile) -> set[str]:
    """Names ``--set`` may configure: the methods run, and the trained inits they start from."""
    names = {m.name for m in methods}
    for m in methods:
        config = m.config()
        if hasattr(config, "init"):
            names |= {s for s in _starts(m, config, cfg, profile) if s in METHODS}
    return names


def _cells_of(
    m: Method, env_id: str, seed: int, config: Any, cfg: BenchConfig, profile: Profile,
    sets: dict[str, dict[str, str]],
) -> list[Cell]:  # fmt: skip
    """The cells of one method on one env and seed: one per ``--init``, after their init cells."""
    if not hasattr(config, "init"):
        return [Cell(m, env_id, seed, config)]
    out: list[Cell] = []
    for start in _starts(m, config, cfg, profile):
        init = None
        if start in METHODS and METHODS[start].trains:
            im = METHODS[start]
            iconf = profile.config_for(im, env_id, _method_sets(im, sets))
            if cfg.eval_tasks:
                iconf = dataclasses.replace(iconf, eval_tasks=cfg.eval_tasks)
            init = Cell(im, env_id, seed, iconf)
            out.append(init)
        out.append(Cell(m, env_id, seed, dataclasses.replace(config, init=start), init))
    return out


def cell_name(method: str, env_id: str, seed: int) -> str:
    """File-safe name of a cell."""
    safe = method.replace(":", "_").replace("/", "_")
    return f"{safe}__{env_id.replace('/', '_')}__s{seed}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _check_resume(out: Path, cfg: BenchConfig) -> None:
    """Refuse to resume a run folder whose finished cells used other bench settings."""
    saved = out / "config.json"
    if not saved.exists() or cfg.fresh:
        return
    try:
        old = json.loads(saved.read_bytes())
        if not isinstance(old, dict):
            raise ValueError(f"expected a JSON object, got {type(old).__name__}")
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(
            f"Expect a readable {saved} in the run being resumed, actually: "
            f"{type(err).__name__}: {err}; pass --fresh or another --out"
        ) from None
    diff = [k for k in RESULT_KEYS if old.get(k) != asdict(cfg).get(k)]
    if diff:
        raise ValueError(
            f"Expect the same {', '.join(diff)} as the run being resumed in {out} "
            f"(they changed); pass --fresh or another --out"
        )


class CellFileWarning(RuntimeWarning):
    """A cell file of the run folder could not be read back; it was moved aside."""


_CELL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "method": str, "env": str, "seed": int, "config": dict, "status": str, "episodes": list,
    "error": str, "trace": str, "seconds": (int, float), "cpu_seconds": (int, float),
}  # fmt: skip
_CELL_DEFAULTS = {"status": "done", "error": "", "trace": "", "seconds": 0, "cpu_seconds": 0}
_EPISODE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "split": str, "task": int, "score": (int, float), "success": bool, "steps": int,
    "invalid": int, "tokens": int,
}  # fmt: skip


def _kind_error(data: dict[str, Any], fields: dict[str, Any], where: str) -> str | None:
    """Name the first field of ``data`` missing or of the wrong JSON type (bools are not ints)."""
    for key, kind in fields.items():
        value = data.get(key)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            got = "missing" if key not in data else type(value).__name__
            return f"{where}field {key!r} should be {getattr(kind, '__name__', 'a number')}: {got}"
    return None


def _shape_error(data: Any, cell: Cell) -> str | None:
    """Why ``data`` is not the cell file the bench writes for ``cell`` (None when it is)."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    why = _kind_error({**_CELL_DEFAULTS, **data}, _CELL_FIELDS, "")
    if why is not None:
        return why
    for i, ep in enumerate(data["episodes"]):
        if not isinstance(ep, dict):
            return f"episode {i} should be an object: {type(ep).__name__}"
        unknown = sorted(set(ep) - set(_EPISODE_FIELDS))
        why = _kind_error({"tokens": 0, **ep}, _EPISODE_FIELDS, f"episode {i}: ")
        if unknown or why:
            return why or f"episode {i} has unknown fields {unknown}"
    if (data["method"], data["env"], data["seed"]) != (cell.label, cell.env_id, cell.seed):
        return f"it holds {data['method']} on {data['env']} seed {data['seed']}"
    return None


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.unreadable`` (``.unreadable-2``, ... when taken)."""
    aside, n = path.with_name(f"{path.name}.unreadable"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.unreadable-{n}")
    os.replace(path, aside)
    return aside


def _read_cell(path: Path, cell: Cell) -> CellResult | None:
    """The result in ``path``; None (after moving the file aside, with a warning) if unreadable."""
    try:
        data = json.loads(path.read_bytes())
        why = _shape_error(data, cell)
    except (OSError, ValueError, RecursionError) as err:  # JSON, UTF-8, nesting depth
        why = f"{type(err).__name__}: {err}"
    if why is None:
        return CellResult.from_json(data)
    aside = _move_aside(path)
    msg = (
        f"Cell file {path} is unreadable ({why}); moved it to {aside.name}, running the cell again"
    )
    warnings.warn(msg, CellFileWarning, stacklevel=3)
    return None


def _finished(path: Path, cell: Cell) -> CellResult | None:
    """The finished result of ``cell`` in ``path`` (None if not finished or unreadable).

    A changed config is a ValueError: resuming would mix two configs in one table.
    """
    if not path.exists():
        return None
    prev = _read_cell(path, cell)
    if prev is None or prev.status != "done":
        return None
    changed = _changed_fields(prev.config, cell.config)
    if changed:
        raise ValueError(
            f"Expect the same config as the finished cell {cell.name} being resumed, actually "
            f"changed: {', '.join(changed)}; pass --fresh or another --out"
        )
    return prev


def _changed_fields(recorded: dict[str, Any], config: Any) -> list[str]:
    """The fields of ``config`` whose values differ from the ``recorded`` ones."""
    now = json.loads(json.dumps(asdict(config)))
    recorded = _with_new_defaults(recorded, config)
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


def _claim_cell_dir(cell_dir: Path, cell: Cell) -> None:
    """Record which config the work in ``cell_dir`` is for; refuse to resume another's.

    A killed cell leaves its training state and data there, and the method resumes from
    them: under a changed config that would mix two configs in one result.
    """
    path = cell_dir / "cell_config.json"
    if path.exists():
        try:
            recorded = json.loads(path.read_bytes())
        except (OSError, ValueError):
            recorded = None
        changed = _changed_fields(recorded, cell.config) if isinstance(recorded, dict) else []
        if changed:
            raise ValueError(
                f"Expect the same config as the interrupted cell {cell.name}, whose partial "
                f"work is in {cell_dir}, actually changed: {', '.join(changed)}; pass --fresh, "
                f"another --out, or delete that folder"
            )
    _write_json(path, asdict(cell.config))


def _with_new_defaults(recorded: dict[str, Any], config: Any) -> dict[str, Any]:
    """``recorded`` plus the default of each field of ``config`` added since it was written.

    A field added to a method's config keeps the earlier behaviour at its default, so a
    cell finished before the field existed resumes while the field is left at its default.
    """
    added = {}
    for f in dataclasses.fields(config):
        if f.name not in recorded:
            if f.default is not dataclasses.MISSING:
                added[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                added[f.name] = f.default_factory()
    return {**recorded, **json.loads(json.dumps(added))}


def _clear_run(out: Path) -> None:
    """Delete a run folder's cells and report, so no cell of an earlier run can be resumed."""
    shutil.rmtree(out / "cells", ignore_errors=True)
    shutil.rmtree(out / "plots", ignore_errors=True)
    for name in ("results.json", "table.md"):
        (out / name).unlink(missing_ok=True)


def run_cell(cell: Cell, cfg: BenchConfig, out: Path) -> CellResult:
    """Run one cell (status ``done`` or ``error``: a failed cell must not lose the others)."""
    cell_dir = out / "cells" / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    _claim_cell_dir(cell_dir, cell)
    result = CellResult(cell.label, cell.env_id, cell.seed, asdict(cell.config))
    pool = PoolConfig(cfg.workers, cfg.ray_address or None)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result.episodes = list(
            cell.method.run(
                env_id=cell.env_id, seed=cell.seed, config=cell.config, run_dir=cell_dir,
                device=resolve_device(cfg.device), model=cfg.model, pool=pool,
                init_dir=out / "cells" / cell.init.name if cell.init else None,
            )
        )  # fmt: skip
    except Exception as e:
        result.status, result.error = "error", f"{type(e).__name__}: {e}"
        result.trace = traceback.format_exc()
    result.seconds = round(time.perf_counter() - start, 2)
    result.cpu_seconds = round(time.process_time() - cpu_start, 2)  # all threads of this process
    return result


def run_bench(cfg: BenchConfig) -> Path:
    """Run every cell not finished yet; write results.json, table.md and plots; return the folder."""
    from earlyexp.harness.report import write_report

    profile = get_profile(cfg.profile)
    cfg = dataclasses.replace(cfg, model=cfg.model or profile.model)  # recorded as run
    cells = plan_cells(cfg, profile)
    out = Path(cfg.out or f"runs/{cfg.profile}")
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg)
    if cfg.fresh:
        _clear_run(out)
    _write_json(out / "config.json", {**asdict(cfg), "resolved_profile": profile.describe()})
    with ray_session(cfg):
        done = _run_cells(cells, cfg, out)
    write_report(out, done, cfg)
    return out


@contextmanager
def ray_session(cfg: BenchConfig) -> Iterator[None]:
    """With ``--workers``, one Ray connection for the whole run (pools reuse it), then down."""
    if not cfg.workers:
        yield
        return
    from earlyexp.agents.envpool_ray import connect, import_ray

    started = connect(cfg.ray_address or None)
    try:
        yield
    finally:
        if started:
            import_ray().shutdown()


def _run_cells(cells: list[Cell], cfg: BenchConfig, out: Path) -> list[CellResult]:
    done: list[CellResult] = []
    for cell in tqdm(cells, desc="bench", unit="cell"):
        path = out / "cells" / f"{cell.name}.json"
        prev = _finished(path, cell)
        if prev is not None:
            done.append(prev)
            continue
        tqdm.write(f"running {cell.label} on {cell.env_id} (seed {cell.seed})")
        result = run_cell(cell, cfg, out)
        if result.status == "error":
            tqdm.write(f"  error: {result.error}")
        _write_json(path, result.to_json())
        done.append(result)
    return done
