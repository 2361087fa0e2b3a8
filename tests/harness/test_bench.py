import dataclasses
import json

import pytest

from earlyexp.harness.bench import BenchConfig, run_bench
from earlyexp.harness.cli import main

CONTROL = ["EarlyExp/FrozenLake-v0", "EarlyExp/Sokoban-v0"]


def test_bench_writes_run_folder_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL, methods=["random", "expert"], out=str(out))
    run_bench(cfg)
    results = json.loads((out / "results.json").read_text())
    rows = {(r["env"], r["method"]): r for r in results["summary"]}
    assert len(rows) == 4
    for env in CONTROL:
        assert rows[(env, "expert")]["id"]["success"] == 1.0
        assert rows[(env, "expert")]["ood"]["n"] == 3
    table = (out / "table.md").read_text()
    assert "ID success" in table and "FrozenLake-v0 | expert | 100.0" in table
    assert (out / "plots" / "success.png").stat().st_size > 1000
    # resume: finished cells are not run again
    from earlyexp.harness import bench

    calls = []
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: calls.append(a) or {})
    run_bench(cfg)
    assert calls == []


def test_bench_reruns_a_failed_cell(tmp_path):
    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["expert"], out=str(out))
    run_bench(cfg)
    cell = next((out / "cells").glob("*.json"))
    data = json.loads(cell.read_text())
    cell.write_text(json.dumps({**data, "status": "error", "episodes": []}))
    run_bench(cfg)
    assert json.loads(cell.read_text())["status"] == "done"


def test_bench_refuses_to_mix_configs(tmp_path):
    out = tmp_path / "run"
    run_bench(BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out)))
    with pytest.raises(ValueError, match="--fresh"):
        run_bench(
            BenchConfig(
                profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out), eval_tasks=5
            )
        )


def test_a_cell_written_before_a_config_field_existed_resumes_at_its_default(tmp_path, monkeypatch):
    from earlyexp.harness import bench

    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out))
    run_bench(cfg)
    (path,) = (out / "cells").glob("*.json")
    record = json.loads(path.read_text())
    config = get_method_config("random")
    name = next(f.name for f in dataclasses.fields(config)
                if record["config"][f.name] == getattr(config, f.name))  # fmt: skip
    del record["config"][name]  # as an earlier version wrote it
    path.write_text(json.dumps(record))
    calls = []
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: calls.append(a) or {})
    run_bench(cfg)
    assert calls == []
    record["config"][name] = "another value"  # a recorded value still has to match
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=name):
        run_bench(cfg)


def test_an_interrupted_cell_resumes_only_under_its_own_config(tmp_path):
    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out))
    run_bench(cfg)
    (path,) = (out / "cells").glob("*.json")
    path.unlink()  # as if killed: the folder keeps its work, no result was written
    claimed = out / "cells" / path.stem / "cell_config.json"
    record = json.loads(claimed.read_text())
    run_bench(cfg)  # the same config: the cell runs again in its folder
    assert path.exists()
    path.unlink()
    claimed.write_text(json.dumps({**record, "eval_tasks": record["eval_tasks"] + 1}))
    with pytest.raises(ValueError, match="interrupted cell .* changed: eval_tasks"):
        run_bench(cfg)


def get_method_config(name: str):
    from earlyexp.agents.methods import get_method

    return get_method(name).config()


def test_fresh_deletes_the_cells_of_the_earlier_run(tmp_path):
    out = tmp_path / "run"
    run_bench(BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out)))
    assert list((out / "cells").glob("random*.json"))
    cfg = BenchConfig(
        profile="smoke", envs=CONTROL[:1], methods=["expert"], out=str(out), fresh=True
    )
    run_bench(cfg)
    assert not list((out / "cells").glob("random*"))  # an interrupted rerun cannot resume it
    assert "random" not in (out / "table.md").read_text()


