"""docs/tutorial.md runs: every code block, in order, from a copy of examples/assignment/."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from earlyexp.harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```$", TUTORIAL, re.M | re.S)
ASSIGN = re.compile(r"^((?:\w+=\S+\s+)*)(.*)$")


def _run_shell(line: str, monkeypatch) -> None:
    """One line of a bash block: export, earlyexp (run in-process) or bash grade.sh."""
    if line.startswith("export "):
        name, _, value = line.removeprefix("export ").partition("=")
        monkeypatch.setenv(name, shlex.split(value)[0])
        return
    assigns, command = ASSIGN.match(line).groups()  # type: ignore[union-attr]
    env = dict(os.environ, **dict(a.split("=", 1) for a in assigns.split()))
    argv = shlex.split(command)
    if argv[0] == "earlyexp":
        assert not assigns, line
        assert main(argv[1:]) == 0, line
    elif argv[:2] == ["bash", "grade.sh"]:
        env["EARLYEXP"] = f"{sys.executable} -m earlyexp.harness.cli"
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        raise AssertionError(f"the tutorial runs only earlyexp and grade.sh lines: {line!r}")


def test_the_tutorial_has_python_and_shell_blocks():
    kinds = [kind for kind, _ in BLOCKS]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 3
    assert set(kinds) == {"python", "bash"}


def test_every_block_of_the_tutorial_runs(tmp_path, monkeypatch):
    work = tmp_path / "assignment"
    shutil.copytree(ROOT / "examples" / "assignment", work)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    monkeypatch.delenv("EARLYEXP_PANEL_SALT", raising=False)
    monkeypatch.delitem(sys.modules, "student_policy", raising=False)
    scope: dict = {}
    for i, (kind, code) in enumerate(BLOCKS):
        if kind == "python":
            exec(compile(code, f"tutorial block {i}", "exec"), scope)  # our own docs
        else:
            for line in code.strip().splitlines():
                _run_shell(line.strip(), monkeypatch)
    assert (work / "graded.json").exists()
    sys.modules.pop("student_policy", None)


def test_a_wrong_salt_fails_the_check(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "examples" / "assignment" / "student_policy.py", tmp_path)
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "g.json")
    args = ["eval", "--policy", "student_policy:act", "--tasks", "5", "--out", out]
    assert main([*args, "--panel-salt", "right"]) == 0
    assert main(["eval", "--check", out, "--panel-salt", "wrong"]) == 1
    assert main(["eval", "--check", out]) == 1  # no salt: cannot verify a private panel
    assert main(["eval", "--check", out, "--panel-salt", "right"]) == 0
    text = capsys.readouterr().out
    assert "does not match" in text and "pass the instructor's salt" in text
    sys.modules.pop("student_policy", None)


@pytest.mark.parametrize("script", ["grade.sh"])
def test_the_grading_script_is_valid_bash(script):
    path = ROOT / "examples" / "assignment" / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
