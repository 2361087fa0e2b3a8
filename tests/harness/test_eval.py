"""``earlyexp eval``: the grading JSON, policy specs, private panels and ``--check``."""

from __future__ import annotations

import hashlib
import json
import sys

import gymnasium as gym
import pytest

from earlyexp import __version__
from earlyexp.envs.core import text_env
from earlyexp.harness.cli import main
from earlyexp.harness.grading import EvalConfig, SafeAct, check, grade

FL = "EarlyExp/FrozenLake-v0"
POLICIES = '''
def first(obs, info):
    return info["available_actions"][0]

def flaky(obs, info):
    if "Right" in obs:  # after its first move
        raise ValueError("no idea")
    return "Right"

class Expertish:
    """A Policy object: replies with the expert's action."""

    needs_expert = True
    tokenizer = None

    def complete(self, prompts, sampling):
        from earlyexp.agents.policy import Completion
        from earlyexp.agents.prompting import format_action

        return [Completion(format_action(p.expert_action)) for p in prompts]
'''


@pytest.fixture
def student(tmp_path, monkeypatch):
    (tmp_path / "mypolicies.py").write_text(POLICIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EARLYEXP_PANEL_SALT", raising=False)
    yield tmp_path
    sys.modules.pop("mypolicies", None)


def test_the_grading_json_says_what_was_graded_on_which_panel(student):
    record = grade(EvalConfig(policy="mypolicies:first", env=FL, tasks=7, out="g.json"))
    assert json.loads((student / "g.json").read_text()) == record
    assert [t["task"] for t in record["tasks"]] == list(range(7))
    assert set(record["tasks"][0]) >= {"task", "score", "success", "steps", "invalid"}
    public = text_env(gym.make(FL)).panel_hash("test")
    assert record["panel"] == {"split": "test", "size": 500, "salted": False, "hash": public,
                               "tasks": 7}  # fmt: skip
    assert record["env"] == {"id": FL, "version": 0, "kwargs": {}}
    assert record["earlyexp_version"] == __version__
    source = (student / "mypolicies.py").read_bytes()
    assert record["policy"]["sha256"] == hashlib.sha256(source).hexdigest()
    assert record["policy"]["kind"] == "python" and record["policy"]["spec"] == "mypolicies:first"
    wins = sum(t["success"] for t in record["tasks"])
    assert record["summary"]["success"] == pytest.approx(wins / 7)
    assert check(student / "g.json", None)[0]


def test_policy_objects_files_and_errors(student):
    expert = grade(EvalConfig(policy="mypolicies:Expertish", env=FL, tasks=4, out="e.json"))
    assert expert["summary"]["success"] == 1.0 and expert["policy"]["type"] == "Expertish"
    by_file = grade(EvalConfig(policy="mypolicies.py:first", env=FL, tasks=2, out="f.json"))
    assert by_file["policy"]["file"].endswith("mypolicies.py")
    flaky = grade(EvalConfig(policy="mypolicies:flaky", env=FL, tasks=3, out="x.json"))
    assert flaky["policy_errors"]["count"] > 0 and "no idea" in flaky["policy_errors"]["first"]
    assert flaky["summary"]["invalid_rate"] > 0  # a raising step is an invalid action
    safe = SafeAct(lambda o, i: 1 / 0)
    assert safe("", {}) == "" and "ZeroDivisionError" in safe.errors[0]


def test_a_private_panel_needs_its_salt_to_check(student, monkeypatch, capsys):
    public = grade(EvalConfig(policy="mypolicies:first", env=FL, tasks=5, out="pub.json"))
    monkeypatch.setenv("EARLYEXP_PANEL_SALT", "course secret")
    private = grade(EvalConfig(policy="mypolicies:first", env=FL, tasks=5, out="priv.json"))
    assert private["panel"]["salted"] and private["panel"]["hash"] != public["panel"]["hash"]
    assert "course secret" not in (student / "priv.json").read_text()
    assert check("priv.json", "course secret")[0]
    assert not check("priv.json", "a guess")[0]
    monkeypatch.delenv("EARLYEXP_PANEL_SALT")
    assert main(["eval", "--check", "priv.json"]) == 1
    assert "pass the instructor's salt" in capsys.readouterr().out
    # the flag gives the same panel as the environment variable
    argv = ["eval", "--policy", "mypolicies:first", "--tasks", "5", "--out", "flag.json"]
    assert main([*argv, "--panel-salt", "course secret"]) == 0
    flag = json.loads((student / "flag.json").read_text())
    assert flag["panel"]["hash"] == private["panel"]["hash"]


def test_check_catches_an_edited_file(student, capsys):
    grade(EvalConfig(policy="mypolicies:first", env=FL, tasks=5, out="g.json"))
    record = json.loads((student / "g.json").read_text())
    record["summary"]["success"] = 1.0
    (student / "bad.json").write_text(json.dumps(record))
    ok, lines = check(student / "bad.json", None)
    assert not ok and any("summary does not match" in line for line in lines)
    record = json.loads((student / "g.json").read_text())
    record["panel"]["hash"] = "0" * 16
    record["tasks"] = record["tasks"][1:]
    (student / "bad.json").write_text(json.dumps(record))
    assert main(["eval", "--check", "bad.json"]) == 1
    out = capsys.readouterr().out
    assert "panel hash 0000000000000000 does not match" in out and "first N in order" in out
    (student / "junk.json").write_text("{}")
    assert main(["eval", "--check", "junk.json"]) == 2


def test_bad_policy_specs_are_clear_errors(student, capsys):
    assert main(["eval", "--policy", "nosuchmodule:act", "--tasks", "1"]) == 2
    assert "Expect --policy module:function" in capsys.readouterr().err
    assert main(["eval", "--policy", "/no/such/checkpoint", "--tasks", "1"]) == 2
    assert "checkpoint folder" in capsys.readouterr().err
    assert main(["eval", "--policy", "mypolicies:first", "--split", "train"]) == 2
    assert main(["eval", "--policy", "mypolicies:first", "--env-arg", "nope=1"]) == 2


def test_a_checkpoint_is_graded_with_its_fingerprint(student, tmp_path_factory, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.setenv("EARLYEXP_CACHE", str(tmp_path_factory.mktemp("cache")))
    record = grade(EvalConfig(policy="tiny:test", env=FL, tasks=2, out="t.json", device="cpu"))
    assert record["policy"]["kind"] == "checkpoint" and len(record["policy"]["sha256"]) == 64
    assert record["tasks"][0]["tokens"] > 0