def test_bench_ppo_cell_trains_and_evaluates(tmp_path):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "run"
    run_bench(BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["ppo"], out=str(out)))
    cell = json.loads(next((out / "cells").glob("ppo*.json")).read_text())
    assert cell["status"] == "done" and len(cell["episodes"]) == 6
    assert next((out / "cells").glob("ppo*/ppo.zip")).exists()


def test_cli_reports_bad_arguments(capsys, tmp_path):
    assert main(["bench", "--profile", "nope", "--out", str(tmp_path)]) == 2
    assert "Expect a profile" in capsys.readouterr().err
    assert (
        main(["bench", "--profile", "smoke", "--envs", "EarlyExp/Nope-v0", "--out", str(tmp_path)])
        == 2
    )
    assert (
        main(["bench", "--profile", "smoke", "--methods", "telepathy", "--out", str(tmp_path)]) == 2
    )


def test_cli_envs_and_play(capsys):
    assert main(["envs", "EarlyExp/FrozenLake-v0"]) == 0
    out = capsys.readouterr().out
    assert "test: 500 tasks, hash" in out and "ood: 500 tasks" in out
    assert main(["play", "EarlyExp/Sokoban-v0", "--policy", "expert", "--episodes", "3"]) == 0
    assert "3/3 episodes succeeded" in capsys.readouterr().out


def test_cli_play_human_reads_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("UP!\nup\n"))
    assert main(["play", "EarlyExp/FrozenLake-v0", "--split", "test", "--task", "0"]) == 0
    out = capsys.readouterr().out
    assert "Invalid action" in out or "Malformed action" in out


def test_bench_refuses_to_resume_after_the_profile_budgets_changed(tmp_path, monkeypatch):
    from earlyexp.harness import profiles

    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out))
    run_bench(cfg)
    smoke = profiles.PROFILES["smoke"]
    more = (*smoke.overrides, profiles.Override(profiles.MethodConfig, {"eval_tasks": 4}))
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(smoke, overrides=more))
    with pytest.raises(ValueError, match="changed: eval_tasks"):
        run_bench(cfg)


def test_profile_overrides_and_set_reject_misspelt_fields():
    from earlyexp.agents.methods.common import LLMConfig
    from earlyexp.harness.profiles import Override

    with pytest.raises(ValueError, match="group_sise.*|batch_size"):
        Override(LLMConfig, {"group_sise": 4})
    with pytest.raises(ValueError, match="Expect fields of RandomConfig.*batch_size"):
        run_bench(BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"],
                              set=["random.batch_sise=2"], out="/nonexistent"))  # fmt: skip
    with pytest.raises(ValueError, match="METHOD.FIELD=VALUE"):
        run_bench(BenchConfig(profile="smoke", methods=["random"], set=["lr=1"]))


def test_set_configures_the_init_cell_a_method_starts_from(tmp_path):
    from earlyexp.harness.bench import plan_cells
    from earlyexp.harness.profiles import get_profile

    cfg = BenchConfig(profile="quick", envs=CONTROL[:1], methods=["grpo"], init=["il"],
                      set=["il.threads=1", "grpo.threads=1"], out=str(tmp_path))  # fmt: skip
    cells = plan_cells(cfg, get_profile("quick"))
    assert [(c.method.name, c.config.threads) for c in cells] == [("il", 1), ("grpo", 1)]
    with pytest.raises(ValueError, match="or run as a starting point.*: iwm"):
        plan_cells(dataclasses.replace(cfg, set=["iwm.threads=1"]), get_profile("quick"))


def test_profile_resolves_typed_configs_in_layers():
    from earlyexp.agents.methods import get_method
    from earlyexp.harness.profiles import get_profile

    quick, il = get_profile("quick"), get_method("il")
    fl = quick.config_for(il, "EarlyExp/FrozenLake-v0")
    assert (fl.window, fl.max_new_tokens, fl.steps, fl.threads) == (0, 8, 1500, 2)  # tag, profile
    ws = quick.config_for(il, "EarlyExp/WebShop-v0", {"lr": 0.01})
    assert (ws.eval_tasks, ws.steps, ws.max_new_tokens, ws.lr) == (10, 100, 32, 0.01)
    assert (ws.window, ws.max_len, fl.max_len) == (1, 2048, 1024)
    fb = quick.config_for(get_method("expert"), "EarlyExp/FlightBooking-v0")
    assert fb.eval_tasks == 10 and quick.config_for(il, "EarlyExp/FlightBooking-v0").eval_tasks == 3


