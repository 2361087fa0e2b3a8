"""Early Experience data: ``expert_sft.jsonl``, ``iwm_sft.jsonl`` and ``reflection_sft.jsonl``.

The three files of the Early Experience release format (chat JSONL, one ``{"messages": [...]}``
per line; TRL's ``SFTTrainer`` and LlamaFactory read them), built from the branched expert
states of :mod:`earlyexp.agents.branching`:

- **IWM** (implicit world modeling, eq. 3): -log p(s_i^j | s_i, a_i^j). One example per
  transition, the expert's own included and invalid-action outcomes kept; its own system
  prompt (:data:`WORLD_MODEL_SYSTEM`), user = the task, the state as the agent sees it and the
  action, assistant = ``Observation:`` on its own line, then ``env.summarize`` of the next state.
- **SR** (self-reflection, eq. 4): at each expert state a reflection provider writes why the
  expert action is better than the alternatives, from their outcomes
  (:mod:`earlyexp.agents.reflect`, the paper's template); the target is the reflection then
  the expert action, conditioned on s_i only (the agent's own conversation at s_i).
  :func:`sr_filter` drops, and counts, label leaks (expert, chosen, correct, best, optimal,
  "Action N"), the chosen action's outcome narrated as already seen, repeated monologues,
  over-length texts and reflections that conclude with another action.

    python -m earlyexp.agents.early_experience --env EarlyExp/FrozenLake-v0 --K 4 --out ee/
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.branching import BranchConfig, ExpertState, Outcome, branch
from earlyexp.agents.data import EXPERT_FILE, expert_records, write_chat_jsonl
from earlyexp.agents.prompting import Message, format_action
from earlyexp.agents.reflect import Reflection, ReflectionProvider, ReflectionRequest
from earlyexp.agents.reflect import Step as ReflectStep

IWM_FILE, REFLECTION_FILE = "iwm_sft.jsonl", "reflection_sft.jsonl"
WORLD_MODEL_SYSTEM = (
    "You are a world model of a text environment. Given the task, the current state and an "
    "action, predict what the environment shows next. Reply with the next observation only."
)
OUTCOME_CHARS = 160


def iwm_messages(state: ExpertState, o: Outcome) -> list[Message]:
    """One IWM example: world-model system prompt, (task, state, action) -> next state."""
    user = f"Task: {state.task}\n{state.user}\nAction: {o.action}"
    return [
        {"role": "system", "content": WORLD_MODEL_SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": f"Observation:\n{o.summary}"},
    ]


def iwm_records(states: Sequence[ExpertState], include_expert: bool = True) -> list[dict]:
    """The ``iwm_sft.jsonl`` lines: every recorded transition of every expert state."""
    out = []
    for s in states:
        for o in ([s.expert] if include_expert else []) + s.alternatives:
            meta = {"env_id": s.traj.env_id, "seed": s.traj.seed, "step": s.t}
            out.append({"messages": iwm_messages(s, o), **meta, "expert": o is s.expert})
    return out


def outcome_text(o: Outcome) -> str:
    """What an action did, short: the env's feedback line, else the next state's summary."""
    text = o.feedback.strip() or o.summary.strip()
    return text if len(text) <= OUTCOME_CHARS else text[: OUTCOME_CHARS - 3] + "..."


def sr_request(state: ExpertState) -> ReflectionRequest:
    """The reflection request of one expert state: a_i, its outcome, the alternatives'."""
    obs = state.traj.snapshots[state.t].obs if state.traj.snapshots else state.user
    return ReflectionRequest(
        "alternatives", state.task, observation=obs, action=state.expert.action,
        outcome=outcome_text(state.expert),
        alternatives=[ReflectStep(o.action, outcome_text(o), o.valid) for o in state.alternatives],
    )  # fmt: skip


SR_LEAKS = re.compile(r"\b(expert|chosen|correct|best|optimal)\b|\baction\s*#?\s*\d+\b", re.I)
SEEN_HEDGES = re.compile(r"\b(expect|would|should|will|likely|may|might|when tried)\b", re.I)


def sr_filter(r: Reflection, request: ReflectionRequest, max_chars: int) -> str | None:
    """Why reflection ``r`` must be dropped (None: keep it); the reasons are counted."""
    if not r.ok:
        return "failed" if "leak" not in r.error else "label leak"
    text, sources = r.text, request.sources().lower()
    if any(m.group(0).lower() not in sources for m in SR_LEAKS.finditer(text)):
        return "label leak"
    if r.action is not None and r.action != request.action:
        return "concludes another action"
    if len(text) > max_chars:
        return "over length"
    if _narrates_outcome(text, request.outcome):
        return "narrates the outcome as seen"
    return None


