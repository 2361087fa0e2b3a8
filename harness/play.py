"""``earlyexp play``: an env in the terminal, played by a person, the expert or a random policy.

A person types actions at the prompt. Lines that start with ``:`` are commands of the player,
never actions: ``:quit`` (``:q``), ``:help`` (``:h``, the action grammar and the actions valid
now) and ``:hint`` (the expert's next action). ``quit``, ``exit``, ``help`` and ``?`` work
too, unless the env has an action of that name. On the control envs the arrow keys are the
moves: in a terminal one key press plays ``Up``/``Down``/``Left``/``Right`` at once, and the
escape codes of an arrow typed into a line are read as the move. Every step prints the step
count against the budget. Constructor options come with ``--env-arg KEY=VALUE`` (repeat it)::

    earlyexp play EarlyExp/Sokoban-v0 --env-arg symbols=legend
    earlyexp play EarlyExp/WebShop-v0 --env-arg observation_mode=text_rich
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ARROWS = {"[A": "Up", "[B": "Down", "[C": "Right", "[D": "Left",
          "OA": "Up", "OB": "Down", "OC": "Right", "OD": "Left"}  # fmt: skip
"""The two characters after ESC that arrow keys send (normal and application cursor mode)."""
MOVES = ("Up", "Down", "Left", "Right")
COMMANDS = {"quit": "quit", "q": "quit", "exit": "quit", "help": "help", "h": "help",
            "?": "help", "hint": "hint"}  # fmt: skip
BARE = ("quit", "exit", "help", "?")
"""Commands that also work without the ``:`` when the env has no action of that name."""
COMMAND_HELP = (
    "Player commands: :quit (:q) ends the session, :help (:h) shows this, :hint shows the "
    "expert's next action."
)


@dataclass
class PlayConfig:
    """Arguments of ``earlyexp play``."""

    policy: str = "human"
    """Who acts: human (type actions at the prompt), expert or random."""
    episodes: int = 1
    """Episodes to play."""
    split: str = "test"
    """Panel: train (procedural stream), test or ood."""
    task: int = -1
    """Panel index (-1: drawn from the seed)."""
    seed: int = 0
    """Seed of the first episode."""


def env_kwargs(items: list[str]) -> dict[str, Any]:
    """``["symbols=legend", "max_steps=20"]`` -> ``{"symbols": "legend", "max_steps": 20}``.

    A value is read as a Python literal when it is one (``20``, ``True``, ``None``,
    ``[1, 2]``), else kept as text.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not (eq and key.strip().isidentifier()):
            raise ValueError(f"Expect --env-arg KEY=VALUE, actually: {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key.strip()] = text
    return out


def make_env(env_id: str, kwargs: dict[str, Any]) -> Any:
    """``gym.make(env_id, **kwargs)``; an argument the env does not take is a ValueError naming them."""
    import gymnasium as gym

    import earlyexp.envs as envs

    module, _, name = envs.entry(env_id).entry_point.partition(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"Expect --env-arg names among {', '.join(params)} for {env_id}, actually: "
            f"{', '.join(unknown)}"
        )
    return gym.make(env_id, **kwargs)


def command_of(line: str, action_names: set[str]) -> str | None:
    """The player command a typed line is (``quit``, ``help``, ``hint``), or None (an action)."""
    text = line.strip()
    if text.startswith(":"):
        return COMMANDS.get(text[1:].strip().lower(), "unknown")
    if text.lower() in BARE and text.lower() not in action_names:
        return COMMANDS[text.lower()]
    return None


def arrow_action(line: str) -> str:
    """The move an arrow key's escape code in ``line`` stands for, else ``line`` unchanged."""
    text = line.strip()
    if text.startswith(("\x1b", "^[")):
        code = text.removeprefix("\x1b").removeprefix("^[")
        return ARROWS.get(code[:2], line)
    return line


@contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """Key presses of terminal ``fd`` one by one, without echo (nothing to do if not a tty)."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # keep keys typed ahead
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_keys(fd: int, out: Any = None) -> str | None:
    """Read one action from ``fd``: an arrow key at once (its move), else a line up to Enter.

    Backspace edits the line; Ctrl-D on an empty line is the end of input (None); Ctrl-C is a
    KeyboardInterrupt. What is typed is echoed to ``out`` (default: stdout).
    """
    out = out or sys.stdout
    buf = ""
    with _cbreak(fd):
        while True:
            ch = os.read(fd, 1).decode(errors="replace")
            if ch == "\x1b":
                move = ARROWS.get(os.read(fd, 2).decode(errors="replace"))
                if move and not buf:
                    out.write(move + "\n")
                    return move
                continue  # another escape code (or an arrow mid-line): ignored
            if ch in ("\n", "\r"):
                out.write("\n")
                return buf
            if ch in ("", "\x04"):
                if buf:
                    continue
                out.write("\n")
                return None
            if ch == "\x03":
                raise KeyboardInterrupt
            if ch in ("\x7f", "\b"):
                if buf:
                    buf = buf[:-1]
                    out.write("\b \b")
            elif ch.isprintable():
                buf += ch
                out.write(ch)
            out.flush()


class Player:
    """Who chooses the actions of ``earlyexp play`` (a person, the expert or random)."""

    def __init__(self, policy: str, env: Any, seed: int) -> None:
        import numpy as np

        from earlyexp.envs.core import text_env

        if policy not in ("human", "expert", "random"):
            raise ValueError(f"Expect --policy human, expert or random, actually: {policy!r}")
        self.policy, self.env, self.raw = policy, env, text_env(env)
        self.rng = np.random.default_rng(seed)
        self.names = {s.name.lower() for s in self.raw.grammar.specs}
        self.arrows = set(MOVES) <= {s.name for s in self.raw.grammar.specs}
        self.keys = self.arrows and sys.stdin.isatty()

    def help(self, info: dict) -> str:
        """The action grammar, the actions valid now and the player commands."""
        now = ", ".join(info.get("available_actions", [])[:20])
        keys = " Arrow keys play the moves." if self.arrows else ""
        return f"{self.raw.action_help()}\nValid now: {now or '-'}\n{COMMAND_HELP}{keys}"

    def choose(self, info: dict) -> str | None:
        """The next action (None: the session ends)."""
        if self.policy == "expert":
            return self.raw.expert_action()
        if self.policy == "random":
            from earlyexp.agents.backends.scripted import random_action

            return random_action(info["available_actions"], self.rng)
        while True:
            line = self._read()
            if line is None:
                return None
            command = command_of(line, self.names)
            if command is None:
                return arrow_action(line) if self.arrows else line
            if command == "quit":
                return None
            print(
                self.help(info) if command == "help"
                else f"hint: {self.raw.expert_action()}" if command == "hint"
                else f"Unknown command {line.strip()!r}. {COMMAND_HELP}"
            )  # fmt: skip

    def _read(self) -> str | None:
        prompt = "action (arrows or type, :help)> " if self.arrows else "action (:help)> "
        try:
            if self.keys:
                print(prompt, end="", flush=True)
                return read_keys(sys.stdin.fileno())
            return input(prompt)
        except EOFError:
            return None


def play(env_id: str, cfg: PlayConfig, kwargs: dict[str, Any]) -> int:
    """Play ``cfg.episodes`` episodes; return the process exit status."""
    env = make_env(env_id, kwargs)
    player = Player(cfg.policy, env, cfg.seed)
    wins = played = 0
    try:
        for ep in range(cfg.episodes):
            options = {"split": cfg.split, "task": cfg.task if cfg.task >= 0 else None}
            obs, info = env.reset(seed=cfg.seed + ep, options=options)
            if cfg.policy == "human" and ep == 0:
                print(player.help(info))
            print(f"\n=== episode {ep + 1}: {info['task']}\n{obs}")
            info = _episode(env, player, info)
            if info is None:
                print(f"quit: episode {ep + 1} not finished")
                break
            played += 1
            wins += info["success"]
    except KeyboardInterrupt:
        print()
    finally:
        env.close()
    print(f"\n{wins}/{played} episodes succeeded")
    return 0


def _episode(env: Any, player: Player, info: dict) -> dict | None:
    """Play one episode to its end; its final info (None: the player quit)."""
    budget = player.raw.max_steps
    while True:
        action = player.choose(info)
        if action is None:
            return None
        obs, _, term, trunc, info = env.step(action)
        valid = "" if info["action_valid"] else ", invalid action"
        print(f"\n> {action}    [step {player.raw.elapsed_steps}/{budget}{valid}]\n{obs}")
        if term or trunc:
            break
    end = "solved" if info["success"] else "out of steps" if trunc else "ended"
    print(f"--- {end}: score {info['score']:.3f}, success {info['success']}")
    for item in info["rubric"]:
        print(f"    [{'x' if item['met'] else ' '}] {item['criterion']}")
    return info