def test_bench_methods_list_is_not_split_into_characters(tmp_path):
    out = tmp_path / "run"
    run_bench(BenchConfig(profile="smoke", envs=CONTROL[:1], methods="random,expert", out=str(out)))
    assert sorted(p.name.split("__")[0] for p in (out / "cells").glob("*.json")) == [
        "expert", "random"
    ]  # fmt: skip


def test_http_model_is_refused_for_methods_that_train(tmp_path):
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["il"],
                      model="http://127.0.0.1:9/v1#m", out=str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="il train weights"):
        run_bench(cfg)
    assert not (tmp_path / "cells").exists()


def test_help_method_prints_the_config_fields(capsys):
    assert main(["bench", "--help-method", "il"]) == 0
    out = capsys.readouterr().out
    assert "ILConfig" in out and "sft_batch_size" in out and "Peak learning rate" in out


def test_ablate_sweeps_a_field_and_plots_success(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["ablate", "--method", "expert", "--field", "eval_tasks", "--values", "2,3",
            "--profile", "smoke", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = (out / "ablation.md").read_text()
    assert "| 2 | 100.0" in table and "| 3 | 100.0" in table
    assert (out / "ablation.png").stat().st_size > 1000
    assert (
        json.loads((out / "eval_tasks=3" / "results.json").read_text())["summary"][0]["id"]["n"]
        == 3
    )


def test_ablate_holds_set_and_eval_tasks_fixed_across_the_sweep(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["ablate", "--method", "expert", "--field", "eval_tasks", "--values", "2,3",
            "--profile", "smoke", "--set", "expert.batch_size=4", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    for value in ("2", "3"):
        config = json.loads((out / f"eval_tasks={value}" / "results.json").read_text())["config"]
        assert config["set"] == ["expert.batch_size=4", f"expert.eval_tasks={value}"]
    assert json.loads((out / "ablation.json").read_text())["set"] == ["expert.batch_size=4"]
    clash = ["ablate", "--method", "expert", "--field", "eval_tasks", "--values", "2",
             "--profile", "smoke", "--out", str(tmp_path / "b")]  # fmt: skip
    assert main([*clash, "--set", "expert.eval_tasks=5"]) == 2
    assert "expert.eval_tasks=5 would give every run the same value" in capsys.readouterr().err
    assert main([*clash, "--eval-tasks", "4"]) == 2
    assert "--eval-tasks 4 would give every run the same value" in capsys.readouterr().err
    assert not (tmp_path / "b" / "eval_tasks=2").exists()


def _bad_cells(good: dict) -> dict[str, bytes]:
    text = json.dumps(good).encode()
    return {
        "truncated": text[: len(text) // 2],
        "empty": b"",
        "not utf-8": b"\xff\xfe" + text,
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "a list": b"[1, 2]",
        "null": b"null",
        "no episodes field": json.dumps(
            {k: v for k, v in good.items() if k != "episodes"}
        ).encode(),
        "episode of the wrong shape": json.dumps(
            {**good, "episodes": [{"split": "test"}]}
        ).encode(),
        "episode not an object": json.dumps({**good, "episodes": [1]}).encode(),
        "bool as a seed": json.dumps({**good, "seed": True}).encode(),
        "seconds as text": json.dumps({**good, "seconds": "1.5"}).encode(),
        "another cell": json.dumps({**good, "seed": good["seed"] + 1}).encode(),
    }


def test_resume_moves_unreadable_cell_files_aside_and_reruns_them(tmp_path):
    from earlyexp.harness.bench import CellFileWarning

    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random", "expert"], out=str(out))
    run_bench(cfg)
    cells = sorted((out / "cells").glob("*.json"))
    expert = next(p for p in cells if p.name.startswith("expert"))
    random_cell = next(p for p in cells if p.name.startswith("random"))
    good = json.loads(expert.read_text())
    untouched = random_cell.read_bytes()
    for why, content in _bad_cells(good).items():
        expert.write_bytes(content)
        with pytest.warns(CellFileWarning) as caught:
            run_bench(cfg)  # the run continues: report written, the cell ran again
        messages = [str(w.message) for w in caught if w.category is CellFileWarning]
        assert len(messages) == 1 and str(expert) in messages[0], why
        asides = sorted(expert.parent.glob(expert.name + ".unreadable*"))
        assert content in [p.read_bytes() for p in asides], why  # moved aside, not deleted
        assert json.loads(expert.read_text())["status"] == "done", why
        assert random_cell.read_bytes() == untouched  # the good cell was not run again
        rows = json.loads((out / "results.json").read_text())["summary"]
        assert {r["method"] for r in rows} == {"random", "expert"}, why
    assert len(list(expert.parent.glob(expert.name + ".unreadable*"))) == len(_bad_cells(good))


def test_unreadable_run_config_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    cfg = BenchConfig(profile="smoke", envs=CONTROL[:1], methods=["random"], out=str(out))
    run_bench(cfg)
    (out / "config.json").write_text('{"profile": "smo')
    with pytest.raises(ValueError, match="config.json.*--fresh"):
        run_bench(cfg)


def test_ablation_table_counts_branch_samples_and_says_when_k_saturates(tmp_path):
    from earlyexp.harness.ablation import AblationConfig, _table, branch_counts

    runs = {}
    for k, (samples, short) in {"2": (10, 0), "4": (15, 5), "8": (15, 25)}.items():
        cell = tmp_path / f"K={k}" / "cells" / "iwm__x__s0"
        cell.mkdir(parents=True)
        (cell / "branch_stats.json").write_text(
            json.dumps({"samples": samples, "shortfall": short})
        )
        runs[k] = branch_counts(tmp_path / f"K={k}")
    assert runs == {"2": (10, 0), "4": (15, 5), "8": (15, 25)}
    assert branch_counts(tmp_path) is None  # no branching cells
    row = {"id": {"success": 0.5, "ci_low": 0.4, "ci_high": 0.6}, "ood": None}
    table = _table(AblationConfig(), [(k, row, b) for k, b in runs.items()])
    assert "| 4 | 50.0 [40.0, 60.0] | - | 15 | 5 |" in table
    assert "trained on the same data" in table


def test_the_model_defaults_to_the_profiles_and_is_recorded(tmp_path, monkeypatch):
    from earlyexp.harness import bench

    seen = []
    real = bench.run_cell
    monkeypatch.setattr(
        bench, "run_cell", lambda c, cfg, o: seen.append(cfg.model) or real(c, cfg, o)
    )
    for profile, model, want in [("standard", "", "tiny:base"), ("standard", "tiny", "tiny"),
                                 ("smoke", "", "tiny")]:  # fmt: skip
        out = tmp_path / f"{profile}-{model}"
        run_bench(BenchConfig(profile=profile, envs=CONTROL[:1], methods=["random"], seeds=[0],
                              model=model, eval_tasks=2, out=str(out)))  # fmt: skip
        assert seen.pop() == want
        assert json.loads((out / "config.json").read_text())["model"] == want
        assert f"profile {profile}, model {want}" in (out / "table.md").read_text()
    # a run made under the profile's default resumes only under the same model
    with pytest.raises(ValueError, match="changed"):
        run_bench(BenchConfig(profile="standard", envs=CONTROL[:1], methods=["random"],
                              seeds=[0], model="tiny", eval_tasks=2, out=str(tmp_path / "standard-")))  # fmt: skip
