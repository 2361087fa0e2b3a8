"""``earlyexp play``: player commands, arrow keys, the step counter and --env-arg."""

from __future__ import annotations

import io
import os
import pty

from earlyexp.harness.cli import main
from earlyexp.harness.play import arrow_action, command_of, env_kwargs, read_keys


def _play(monkeypatch, capsys, typed: str, *argv: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    assert main(["play", *argv]) == 0
    return capsys.readouterr().out


def test_quit_and_help_are_commands_not_actions(monkeypatch, capsys):
    out = _play(monkeypatch, capsys, ":help\nhelp\n:hint\nquit\nDown\n", "EarlyExp/FrozenLake-v0",
                "--task", "0")  # fmt: skip
    assert out.count("Player commands: :quit") == 3  # at the start, :help and help
    assert "hint: " in out
    assert "quit: episode 1 not finished" in out
    assert "\n> quit" not in out and "\n> Down" not in out  # neither was sent as an action


def test_every_step_prints_the_count_against_the_budget(monkeypatch, capsys):
    out = _play(monkeypatch, capsys, "Sideways\n:q\n", "EarlyExp/FrozenLake-v0", "--task", "0")
    assert "> Sideways    [step 1/8, invalid action]" in out
    out = _play(monkeypatch, capsys, "", "EarlyExp/Sokoban-v0", "--policy", "expert")
    assert "[step 1/" in out and "--- solved: score 1.000" in out and "1/1 episodes" in out


def test_arrow_escape_codes_in_a_line_are_moves(monkeypatch, capsys):
    assert [arrow_action(c) for c in ("\x1b[A", "\x1b[B", "\x1bOC", "^[[D", "Up", "x")] == [
        "Up", "Down", "Right", "Left", "Up", "x"
    ]  # fmt: skip
    out = _play(monkeypatch, capsys, "\x1b[B\n:q\n", "EarlyExp/FrozenLake-v0", "--task", "0")
    assert "> Down    [step 1/8]" in out


def test_a_key_press_plays_an_arrow_at_once_in_a_terminal():
    import tty

    master, slave = pty.openpty()
    try:
        tty.setcbreak(slave)  # as read_keys sets it before the first key arrives
        for typed, want in ((b"\x1b[A", "Up"), (b"\x1bOD", "Left"), (b"rig\x7fght\r", "right"),
                            (b"\x04", None)):  # fmt: skip
            os.write(master, typed)
            assert read_keys(slave, io.StringIO()) == want, typed
    finally:
        os.close(master)
        os.close(slave)


def test_commands_give_way_to_an_env_action_of_that_name():
    assert command_of("quit", set()) == "quit" and command_of(" :Q ", set()) == "quit"
    assert command_of("help", {"help"}) is None and command_of(":help", {"help"}) == "help"
    assert command_of(":nope", set()) == "unknown" and command_of("Up", {"up"}) is None


def test_env_args_reach_the_constructor(monkeypatch, capsys):
    assert env_kwargs(["symbols=legend", "max_steps=3", "x=[1, 2]"]) == {
        "symbols": "legend", "max_steps": 3, "x": [1, 2]
    }  # fmt: skip
    out = _play(monkeypatch, capsys, "", "EarlyExp/Sokoban-v0", "--policy", "random",
                "--env-arg", "symbols=legend", "--env-arg", "max_steps=3")  # fmt: skip
    assert "Legend:" in out and "[step 3/3" in out and "step 4/" not in out


def test_bad_env_args_are_clear_errors(capsys):
    assert main(["play", "EarlyExp/FrozenLake-v0", "--env-arg", "colour=red"]) == 2
    err = capsys.readouterr().err
    assert "Expect --env-arg names among" in err and "symbols" in err and "colour" in err
    assert main(["play", "EarlyExp/FrozenLake-v0", "--env-arg", "symbols"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
