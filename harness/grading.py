"""``earlyexp eval``: grade one policy on one panel (course assignments) and check a grade.

::

    earlyexp eval --policy student_policy:act --env EarlyExp/FrozenLake-v0 --split test
    earlyexp eval --check grading.json

``--policy`` is ``module:function`` (a function ``act(obs, info) -> action``, a
:class:`~earlyexp.agents.policy.Policy`, or a class making one; ``file.py:name`` works too,
and the current folder is importable), a checkpoint folder (or ``tiny``), or
``http://HOST:PORT/v1#MODEL``. The episodes are played by
:func:`earlyexp.agents.evaluation.evaluate`, the project's one evaluation path. The grading
JSON holds each task's score and success, the panel's hash, the env's id and version, the
earlyexp version and the policy's identity (its source file's SHA-256, or the checkpoint's).

A private panel comes from an instructor's secret (``--panel-salt``, or the environment
variable ``EARLYEXP_PANEL_SALT``, which keeps it out of the shell history): the same task
distribution, other fixed tasks, so students cannot tune to the graded ones. The grading file
says ``salted: true`` and carries that panel's hash; the salt itself is written nowhere.
``--check`` recomputes the panel hash (a salted panel needs the salt) and the summary.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT = "earlyexp-grading/1"
SALT_ENV = "EARLYEXP_PANEL_SALT"


@dataclass
class EvalConfig:
    """Arguments of ``earlyexp eval``."""

    policy: str = ""
    """The graded policy: module:function (act(obs, info) -> action, or a Policy), file.py:name,
    a checkpoint folder (or tiny), or http://HOST:PORT/v1#MODEL."""
    env: str = "EarlyExp/FrozenLake-v0"
    """The env id."""
    split: str = "test"
    """The panel: test (in distribution) or ood."""
    tasks: int = 0
    """Grade the first N tasks of the panel (0: all of them)."""
    seed: int = 0
    """Reset seed of every episode (and of LLM sampling)."""
    out: str = ""
    """The grading JSON to write (default: grading_<env>_<split>.json)."""
    check: str = ""
    """Instead of grading: re-verify this grading JSON's panel hash and summary."""
    panel_salt: str = ""
    """Instructor's secret for a private panel (default: $EARLYEXP_PANEL_SALT; empty: the
    public panel)."""
    device: str = "auto"
    """Where a checkpoint runs: auto, cpu, cuda or cuda:N."""
    num_envs: int = 8
    """Envs stepped together."""


def salt_of(cfg: EvalConfig) -> str | None:
    """The panel salt: ``--panel-salt``, else ``$EARLYEXP_PANEL_SALT``, else None (public)."""
    return cfg.panel_salt or os.environ.get(SALT_ENV) or None


def env_version(env_id: str) -> int:
    """The ``N`` of ``EarlyExp/Name-vN``."""
    m = re.search(r"-v(\d+)$", env_id)
    if m is None:
        raise ValueError(f"Expect an env id ending in -vN, actually: {env_id!r}")
    return int(m.group(1))


def panel_identity(env_id: str, split: str, salt: str | None, kwargs: dict[str, Any]) -> dict:
    """``{split, size, salted, hash}`` of a fixed panel (the hash ``earlyexp envs`` prints)."""
    from earlyexp.envs.core import text_env
    from earlyexp.envs.core.panels import salted_panels
    from earlyexp.harness.play import make_env

    if split not in ("test", "ood"):
        raise ValueError(f"Expect --split test or ood, actually: {split!r}")
    env = make_env(env_id, kwargs)
    try:
        with salted_panels(salt):
            digest = text_env(env).panel_hash(split)
        size = text_env(env).panel_sizes[split]
    finally:
        env.close()
    return {"split": split, "size": size, "salted": salt is not None, "hash": digest}


