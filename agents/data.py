"""Expert demonstrations as chat JSONL (the format of the Early Experience release).

``expert_sft.jsonl`` holds one ``{"messages": [...]}`` per expert step: the system prompt,
the last ``window`` (user, assistant) turns of the episode, the current user turn, and the
expert's reply ``<action>...</action>`` as the final assistant message. Episodes are played
on the ``train`` stream with the env's oracle, ``env.unwrapped.expert_action()``; the
messages are rendered by :mod:`earlyexp.agents.prompting`, exactly as the agent sees them.
Extra keys on a line (``env_id``, ``seed``, ``step``) are metadata; readers use ``messages``.

    python -m earlyexp.agents.data --env EarlyExp/Sokoban-v0 --episodes 200 --out expert_sft.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.backends.scripted import ExpertPolicy
from earlyexp.agents.envpool import PoolConfig
from earlyexp.agents.prompting import Message, PromptConfig, conversation
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, Trajectory

EXPERT_FILE = "expert_sft.jsonl"


def train_specs(episodes: int, seed: int) -> list[EpisodeSpec]:
    """Episodes of the train stream for ``seed`` (task drawn from each episode's seed)."""
    if episodes < 1:
        raise ValueError(f"Expect episodes >= 1, actually: {episodes}")
    return [EpisodeSpec("train", None, seed * 1_000_003 + i) for i in range(episodes)]


def collect_expert(
    env_id: str,
    episodes: int,
    seed: int = 0,
    prompt: PromptConfig | None = None,
    num_envs: int = 16,
    pool: PoolConfig | None = None,
) -> list[Trajectory]:
    """Play ``episodes`` train episodes of ``env_id`` with the expert (text trajectories)."""
    engine = RolloutEngine(ExpertPolicy(), prompt, pool=pool)
    desc = f"expert demonstrations ({env_id.removeprefix('EarlyExp/')})"
    return engine.run(env_id, train_specs(episodes, seed), num_envs, progress=desc)


def step_messages(traj: Trajectory, window: int) -> list[list[Message]]:
    """One conversation per step of ``traj``, ending with that step's assistant reply."""
    out = []
    turns: list[tuple[str, str]] = []
    for step in traj.steps:
        messages = conversation(traj.system, turns, step.user, window)
        messages.append({"role": "assistant", "content": step.completion})
        out.append(messages)
        turns.append((step.user, step.completion))
    return out


def expert_records(trajs: Iterable[Trajectory], window: int) -> list[dict[str, Any]]:
    """The ``expert_sft.jsonl`` lines of expert trajectories."""
    records = []
    for traj in trajs:
        for i, messages in enumerate(step_messages(traj, window)):
            records.append(
                {"messages": messages, "env_id": traj.env_id, "seed": traj.seed, "step": i}
            )
    return records


def write_chat_jsonl(records: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write ``{"messages": [...]}`` records, one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def read_chat_jsonl(path: Path) -> list[list[Message]]:
    """Return the ``messages`` of every line of a chat JSONL file."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or "messages" not in record:
                raise ValueError(
                    f"Expect {{'messages': [...]}} on line {n} of {path}, actually: {line[:80]!r}"
                )
            out.append(record["messages"])
    return out


@dataclass
class ExportConfig:
    """Arguments of ``python -m earlyexp.agents.data``."""

    env: str = "EarlyExp/FrozenLake-v0"
    """Env id whose train stream the expert plays."""
    episodes: int = 200
    """Expert episodes."""
    seed: int = 0
    """Seed of the episodes."""
    window: int = 2
    """Previous turns kept in each example (as the agent will see them)."""
    out: str = EXPERT_FILE
    """Output chat JSONL file."""


def main(argv: list[str] | None = None) -> int:
    """Export expert demonstrations as chat JSONL."""
    from earlyexp.agents.config import add_dataclass_args, from_args

    parser = argparse.ArgumentParser(description=main.__doc__)
    add_dataclass_args(parser, ExportConfig)
    cfg = from_args(ExportConfig, parser.parse_args(argv))
    trajs = collect_expert(cfg.env, cfg.episodes, cfg.seed, PromptConfig(window=cfg.window))
    records = expert_records(trajs, cfg.window)
    print(f"{len(records)} examples -> {write_chat_jsonl(records, Path(cfg.out))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
