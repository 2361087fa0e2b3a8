"""The ``earlyexp`` command: list and play envs, serve sites or a model, run benchmarks, report."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from earlyexp.agents.config import add_dataclass_args, from_args

SERVERS = {
    "webshop": "earlyexp.envs.webshop.site",
    "flights": "earlyexp.envs.flights.site",
    "model": "earlyexp.agents.serve",
}
"""What ``earlyexp serve NAME ARGS...`` runs: ``main(ARGS)`` of the named module."""


def cmd_envs(args: argparse.Namespace) -> int:
    """Print every registered id with its splits, panel sizes and hashes."""
    import gymnasium as gym

    import earlyexp.envs as envs
    from earlyexp.envs.core import text_env

    for e in envs.ENTRIES:
        if args.ids and e.id not in args.ids:
            continue
        print(f"{e.id}  [{', '.join(e.tags) or '-'}]\n  {e.summary}\n  ood: {e.ood}")
        env = gym.make(e.id)
        raw = text_env(env)
        print("  train: procedural stream")
        for split, size in raw.panel_sizes.items():
            digest = raw.panel_hash(split) if not args.no_hash else "(hash skipped)"
            print(f"  {split}: {size} tasks, hash {digest}")
        env.close()
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    """Play episodes in the terminal (a person, the expert or a random policy)."""
    from earlyexp.harness.play import PlayConfig, env_kwargs, play

    return play(args.env_id, from_args(PlayConfig, args), env_kwargs(args.env_arg))


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    from earlyexp.harness.bench import BenchConfig, run_bench

    cfg = from_args(BenchConfig, args)
    if cfg.help_method:
        print(method_help(cfg.help_method))
        return 0
    out = run_bench(cfg)
    print((out / "table.md").read_text())
    print(
        f"run folder: {out} (results.json, table.md/.csv/.tex, difficulty.csv/.tex, plots/, cells/)"
    )
    return 0


def method_help(name: str) -> str:
    """A method's description and its config fields (``earlyexp bench --help-method NAME``)."""
    from earlyexp.agents.config import describe_fields
    from earlyexp.agents.methods import get_method

    m = get_method(name)
    head = f"{m.name} ({m.kind}{', trains weights' if m.trains else ''}): {m.description}"
    doc = " ".join((m.config.__doc__ or "").split())
    return f"{head}\nconfig {m.config.__name__}: {doc}\n{describe_fields(m.config)}"