def _narrates_outcome(text: str, outcome: str) -> bool:
    """The chosen action's outcome stated in a sentence with no expectation word."""
    key = outcome.strip().rstrip(".").lower()
    if len(key) < 8:
        return False
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        if key in sentence.lower() and not SEEN_HEDGES.search(sentence):
            return True
    return False


def sr_records(
    states: Sequence[ExpertState], reflector: ReflectionProvider, max_chars: int = 600
) -> tuple[list[dict], Counter]:
    """The ``reflection_sft.jsonl`` lines and the filter counts (``kept``, and each reason)."""
    requests = [sr_request(s) for s in states]
    reflections = reflector.reflect(requests)
    counts: Counter = Counter()
    out = []
    for s, req, r in zip(states, requests, reflections, strict=True):
        reason = sr_filter(r, req, max_chars)
        counts[reason or "kept"] += 1
        if reason is not None:
            continue
        reply = f"{r.text.strip()}\n{format_action(s.expert.action)}"
        meta = {"env_id": s.traj.env_id, "seed": s.traj.seed, "step": s.t, "provider": r.provider}
        out.append({"messages": [*s.messages, {"role": "assistant", "content": reply}], **meta})
    return out, counts


@dataclass
class ExportConfig:
    """Arguments of ``python -m earlyexp.agents.early_experience``."""

    env: str = "EarlyExp/FrozenLake-v0"
    """Env id whose train stream the expert plays."""
    episodes: int = 100
    """Expert episodes."""
    K: int = 4
    """Alternatives per expert state."""
    policy_share: float = 1.0
    """Share of the alternatives proposed by the policy (the rest uniform over available
    actions); with --model none, all are uniform."""
    invalid: int = 0
    """Of the K, this many deliberately malformed actions."""
    model: str = "tiny"
    """The initial policy that proposes alternatives: tiny, a checkpoint folder, or none."""
    reflector: str = "grounded"
    """Who writes the reflections: grounded, policy (the model above) or http (--url)."""
    url: str = ""
    """The reflection model's server, http://HOST:PORT/v1#MODEL (with --reflector http)."""
    window: int = 0
    """Previous turns kept in each example (as the agent will see them)."""
    seed: int = 0
    """Seed of the episodes and draws."""
    out: str = "early_experience"
    """Output folder for the three files and stats.json."""


def export(cfg: ExportConfig, device: str = "cpu") -> dict[str, Any]:
    """Write the three chat-JSONL files into ``cfg.out``; return the counts."""
    from earlyexp.agents.branching import collect_expert_states
    from earlyexp.agents.prompting import PromptConfig
    from earlyexp.agents.reflect import make_reflector

    prompt = PromptConfig(window=cfg.window, action_help=False)
    policy = None
    if cfg.model != "none":
        from earlyexp.agents.methods.common import load_policy

        policy = load_policy(cfg.model, device, 64)
    trajs = collect_expert_states(cfg.env, cfg.episodes, cfg.seed, prompt)
    branch_cfg = BranchConfig(K=cfg.K, policy_share=cfg.policy_share if policy else 0.0,
                              invalid=cfg.invalid)  # fmt: skip
    states, stats = branch(cfg.env, trajs, branch_cfg, cfg.window, cfg.seed, policy)
    reflector = make_reflector(cfg.reflector, policy=policy, url=cfg.url or None)
    sr, counts = sr_records(states, reflector)
    out = Path(cfg.out)
    write_chat_jsonl(expert_records(trajs, cfg.window), out / EXPERT_FILE)
    iwm = iwm_records(states)
    write_chat_jsonl(iwm, out / IWM_FILE)
    write_chat_jsonl(sr, out / REFLECTION_FILE)
    summary = {"branch": stats.to_json(), "iwm": len(iwm), "sr": dict(counts),
               "reflector": reflector.name}  # fmt: skip
    (out / "stats.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Export the Early Experience chat-JSONL files of one env."""
    from earlyexp.agents.config import add_dataclass_args, from_args

    parser = argparse.ArgumentParser(description=main.__doc__)
    add_dataclass_args(parser, ExportConfig)
    cfg = from_args(ExportConfig, parser.parse_args(argv))
    summary = export(cfg)
    print(json.dumps(summary, indent=1))
    print(f"wrote {EXPERT_FILE}, {IWM_FILE}, {REFLECTION_FILE} to {cfg.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