# ---------------------------------------------------------------------------- policies
@dataclass
class SafeAct:
    """A student's ``act(obs, info)``: an exception is an invalid action, counted, not a crash."""

    act: Any
    errors: list[str] = field(default_factory=list)

    def __call__(self, obs: str, info: dict) -> str:
        """The function's action, or ``""`` (an invalid action) when it raised."""
        try:
            return str(self.act(obs, info))
        except Exception:
            self.errors.append(traceback.format_exc(limit=-3))
            return ""


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_folder(path: Path) -> str:
    """SHA-256 over a folder's files (relative names and contents, sorted)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


@contextmanager
def _cwd_importable() -> Iterator[None]:
    """The current folder on ``sys.path`` for the block (as ``python -m`` has it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_target(spec: str) -> tuple[Any, Path | None]:
    """The object ``module:name`` or ``file.py:name`` names, and its source file."""
    module_name, _, attr = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            if loaded is None or loaded.loader is None or not path.exists():
                raise ModuleNotFoundError(f"no file {path}")
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            with _cwd_importable():
                module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"Expect --policy module:function naming an importable function, actually: "
            f"{spec!r} ({type(e).__name__}: {e})"
        ) from e
    source = getattr(module, "__file__", None)
    return obj, Path(source) if source else None


@dataclass
class GradedPolicy:
    """What ``--policy`` resolved to: the policy, how it is prompted, and who it is."""

    policy: Any
    identity: dict[str, Any]
    prompt: Any = None
    sampling: Any = None
    safe: SafeAct | None = None

    def close(self) -> None:
        """Release what the policy holds (an HTTP client)."""
        from earlyexp.agents.methods.common import close_policy

        close_policy(self.policy)


def load_graded_policy(spec: str, env_id: str, device: str, seed: int, batch: int) -> GradedPolicy:
    """Resolve ``--policy`` (see the module docstring)."""
    if not spec:
        raise ValueError("Expect --policy (module:function, a checkpoint or an HTTP model)")
    from earlyexp.agents.models import is_tiny, parse_model

    if ":" in spec and not (is_tiny(spec) or parse_model(spec).is_remote or Path(spec).exists()):
        return _python_policy(spec)
    return _model_policy(spec, env_id, device, seed, batch)


def _python_policy(spec: str) -> GradedPolicy:
    obj, source = import_target(spec)
    if inspect.isclass(obj):
        obj = obj()
    identity: dict[str, Any] = {"kind": "python", "spec": spec,
                                "file": str(source) if source else None,
                                "sha256": sha256_file(source) if source else None}  # fmt: skip
    if hasattr(obj, "complete"):
        return GradedPolicy(obj, {**identity, "type": type(obj).__name__})
    if not callable(obj):
        raise ValueError(f"Expect {spec!r} to be act(obs, info) or a Policy, actually: {obj!r}")
    safe = SafeAct(obj)
    return GradedPolicy(safe, {**identity, "type": "function"}, safe=safe)


def _model_policy(spec: str, env_id: str, device: str, seed: int, batch: int) -> GradedPolicy:
    """A checkpoint or HTTP model, prompted as ``earlyexp bench --methods prompt`` does."""
    from earlyexp.agents.methods import Method
    from earlyexp.agents.methods.common import eval_sampling, load_policy, prompt_config
    from earlyexp.agents.methods.prompt import ZeroShotConfig, run
    from earlyexp.agents.models import parse_model, resolve_device, resolve_model
    from earlyexp.harness.profiles import get_profile

    model = parse_model(spec)
    prompt_method = Method("prompt", run, ZeroShotConfig, "llm")  # the registry's, as a value
    config = get_profile("quick").config_for(prompt_method, env_id)
    if model.is_remote:
        identity = {"kind": "http", "spec": spec, "url": model.url, "model": model.name}
    else:
        path = resolve_model(spec)
        identity = {"kind": "checkpoint", "spec": spec, "path": str(path),
                    "sha256": sha256_folder(path)}  # fmt: skip
    policy = load_policy(spec, resolve_device(device), batch)
    return GradedPolicy(policy, identity, prompt_config(config, spec), eval_sampling(config, seed))