def cmd_ablate(args: argparse.Namespace) -> int:
    """Sweep one method config field and report success against it."""
    from earlyexp.harness.ablation import AblationConfig, run_ablation

    out = run_ablation(from_args(AblationConfig, args))
    print((out / "ablation.md").read_text())
    print(f"sweep folder: {out} (ablation.md/.json/.png/.pdf, one bench run per value)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Redraw a run's (or a sweep's) tables and figures from its results.json."""
    from pathlib import Path

    from earlyexp.harness.ablation import is_sweep, run_dir, sweep_config, write_sweep
    from earlyexp.harness.report import report_run

    path = Path(args.run_dir)
    if is_sweep(path):
        cfg = sweep_config(path)
        written = [
            f
            for v in cfg.values
            for f in report_run(run_dir(path, cfg, v), measure=not args.no_expert)
        ]
        written += write_sweep(path, cfg)
    else:
        written = report_run(path, measure=not args.no_expert)
    print("\n".join(str(p) for p in written))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Grade one policy on one panel and write the grading JSON, or check such a file."""
    from earlyexp.harness.grading import EvalConfig, check, default_out, grade, salt_of
    from earlyexp.harness.play import env_kwargs

    cfg = from_args(EvalConfig, args)
    if cfg.check:
        ok, lines = check(cfg.check, salt_of(cfg))
        print("\n".join(lines))
        return 0 if ok else 1
    record = grade(cfg, env_kwargs(args.env_arg))
    s, panel = record["summary"], record["panel"]
    kind = "salted (private)" if panel["salted"] else "public"
    print(
        f"{cfg.env} {cfg.split}, {kind} panel {panel['hash']}: success {100 * s['success']:.1f}% "
        f"[{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}] over {s['n']} tasks, mean score "
        f"{s['score']:.3f}; policy errors: {record['policy_errors']['count']}"
    )
    print(f"grading file: {cfg.out or default_out(cfg)} (check it with earlyexp eval --check FILE)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a web site of the suite, or a model over the OpenAI API, on 127.0.0.1."""
    if args.server not in SERVERS:
        raise ValueError(f"Expect one of {sorted(SERVERS)}, actually: {args.server!r}")
    module = importlib.import_module(SERVERS[args.server])
    return int(module.main(args.rest))


def add_env_arg(parser: argparse.ArgumentParser) -> None:
    """``--env-arg KEY=VALUE`` (repeatable): constructor options of the env."""
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a constructor option of the env, e.g. symbols=legend or "
        "observation_mode=text_rich (repeat for several; values are Python literals or text)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``earlyexp`` argument parser."""
    p = argparse.ArgumentParser(prog="earlyexp", description=__doc__)
    p.add_argument(
        "--warnings",
        action="store_true",
        help="show other libraries' warnings and progress bars (quiet by default; also "
        "EARLYEXP_WARNINGS=1 or python -W); EARLYEXP_PROGRESS=0 hides earlyexp's own bars",
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("envs", help="list env ids, splits, panel sizes and hashes")
    e.add_argument("ids", nargs="*", help="only these ids")
    e.add_argument("--no-hash", action="store_true", help="skip the panel hashes (faster)")
    e.set_defaults(fn=cmd_envs)
    from earlyexp.harness.play import PlayConfig

    pl = sub.add_parser(
        "play",
        help="play an env in the terminal (:help, :hint, :quit; arrow keys on control envs)",
    )
    pl.add_argument("env_id", help="e.g. EarlyExp/FrozenLake-v0")
    add_dataclass_args(pl, PlayConfig)
    add_env_arg(pl)
    pl.set_defaults(fn=cmd_play)
    from earlyexp.harness.bench import BenchConfig

    b = sub.add_parser("bench", help="run methods x envs x seeds and report ID/OOD success")
    add_dataclass_args(b, BenchConfig)
    b.set_defaults(fn=cmd_bench)
    from earlyexp.harness.ablation import AblationConfig

    a = sub.add_parser("ablate", help="sweep one method config field (e.g. iwm K) and plot success")
    add_dataclass_args(a, AblationConfig)
    a.set_defaults(fn=cmd_ablate)
    from earlyexp.harness.grading import EvalConfig

    ev = sub.add_parser(
        "eval",
        help="grade one policy on one panel (course assignments; --panel-salt for a private "
        "panel) and write a grading JSON, or --check one",
    )
    add_dataclass_args(ev, EvalConfig)
    add_env_arg(ev)
    ev.set_defaults(fn=cmd_eval)
    r = sub.add_parser(
        "report",
        help="redraw a run's tables (md, csv, tex) and figures (png, pdf) from its results.json",
    )
    r.add_argument("run_dir", help="a run folder of earlyexp bench, or a sweep of earlyexp ablate")
    r.add_argument(
        "--no-expert",
        action="store_true",
        help="never play the expert for missing step counts (the difficulty breakdown then "
        "covers the tasks results.json knows)",
    )
    r.set_defaults(fn=cmd_report)
    s = sub.add_parser(
        "serve",
        help="serve a web site (webshop, flights) or a model (model: an OpenAI-compatible "
        "chat-completions server) on 127.0.0.1",
    )
    s.add_argument("server", help=f"one of {', '.join(SERVERS)}")
    s.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="its own options (--port ...; earlyexp serve NAME --help lists them)",
    )
    s.set_defaults(fn=cmd_serve)
    return p


THIRD_PARTY = (
    r"(transformers|torch|tokenizers|peft|accelerate|huggingface_hub|safetensors|"
    r"stable_baselines3|gymnasium|pettingzoo|ray|tantivy|matplotlib|numpy)(\.|$)"
)
"""Modules whose warnings the command keeps quiet (``--warnings`` shows them)."""


def quiet_third_party() -> None:
    """Silence other libraries' warnings, advisory logs and progress bars (ours stay on).

    Deprecation and future warnings, anything warned from :data:`THIRD_PARTY` modules,
    gymnasium's ``WARN:`` lines, transformers' advisory logging and the Hugging Face
    progress bars (``Writing model shards``). Warnings of earlyexp itself (an unreadable cell
    file, a figure not drawn) are kept.
    """
    for name, value in (("TRANSFORMERS_VERBOSITY", "error"),
                        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("TOKENIZERS_PARALLELISM", "false")):  # fmt: skip
        os.environ.setdefault(name, value)  # read when those libraries are imported
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=THIRD_PARTY)
    warnings.filterwarnings("ignore", message=r"(\x1b\[\d+m)?WARN: ")  # gymnasium.logger.warn
    if "transformers" in sys.modules:  # imported already: set it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``earlyexp`` console script."""
    args = build_parser().parse_args(argv)
    if not (args.warnings or sys.warnoptions or os.environ.get("EARLYEXP_WARNINGS")):
        quiet_third_party()
    try:
        return int(args.fn(args))
    except ValueError as e:
        print(f"earlyexp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
