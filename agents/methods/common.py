"""What the methods share: their config bases and the helpers every ``run`` composes.

Config classes form a small hierarchy, so a profile can set a field for every method that
has it (``LLMConfig.window`` for all LLM methods, ``LearnerConfig.steps`` for all that
train): :class:`MethodConfig` (every method) -> :class:`LLMConfig` (LLM policies) ->
:class:`LearnerConfig` (LLM methods that train weights). Each field's docstring is its help.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.envpool import PoolConfig
from earlyexp.agents.evaluation import play_panels, to_record
from earlyexp.agents.models import is_tiny, parse_model, resolve_model
from earlyexp.agents.policy import Policy, SamplingParams
from earlyexp.agents.prompting import PromptConfig
from earlyexp.agents.records import EpisodeRecord
from earlyexp.agents.rollout import RolloutEngine


@dataclass
class MethodConfig:
    """Fields every method has."""

    eval_tasks: int = 100
    """Tasks evaluated per panel: the first N of test (ID) and of ood (OOD)."""
    batch_size: int = 32
    """Envs stepped together (the generation batch of LLM policies)."""

    def __post_init__(self) -> None:
        for name in ("eval_tasks", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")


@dataclass
class LLMConfig(MethodConfig):
    """Fields of every method that plays an LLM policy."""

    max_new_tokens: int = 16
    """Tokens generated per turn at most."""
    window: int = 2
    """Previous (observation, action) turns kept in the prompt."""
    temperature: float = 0.0
    """Sampling temperature at evaluation (0: greedy)."""
    threads: int = 1
    """Torch CPU threads while the method runs (0: torch's default)."""
    action_help: bool | None = None
    """Describe the action grammar in the system prompt (None: off for the tiny preset, whose
    tokens the grammar text only dilutes; on for real models)."""
    no_repeat_ngram: int = 0
    """At evaluation, forbid a reply to repeat one of its own n-grams of tokens (0: off; the
    prompt's are not counted). A small model's copy can fall into a loop (WebShop:
    ``search[on nails on nails on nails ...``) that runs until the reply is cut."""


@dataclass
class LearnerConfig(LLMConfig):
    """Fields of every LLM method that trains weights."""

    train_episodes: int = 1000
    """Episodes of the train stream played to collect training data."""
    steps: int = 3000
    """Optimizer steps."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, warmup then cosine decay)."""
    sft_batch_size: int = 16
    """Examples per optimizer step."""
    max_len: int = 1024
    """SFT examples longer than this keep their last max_len tokens. The policy's prompts
    are never cut, so an env whose prompts run longer needs more (WebShop's reach about 1,450
    tokens with one turn of history, 1,850 with two): past the trained length the tiny
    model's replies come out garbled."""
    group_by_length: bool = False
    """SFT batches of examples of similar length (less padding; see SFTConfig)."""
    checkpoint_every: int = 500
    """Save the training state every this many steps (0: never); a killed cell resumes there."""


def prompt_config(config: LLMConfig, model: str) -> PromptConfig:
    """The prompt settings of a method run."""
    help_on = config.action_help if config.action_help is not None else not is_tiny(model)
    return PromptConfig(window=config.window, action_help=help_on)


def eval_sampling(config: LLMConfig, seed: int) -> SamplingParams:
    """How an LLM method's evaluation samples."""
    return SamplingParams(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=seed,
        no_repeat_ngram=config.no_repeat_ngram,
    )  # fmt: skip


@contextmanager
def torch_threads(config: LLMConfig, model: str) -> Iterator[None]:
    """Run the block with ``config.threads`` torch threads (nothing to set for an HTTP model)."""
    if parse_model(model).is_remote:
        yield
        return
    from earlyexp.agents.backends.hf import cpu_threads

    with cpu_threads(config.threads):
        yield


def load_policy(model: str, device: str, batch_size: int) -> Policy:
    """The policy of ``--model``: an HF model (tiny or a folder) or an OpenAI-compatible server."""
    spec = parse_model(model)
    if spec.is_remote:
        from earlyexp.agents.backends.openai_http import OpenAIPolicy

        assert spec.url is not None
        return OpenAIPolicy(spec.url, spec.name, max_concurrency=batch_size)
    from earlyexp.agents.backends.hf import HFPolicy

    return HFPolicy.from_pretrained(resolve_model(model), device, batch_size=batch_size)


def evaluate_policy(
    policy: Policy,
    env_id: str,
    config: MethodConfig,
    seed: int,
    run_dir: Path,
    prompt: PromptConfig | None = None,
    sampling: SamplingParams | None = None,
    pool: PoolConfig | None = None,
    num_envs: int | None = None,
) -> list[EpisodeRecord]:
    """Play the first ``config.eval_tasks`` tasks of each eval panel; write trajectories."""
    engine = RolloutEngine(policy, prompt, sampling, pool)
    trajs = play_panels(
        engine, env_id, config.eval_tasks, seed, num_envs or config.batch_size, run_dir=run_dir
    )
    return [to_record(t) for t in trajs]


def close_policy(policy: Any) -> None:
    """Close a policy that holds connections (the HTTP backend)."""
    close = getattr(policy, "close", None)
    if callable(close):
        close()


@dataclass
class EarlyExperienceConfig(LearnerConfig):
    """Fields of the Early Experience methods (IWM, SR): how expert states are branched."""

    K: int = 4
    """Alternative actions tried at each expert state."""
    policy_share: float = 1.0
    """Share of the K proposed by the initial policy (the rest uniform over available actions)."""
    invalid: int = 0
    """Of the K, this many deliberately malformed actions."""
    proposal_temperature: float = 0.9
    """Sampling temperature of the initial policy's proposals."""
    max_episode_steps: int = 0
    """Branch only expert episodes of at most this many steps (0: all)."""
    proposer: str = ""
    """Who proposes the alternatives: empty, the initial model (the paper); or a checkpoint
    folder (e.g. an IL cell's ``checkpoint``), a stand-in for the paper's instruction-tuned
    initial model where the initial one cannot write the action format (``tiny:base`` on
    ToolCall). The trained model is still the initial one."""

    def branch_config(self) -> Any:
        """The :class:`~earlyexp.agents.branching.BranchConfig` of these fields."""
        from earlyexp.agents.branching import BranchConfig

        return BranchConfig(
            K=self.K, policy_share=self.policy_share, invalid=self.invalid,
            temperature=self.proposal_temperature, max_new_tokens=self.max_new_tokens,
            max_steps=self.max_episode_steps,
        )  # fmt: skip


def sft_stage(
    net: Any,
    tokenizer: Any,
    conversations: list,
    steps: int,
    config: LearnerConfig,
    seed: int,
    state_dir: Path,
    on_step: Any = None,
) -> tuple[Any, list[dict[str, float]]]:
    """SFT ``net`` for ``steps`` steps on chat ``conversations`` (resumable from ``state_dir``).

    ``on_step(done)`` runs after each optimizer step.
    """
    from earlyexp.agents.sft import SFTConfig, sft_on_conversations

    sft = SFTConfig(
        steps=steps, batch_size=config.sft_batch_size, lr=config.lr, seed=seed,
        max_len=config.max_len, checkpoint_every=config.checkpoint_every,
        state_dir=str(state_dir), group_by_length=config.group_by_length,
    )  # fmt: skip
    return sft_on_conversations(net, tokenizer, conversations, sft, on_step)


def finish_learner(
    net: Any,
    tokenizer: Any,
    log: dict[str, Any],
    env_id: str,
    config: LLMConfig,
    seed: int,
    run_dir: Path,
    prompt: PromptConfig,
    pool: PoolConfig | None,
    extra_tokens: int = 0,
) -> list[EpisodeRecord]:
    """Write the training log and checkpoint, then evaluate the trained policy."""
    import json

    from earlyexp.agents.backends.hf import HFPolicy
    from earlyexp.agents.sft import save_checkpoint

    (run_dir / "train_log.json").write_text(json.dumps(log, indent=1))
    save_checkpoint(net, tokenizer, run_dir / "checkpoint")
    policy = HFPolicy(net, tokenizer, batch_size=config.batch_size)
    sampling = eval_sampling(config, seed)
    if extra_tokens:
        from dataclasses import replace

        sampling = replace(sampling, max_new_tokens=sampling.max_new_tokens + extra_tokens)
    return evaluate_policy(policy, env_id, config, seed, run_dir, prompt, sampling, pool)


@dataclass
class EarlyExperience:
    """What both Early Experience methods start from (:func:`early_experience`).

    Attributes:
        prompt: the prompt settings.
        net: the initial model, in training precision (trained in place afterwards).
        tokenizer: its tokenizer.
        initial: the initial policy over ``net`` (proposals, and the ``policy`` reflector).
        trajs: the expert episodes, with snapshots.
        states: the branched expert states.
        expert: the ``expert_sft.jsonl`` records (already written).
        stats: the branching counts (:class:`~earlyexp.agents.branching.BranchStats`).
    """

    prompt: PromptConfig
    net: Any
    tokenizer: Any
    initial: Policy
    trajs: list
    states: list
    expert: list[dict[str, Any]]
    stats: Any


def early_experience(
    env_id: str, seed: int, config: EarlyExperienceConfig, run_dir: Path, device: str,
    model: str, pool: PoolConfig | None,
) -> EarlyExperience:  # fmt: skip
    """Expert episodes with snapshots, K branched alternatives per state, expert_sft.jsonl."""
    from earlyexp.agents.backends.hf import HFPolicy, load_model
    from earlyexp.agents.branching import branch, collect_expert_states
    from earlyexp.agents.data import EXPERT_FILE, expert_records, write_chat_jsonl
    from earlyexp.agents.models import require_local

    path = require_local(model, "early experience")
    prompt = prompt_config(config, model)
    trajs = collect_expert_states(env_id, config.train_episodes, seed, prompt,
                                  config.batch_size, pool)  # fmt: skip
    net, tokenizer = load_model(path, device, training=True)
    initial = HFPolicy(net, tokenizer, batch_size=max(config.batch_size, 64))
    proposer = initial
    if config.proposer:
        pnet, ptok = load_model(require_local(config.proposer, "a proposer"), device)
        proposer = HFPolicy(pnet, ptok, batch_size=max(config.batch_size, 64))
    states, stats = branch(env_id, trajs, config.branch_config(), prompt.window, seed, proposer)
    expert = expert_records(trajs, prompt.window)
    write_chat_jsonl(expert, Path(run_dir) / EXPERT_FILE)
    return EarlyExperience(prompt, net, tokenizer, initial, trajs, states, expert, stats)


def eval_subset(
    policy: Any, env_id: str, n: int, config: LLMConfig, seed: int, prompt: Any, pool: Any
) -> dict[str, float]:
    """Success and mean score of ``policy`` on the first ``n`` test tasks (a curve point)."""
    engine = RolloutEngine(policy, prompt, eval_sampling(config, seed), pool)
    trajs = play_panels(engine, env_id, n, seed, config.batch_size, ("test",))
    k = max(len(trajs), 1)
    return {"success": sum(t.success for t in trajs) / k, "score": sum(t.score for t in trajs) / k}


class Curve:
    """A learning curve, kept in a JSON file as it grows (a resumed run reads it back).

    RL methods write ``curve.json`` (iterations); IL with ``eval_every`` writes
    ``sft_curve.json`` (SFT steps in ``iteration``, examples trained on in ``samples``).
    """

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = path
        self.data: dict[str, Any] = {"eval": [], "train": []}
        if path.exists():  # resumed at iteration ``start``: later entries are redone
            old = json.loads(path.read_text())
            self.data = {k: [e for e in old[k] if e["iteration"] < start] for k in self.data}
        self.t0 = time.perf_counter() - (
            self.data["eval"][-1]["wall_s"] if self.data["eval"] else 0
        )
        self.samples = sum(x["samples"] for x in self.data["train"])

    def has(self, it: int) -> bool:
        """Whether iteration ``it`` was evaluated already."""
        return any(e["iteration"] == it for e in self.data["eval"])

    def add(self, it: int, result: dict[str, float], samples: int | None = None) -> None:
        """Record an evaluation at iteration ``it`` (``samples``: default, those of :meth:`step`)."""
        wall = round(time.perf_counter() - self.t0, 2)
        done = self.samples if samples is None else samples
        self.data["eval"].append({"iteration": it, "samples": done, "wall_s": wall,
                                  **result})  # fmt: skip
        self._write()

    def step(self, it: int, rewards: list[float], metrics: dict, tokens: int, n: int) -> None:
        """Record one training iteration."""
        self.samples += n
        keep = {
            k: round(float(v), 5)
            for k, v in metrics.items()
            if k in ("loss", "kl", "clip_frac", "kept")
        }
        self.data["train"].append({"iteration": it, "samples": n, "tokens": tokens,
                                   "reward": sum(rewards) / max(n, 1), **keep})  # fmt: skip
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)