# ---------------------------------------------------------------------------- grading
def grade(cfg: EvalConfig, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Play the panel with the policy; return the grading record (and write it to ``cfg.out``)."""
    from earlyexp import __version__
    from earlyexp.agents.evaluation import evaluate, panel_size
    from earlyexp.envs.core.panels import salted_panels
    from earlyexp.harness.report import summarize

    kwargs = dict(env_kwargs or {})
    env_version(cfg.env)
    salt = salt_of(cfg)
    panel = panel_identity(cfg.env, cfg.split, salt, kwargs)
    n = cfg.tasks or panel_size(cfg.env, cfg.split)
    graded = load_graded_policy(cfg.policy, cfg.env, cfg.device, cfg.seed, cfg.num_envs)
    try:
        with salted_panels(salt):
            result = evaluate(cfg.env, graded.policy, cfg.split, n, seed=cfg.seed,
                              num_envs=cfg.num_envs, prompt=graded.prompt,
                              sampling=graded.sampling, env_kwargs=kwargs)  # fmt: skip
    finally:
        graded.close()
    summary = summarize(result.records)
    record = {
        "format": FORMAT,
        "env": {"id": cfg.env, "version": env_version(cfg.env), "kwargs": kwargs},
        "earlyexp_version": __version__,
        "policy": graded.identity,
        "panel": {**panel, "tasks": len(result.records)},
        "seed": cfg.seed,
        "summary": asdict(summary) if summary else None,
        "tasks": [
            {
                "task": r.task,
                "score": r.score,
                "success": r.success,
                "steps": r.steps,
                "invalid": r.invalid,
                "tokens": r.tokens,
            }
            for r in result.records
        ],  # fmt: skip
        "policy_errors": _errors(graded.safe),
        "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(cfg.out or default_out(cfg))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _errors(safe: SafeAct | None) -> dict[str, Any]:
    errors = safe.errors if safe else []
    return {"count": len(errors), "first": errors[0] if errors else None}


def default_out(cfg: EvalConfig) -> str:
    """``grading_FrozenLake-v0_test.json``."""
    return f"grading_{cfg.env.rpartition('/')[2]}_{cfg.split}.json"


def check(path: Path | str, salt: str | None) -> tuple[bool, list[str]]:
    """Re-verify a grading JSON: its panel hash, task list and summary.

    Returns (ok, lines to print). A salted panel can only be verified with its salt.
    """
    from earlyexp import __version__

    try:
        record = json.loads(Path(path).read_text())
        env, panel, tasks = record["env"], record["panel"], record["tasks"]
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"Expect a grading JSON written by earlyexp eval, actually: {path} ({e})"
        ) from e
    if panel["salted"] and not salt:
        return False, [f"{path}: a salted (private) panel; pass the instructor's salt "
                       f"(--panel-salt or {SALT_ENV}) to verify it"]  # fmt: skip
    problems: list[str] = []
    if env["version"] != env_version(env["id"]):
        problems.append(f"env version {env['version']} does not match the id {env['id']}")
    now = panel_identity(env["id"], panel["split"], salt if panel["salted"] else None,
                         env.get("kwargs", {}))  # fmt: skip
    if now["hash"] != panel["hash"]:
        problems.append(f"panel hash {panel['hash']} does not match this panel's {now['hash']}")
    problems += _task_problems(tasks, panel, record.get("summary"), now["size"])
    kind = "salted (private)" if panel["salted"] else "public"
    notes = [] if record.get("earlyexp_version") == __version__ else [
        f"note: graded with earlyexp {record.get('earlyexp_version')}, checked with {__version__}"
    ]  # fmt: skip
    if problems:
        return False, [f"{path}: FAILED"] + [f"  {p}" for p in problems] + notes
    head = (f"{path}: OK, {env['id']} {panel['split']} {kind} panel {panel['hash']}, "
            f"{len(tasks)} tasks, success {100 * record['summary']['success']:.1f}%")  # fmt: skip
    return True, [head, *notes]


def _task_problems(tasks: list[dict], panel: dict, summary: dict | None, size: int) -> list[str]:
    """What is wrong with a grading file's task list and summary (empty: nothing)."""
    problems = []
    indices = [t["task"] for t in tasks]
    if indices != list(range(len(tasks))):
        problems.append("tasks are not the panel's first N in order (0, 1, 2, ...)")
    if len(tasks) != panel.get("tasks") or len(tasks) > size:
        problems.append(f"{len(tasks)} tasks listed, panel says {panel.get('tasks')} of {size}")
    wins = sum(bool(t["success"]) for t in tasks)
    if (
        not summary
        or summary.get("n") != len(tasks)
        or abs(summary.get("success", -1) - wins / max(len(tasks), 1)) > 1e-9
    ):
        problems.append("the summary does not match the tasks' successes")
    return problems
