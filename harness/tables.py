"""The results table in three formats (Markdown, CSV, LaTeX booktabs) and the difficulty breakdown.

Every format prints the same numbers: the summary rows of :func:`earlyexp.harness.report.summary_rows`
(ID = the ``test`` panel, OOD = the ``ood`` panel, success with its Wilson 95% interval) and
the :class:`~earlyexp.harness.difficulty.BucketRow` breakdown.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from typing import Any

from earlyexp.harness.difficulty import LABELS, BucketRow

SPLITS = (("id", "ID"), ("ood", "OOD"))


def short_env(env: str) -> str:
    """``EarlyExp/FrozenLake-v0`` -> ``FrozenLake-v0``."""
    return env.removeprefix("EarlyExp/")


def pooled(row: dict[str, Any]) -> dict[str, float] | None:
    """Invalid-action rate, steps and tokens per episode over both panels (None: one is missing)."""
    i, o = row["id"], row["ood"]
    if not (i and o):
        return None
    both = (i, o)
    episodes = sum(s["n"] for s in both)
    steps = sum(s["steps"] * s["n"] for s in both)
    invalid = sum(s["invalid_rate"] * s["steps"] * s["n"] for s in both)
    return {
        "invalid_rate": invalid / max(steps, 1e-9),
        "steps": steps / max(episodes, 1),
        "tokens": sum(s["tokens"] * s["n"] for s in both) / max(episodes, 1),
    }


def pct(s: dict | None) -> str:
    """``success [ci_low, ci_high]`` in % of a split summary (``-`` when there is none)."""
    if not s:
        return "-"
    return f"{100 * s['success']:.1f} [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table: ID and OOD success (%) with Wilson 95% intervals and more."""
    lines = [
        "| env | method | ID success % [95% CI] | OOD success % [95% CI] | ID score | OOD score "
        "| invalid % | steps | tokens | n (ID/OOD) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        i, o, p = r["id"], r["ood"], pooled(r)
        head = f"| {short_env(r['env'])} | {r['method']}{' (error)' if r['error'] else ''} "
        if p is None:
            lines.append(head + f"| {pct(i)} | {pct(o)} | - | - | - | - | - | - | - |")
            continue
        lines.append(
            head + f"| {pct(i)} | {pct(o)} | {i['score']:.3f} | {o['score']:.3f} "
            f"| {100 * p['invalid_rate']:.1f} | {p['steps']:.1f} | {p['tokens']:.0f} "
            f"| {i['n']}/{o['n']} | {r.get('seconds', 0):.0f} |"
        )
    return "\n".join(lines)


CSV_FIELDS = (
    "env", "method", "seeds",
    *(f"{k}_{f}" for k, _ in SPLITS for f in ("n", "success", "ci_low", "ci_high", "score")),
    "invalid_rate", "steps", "tokens", "wall_s", "error",
)  # fmt: skip


def csv_table(rows: list[dict[str, Any]]) -> str:
    """The results table as CSV: rates as fractions in [0, 1], one row per (env, method)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        line: dict[str, Any] = {
            "env": r["env"], "method": r["method"], "error": r["error"] or "",
            "seeds": " ".join(map(str, r["seeds"])), "wall_s": r.get("seconds", 0),
        }  # fmt: skip
        for key, _ in SPLITS:
            for f in ("n", "success", "ci_low", "ci_high", "score"):
                line[f"{key}_{f}"] = _num(r[key][f]) if r[key] else ""
        line.update({k: _num(v) for k, v in (pooled(r) or {}).items()})
        w.writerow(line)
    return buf.getvalue()


def _seed_rate(seed: dict[str, Any], key: str) -> float | None:
    s = seed.get(key)
    return None if not s else s["success"]


def _spread(rates: list[float | None]) -> str:
    """``mean ± sd`` in % over the seeds (sample standard deviation)."""
    have = [100 * r for r in rates if r is not None]
    if len(have) < 2:
        return "-"
    return f"{statistics.mean(have):.1f} ± {statistics.stdev(have):.1f}"


def seeds_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown: each seed's ID and OOD success % and their mean ± sd ("" when no row has 2+ seeds).

    ``rows``: :func:`earlyexp.harness.report.seed_rows`.
    """
    if not rows:
        return ""
    lines = [
        "## Per seed",
        "",
        "Success % of each seed's panel (seeds in order, separated by /), then the mean and "
        "sample standard deviation over seeds; the main table pools the episodes instead.",
        "",
        "| env | method | seeds | ID % per seed | ID mean ± sd | OOD % per seed | OOD mean ± sd |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = r["seeds"]
        cols = [short_env(r["env"]), r["method"], "/".join(str(s) for s in seeds)]
        for key in ("id", "ood"):
            rates = [_seed_rate(v, key) for v in seeds.values()]
            cols += [
                "/".join("-" if x is None else f"{100 * x:.1f}" for x in rates),
                _spread(rates),
            ]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def seeds_csv(rows: list[dict[str, Any]]) -> str:
    """Per seed as CSV: one row per (env, method, seed), rates as fractions in [0, 1]."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("env", "method", "seed", "id_n", "id_success", "ood_n", "ood_success"))
    for r in rows:
        for seed, per in r["seeds"].items():
            vals = []
            for key in ("id", "ood"):
                s = per.get(key)
                vals += [s["n"], _num(s["success"])] if s else ["", ""]
            w.writerow([r["env"], r["method"], seed, *vals])
    return buf.getvalue()


def _num(x: float | int) -> float | int:
    return x if isinstance(x, int) else round(float(x), 6)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _tex_pct(s: dict | None) -> str:
    if not s:
        return "--"
    lo, hi = 100 * s["ci_low"], 100 * s["ci_high"]
    return f"{100 * s['success']:.1f} {{\\scriptsize [{lo:.1f}, {hi:.1f}]}}"


def latex_table(rows: list[dict[str, Any]], caption: str = "") -> str:
    """The results table as a LaTeX ``tabular`` with booktabs rules (needs the booktabs package)."""
    lines = [
        f"% {caption}" if caption else "% earlyexp results",
        "% needs \\usepackage{booktabs}",
        "\\begin{tabular}{llllrrrrr}",
        "\\toprule",
        "Env & Method & ID success (\\%) & OOD success (\\%) & ID score & OOD score "
        "& Invalid (\\%) & Steps & $n$ (ID/OOD) \\\\",
        "\\midrule",
    ]
    last = None
    for r in rows:
        if last is not None and r["env"] != last:
            lines.append("\\midrule")
        env = tex(short_env(r["env"])) if r["env"] != last else ""
        last = r["env"]
        i, o, p = r["id"], r["ood"], pooled(r)
        cols = [
            env,
            tex(r["method"] + (" (error)" if r["error"] else "")),
            _tex_pct(i),
            _tex_pct(o),
        ]
        if p is None:
            cols += ["--"] * 5
        else:
            cols += [f"{i['score']:.3f}", f"{o['score']:.3f}", f"{100 * p['invalid_rate']:.1f}",
                     f"{p['steps']:.1f}", f"{i['n']}/{o['n']}"]  # fmt: skip
        lines.append(" & ".join(cols) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _buckets(rows: Sequence[BucketRow]) -> list[str]:
    present = {r.bucket for r in rows}
    return [b for b in LABELS if b in present]


def difficulty_markdown(rows: Sequence[BucketRow], tasks: dict[tuple[str, str], dict]) -> str:
    """Markdown: per env, success % (wins/n) of each method and split in each bucket.

    ``tasks``: ``{(env, split): {bucket: panel tasks}}`` for the line that says how the
    evaluated tasks spread over the buckets.
    """
    if not rows:
        return ""
    out = [
        "## Success by difficulty",
        "",
        "Tasks bucketed by the expert's number of steps on them; each cell: success % "
        "(successes / episodes, pooled over seeds).",
    ]
    for env in dict.fromkeys(r.env for r in rows):
        sub = [r for r in rows if r.env == env]
        labels = _buckets(sub)
        spread = "; ".join(
            f"{split}: " + ", ".join(f"{b} step{'s' * (b != '1')}: {n}" for b, n in t.items())
            for (e, split), t in tasks.items()
            if e == env and t
        )
        out += ["", f"### {short_env(env)}", "", f"Evaluated tasks per bucket: {spread}.", ""]
        out.append(
            "| method | split | " + " | ".join(f"{b} step{'s' * (b != '1')}" for b in labels) + " |"
        )
        out.append("|---|---|" + "---:|" * len(labels))
        for method, split in dict.fromkeys((r.method, r.split) for r in sub):
            cell = {r.bucket: r for r in sub if (r.method, r.split) == (method, split)}
            vals = [
                f"{100 * cell[b].success:.1f} ({cell[b].wins}/{cell[b].n})" if b in cell else "-"
                for b in labels
            ]
            name = "ID" if split == "test" else "OOD" if split == "ood" else split
            out.append(f"| {method} | {name} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def difficulty_csv(rows: Sequence[BucketRow]) -> str:
    """The breakdown as CSV, one row per (env, method, split, bucket)."""
    buf = io.StringIO()
    fields = ("env", "method", "split", "expert_steps", "n", "successes", "success", "ci_low",
              "ci_high")  # fmt: skip
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in rows:
        w.writerow([r.env, r.method, r.split, r.bucket, r.n, r.wins, _num(r.success),
                    _num(r.ci_low), _num(r.ci_high)])  # fmt: skip
    return buf.getvalue()


def difficulty_latex(rows: Sequence[BucketRow]) -> str:
    """The breakdown as a booktabs ``tabular``: success % (n) per bucket of expert steps."""
    labels = _buckets(rows)
    lines = [
        "% success by difficulty (buckets of the expert's steps); needs \\usepackage{booktabs}",
        "\\begin{tabular}{lll" + "r" * len(labels) + "}",
        "\\toprule",
        f" & & & \\multicolumn{{{len(labels)}}}{{c}}{{Expert steps}} \\\\",
        f"\\cmidrule(l){{4-{3 + len(labels)}}}",
        "Env & Method & Split & " + " & ".join(tex(b) for b in labels) + " \\\\",
        "\\midrule",
    ]
    last = None
    for env, method, split in dict.fromkeys((r.env, r.method, r.split) for r in rows):
        if last is not None and env != last:
            lines.append("\\midrule")
        cell = {r.bucket: r for r in rows if (r.env, r.method, r.split) == (env, method, split)}
        vals = [
            f"{100 * cell[b].success:.0f} {{\\scriptsize ({cell[b].n})}}" if b in cell else "--"
            for b in labels
        ]
        name = "ID" if split == "test" else "OOD" if split == "ood" else tex(split)
        lines.append(
            " & ".join([tex(short_env(env)) if env != last else "", tex(method), name, *vals])
            + " \\\\"
        )
        last = env
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)
