"""``earlyexp bench --methods prompt,il`` smoke run with a tiny budget."""

from __future__ import annotations

import json

from earlyexp.harness.cli import main

FL = "EarlyExp/FrozenLake-v0"


def test_bench_cli_runs_prompt_and_il(tiny_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EARLYEXP_CACHE", str(tiny_path.parent.parent))  # reuse the built model
    out = tmp_path / "run"
    argv = ["bench", "--profile", "smoke", "--methods", "prompt,il", "--envs", FL,
            "--model", "tiny:test", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "prompt" in table and "il" in table
    cells = {p.name: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert len(cells) == 2
    for cell in cells.values():
        assert cell["status"] == "done", cell.get("trace")
        eps = cell["episodes"]
        assert sorted({e["split"] for e in eps}) == ["ood", "test"]
        assert len(eps) == 2 * cell["config"]["eval_tasks"]
        assert all(e["tokens"] > 0 and e["steps"] >= 1 for e in eps)
    il_dir = out / "cells" / f"il__{FL.replace('/', '_')}__s0"
    assert (il_dir / "expert_sft.jsonl").exists() and (
        il_dir / "checkpoint" / "config.json"
    ).exists()
    assert (il_dir / "trajectories_test.jsonl").exists()
