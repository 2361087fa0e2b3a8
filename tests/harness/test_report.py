"""The report: tables and figures of a run, redrawn from results.json alone."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from earlyexp.agents.records import EpisodeRecord
from earlyexp.harness import difficulty
from earlyexp.harness.bench import CellResult
from earlyexp.harness.cli import main
from earlyexp.harness.report import report_run, summary_rows, write_report

FL = "EarlyExp/FrozenLake-v0"
CONFIG = {"profile": "smoke"}
EXPERT_STEPS = [1, 1, 2, 3, 5, 9]  # the expert's steps on tasks 0..5 (made up for the test)


def _cell(method: str, seed: int, solved: set[int], env: str = FL) -> CellResult:
    eps = [
        EpisodeRecord(split, t, float(t in solved), t in solved, EXPERT_STEPS[t] + 1, 0)
        for split in ("test", "ood")
        for t in range(len(EXPERT_STEPS))
    ]
    config = {"eval_tasks": len(EXPERT_STEPS), "eval_subset": 4}
    return CellResult(method, env, seed, config, episodes=eps, seconds=1.5)


def _expert() -> CellResult:
    eps = [
        EpisodeRecord(split, t, 1.0, True, s, 0)
        for split in ("test", "ood")
        for t, s in enumerate(EXPERT_STEPS)
    ]
    return CellResult("expert", FL, 0, {"eval_tasks": 6}, episodes=eps)


@pytest.fixture
def run(tmp_path):
    """A run folder with a random, an expert and a two-seed RL row (curves, success@k)."""
    out = tmp_path / "run"
    cells = [_cell("zeta", 0, {0}), _expert(), _cell("grpo+il", 0, {0, 1}),
             _cell("grpo+il", 1, {0, 1, 2})]  # fmt: skip
    for seed in (0, 1):
        folder = out / "cells" / f"grpo+il__EarlyExp_FrozenLake-v0__s{seed}"
        folder.mkdir(parents=True)
        evals = [{"iteration": i, "samples": 64 * i, "wall_s": 2.0 * i, "success": 0.25 * i,
                  "score": 0.25 * i} for i in range(3)]  # fmt: skip
        (folder / "curve.json").write_text(json.dumps({"eval": evals, "train": []}))
    write_report(out, cells, CONFIG)
    return out


def test_methods_keep_the_run_order_not_the_alphabet(run):
    rows = json.loads((run / "results.json").read_text())["summary"]
    assert [r["method"] for r in rows] == ["zeta", "expert", "grpo+il"]
    table = (run / "table.md").read_text()
    assert table.index("| zeta |") < table.index("| expert |") < table.index("| grpo+il |")


def test_results_json_holds_curves_and_expert_steps(run):
    results = json.loads((run / "results.json").read_text())
    files = results["cell_files"]
    assert set(files) == {f"grpo+il__EarlyExp_FrozenLake-v0__s{s}" for s in (0, 1)}
    assert files["grpo+il__EarlyExp_FrozenLake-v0__s1"]["curve"]["eval"][2]["success"] == 0.5
    assert results["expert_steps"][FL]["test"] == {str(t): s for t, s in enumerate(EXPERT_STEPS)}
    assert results["earlyexp_version"]


def test_report_redraws_everything_from_results_json_alone(run, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "results.json", alone / "results.json")  # no cells/ folder at all
    written = report_run(alone, measure=False)
    for name in ("table.md", "table.csv", "table.tex", "seeds.csv", "difficulty.csv",
                 "difficulty.tex"):  # fmt: skip
        assert (alone / name).read_text() == (run / name).read_text(), name
        assert alone / name in written
    for fig in ("success", "curves", "difficulty"):
        for ext in ("png", "pdf"):
            assert (alone / "plots" / f"{fig}.{ext}").stat().st_size > 1000, (fig, ext)


def test_figures_are_print_quality(run):
    image = pytest.importorskip("PIL.Image")
    with image.open(run / "plots" / "success.png") as png:
        assert min(png.info["dpi"]) >= 150
        assert png.size[0] >= 600  # 3.4 inches at 200 dpi for one env
    assert (run / "plots" / "success.pdf").read_bytes().startswith(b"%PDF")


def test_csv_and_latex_hold_the_numbers_of_the_table(run):
    rows = list(csv.DictReader(io.StringIO((run / "table.csv").read_text())))
    summary = json.loads((run / "results.json").read_text())["summary"]
    assert [r["method"] for r in rows] == [s["method"] for s in summary]
    grpo = next(r for r in rows if r["method"] == "grpo+il")
    assert float(grpo["id_success"]) == pytest.approx(5 / 12, abs=1e-6)  # 2 + 3 of 6 + 6 tasks
    assert grpo["id_n"] == "12" and grpo["seeds"] == "0 1"
    tex = (run / "table.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "FrozenLake-v0 & zeta & 16.7" in tex and "grpo+il" in tex
    assert "41.7 {\\scriptsize [" in tex


def test_rows_run_with_several_seeds_show_each_seed_and_the_spread(run):
    table = (run / "table.md").read_text()
    section = table[table.index("## Per seed") :]
    # grpo+il solves 2 of 6 tasks with seed 0 and 3 of 6 with seed 1, on both panels
    assert (
        "| FrozenLake-v0 | grpo+il | 0/1 | 33.3/50.0 | 41.7 ± 11.8 | 33.3/50.0 | 41.7 ± 11.8 |"
        in (section)
    )
    assert "| zeta |" not in section.split("\n\n## ")[0]  # one seed: nothing to spread
    rows = list(csv.DictReader(io.StringIO((run / "seeds.csv").read_text())))
    assert [(r["method"], r["seed"], r["id_n"]) for r in rows] == [
        ("grpo+il", "0", "6"),
        ("grpo+il", "1", "6"),
    ]
    assert float(rows[1]["ood_success"]) == pytest.approx(0.5)


def test_difficulty_breakdown_buckets_tasks_by_expert_steps(run):
    assert [difficulty.bucket_of(s) for s in (0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 99)] == [
        "1", "1", "2", "3-4", "3-4", "5-8", "5-8", "9-16", "9-16", "17+", "17+"
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO((run / "difficulty.csv").read_text())))
    zeta = {r["expert_steps"]: r for r in rows if (r["method"], r["split"]) == ("zeta", "test")}
    assert {b: (r["n"], r["successes"]) for b, r in zeta.items()} == {
        "1": ("2", "1"), "2": ("1", "0"), "3-4": ("1", "0"), "5-8": ("1", "0"), "9-16": ("1", "0")
    }  # fmt: skip
    md = (run / "table.md").read_text()
    assert "## Success by difficulty" in md and "test: 1 step: 2, 2 steps: 1" in md
    assert "| zeta | ID | 50.0 (1/2) | 0.0 (0/1) |" in md
    assert "Expert steps" in (run / "difficulty.tex").read_text()


def test_missing_expert_steps_are_measured_by_playing_the_expert(tmp_path):
    cells = [_cell("zeta", 0, {0})]
    need = difficulty.missing(cells, {})
    assert need == {(FL, "test"): 6, (FL, "ood"): 6}
    steps = difficulty.measure_expert_steps({(FL, "test"): 3})
    assert set(steps[FL]["test"]) == {"0", "1", "2"} and all(
        s >= 1 for s in steps[FL]["test"].values()
    )
    write_report(tmp_path, cells, CONFIG)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["expert_steps"][FL]["test"]["0"] == steps[FL]["test"]["0"]


def test_summary_and_cli_report_on_a_sweep_folder(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for k, solved in (("10", {0}), ("2", {0, 1, 2})):
        run = sweep / f"K={k}"
        run.mkdir(parents=True)
        cells = [_cell("iwm", 0, solved), _expert()]
        results = {"config": {"profile": "smoke", "envs": [FL], "set": [f"iwm.K={k}"]},
                   "summary": summary_rows(cells), "cells": [c.to_json() for c in cells]}  # fmt: skip
        (run / "results.json").write_text(json.dumps(results))
    assert main(["report", str(sweep), "--no-expert"]) == 0
    table = (sweep / "ablation.md").read_text()
    assert table.index("| 2 | 50.0") < table.index("| 10 | 16.7")  # values in numeric order
    assert (sweep / "ablation.png").stat().st_size > 1000
    assert (sweep / "K=2" / "plots" / "success.pdf").exists()
    assert "ablation.md" in capsys.readouterr().out


def test_report_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "Expect a run folder with a results.json" in capsys.readouterr().err


def test_durations_read_well():
    from earlyexp.harness.report import duration

    assert (duration(3.04), duration(600), duration(9000)) == ("3.0 s", "10.0 min", "2.50 h")
