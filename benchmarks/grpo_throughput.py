"""GRPO samples/s and tokens/s per iteration, rollout vs training, beside TRL's GRPOTrainer.

Two parts, one run, the same tiny model (``--model``, default the tiny preset):

1. **Single turn, against TRL.** The same ``--prompts`` prompts (the first turn of that many
   train tasks of ``--env``, rendered with the chat template), ``--G`` completions each, at
   most ``--max-new-tokens`` tokens, temperature 0.7, one optimizer step per generation batch
   (all ``prompts * G`` completions in one batch), lr 1e-4, clip 0.2 / 0.28, beta 0.001 (so
   both keep a frozen reference model), token-mean loss, the same reward function (the share
   of distinct characters in the completion, plus 1 when it parses to an ``<action>``: it
   varies within a group, so neither side skips groups). Ours: ``HFPolicy.complete`` (batched
   KV-cache sampling) then ``grpo.PolicyUpdater.update`` (the ``grpo`` method's update).
   TRL: ``trl.GRPOTrainer`` with ``per_device_train_batch_size = prompts * G``,
   ``num_generations = G``, ``use_cpu=True``, no vLLM; its rollout share is the time spent
   in its generate-and-score step.
2. **Multi turn, ours only.** ``grpo`` iterations on ``--env`` as the method runs them
   (``--tasks`` tasks x G rollouts through the rollout engine, then the update), with the
   split between rollout and training.

The first iteration of each side is a warm-up and is not counted; figures are the medians
of the other ``--iterations``. TRL is optional: ``.venv/bin/pip install -e ".[compare]"``
installs it; without it only our rows print.

    .venv/bin/python benchmarks/grpo_throughput.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import torch

import earlyexp.envs  # noqa: F401
from earlyexp.agents.backends.hf import HFPolicy, cpu_threads, load_model
from earlyexp.agents.chat import Segment
from earlyexp.agents.methods.grpo import (
    GRPOConfig,
    PolicyUpdater,
    advantages,
    group_rewards,
    iteration_specs,
    pick_mode,
)
from earlyexp.agents.models import resolve_model
from earlyexp.agents.policy import Prompt, SamplingParams
from earlyexp.agents.prompting import PromptConfig, parse_action, system_prompt, user_message
from earlyexp.agents.rollout import RolloutEngine, Step, Trajectory

TEMPERATURE, LR, BETA, EPS_LOW, EPS_HIGH = 0.7, 1e-4, 0.001, 0.2, 0.28


@dataclass
class Timing:
    """Per-iteration figures of one side (warm-up excluded)."""

    name: str
    rollout_s: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    samples: int = 0

    def add(self, rollout_s: float, train_s: float, tokens: int) -> None:
        self.rollout_s.append(rollout_s)
        self.train_s.append(train_s)
        self.tokens.append(tokens)

    def row(self) -> str:
        r, t = statistics.median(self.rollout_s), statistics.median(self.train_s)
        tok = statistics.median(self.tokens)
        total = r + t
        return (f"| {self.name} | {self.samples} | {total:.2f} | {self.samples / total:.1f} | "
                f"{tok / total:.0f} | {tok / self.samples:.1f} | {r:.2f} ({r / total:.0%}) | "
                f"{t:.2f} ({t / total:.0%}) |")  # fmt: skip

    @property
    def samples_per_s(self) -> float:
        return self.samples / (statistics.median(self.rollout_s) + statistics.median(self.train_s))


def reward(text: str) -> float:
    """The reward of both sides: distinct-character share, +1 when an action parses."""
    return len(set(text)) / max(len(text), 1) + float(parse_action(text) is not None)


def first_turns(env_id: str, n: int) -> list[tuple[str, str]]:
    """(system, user) of the first turn of ``n`` train tasks, as the rollout engine renders them."""
    env = gym.make(env_id)
    out = []
    for i in range(n):
        obs, info = env.reset(seed=10_000 + i, options={"split": "train"})
        out.append((system_prompt(info["task"]), user_message(obs, info, PromptConfig())))
    env.close()
    return out


def config(prompts: int, G: int, max_new_tokens: int, iterations: int) -> GRPOConfig:
    return GRPOConfig(
        iterations=iterations, tasks_per_iter=prompts, G=G, sample_temperature=TEMPERATURE,
        lr=LR, beta=BETA, eps_low=EPS_LOW, eps_high=EPS_HIGH, updates_per_iter=1,
        minibatch=prompts * G, max_new_tokens=max_new_tokens, checkpoint_every=0, eval_every=0,
    )  # fmt: skip


def ours_single_turn(path, device, turns, G, max_new_tokens, iterations) -> Timing:
    net, tok = load_model(path, device, training=True)
    net.eval()
    policy = HFPolicy(net, tok, batch_size=len(turns) * G)
    enc = policy.encoder
    cfg = config(len(turns), G, max_new_tokens, iterations + 1)
    with tempfile.TemporaryDirectory() as state:
        updater = PolicyUpdater(net, tok, cfg, seed=0, state_dir=Path(state))
        segs = [(enc.system(s), enc.user(s, u)) for s, u in turns]
        prompts = [Prompt([{"role": "system", "content": s}, {"role": "user", "content": u}],
                          token_ids=a.ids + b.ids) for (s, u), (a, b) in zip(turns, segs, strict=True)]  # fmt: skip
        timing = Timing("earlyexp grpo (single turn)", samples=len(turns) * G)
        for it in range(iterations + 1):
            t0 = time.perf_counter()
            sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=TEMPERATURE,
                                      stop=(), seed=it)  # fmt: skip
            comps = policy.complete([p for p in prompts for _ in range(G)], sampling)
            trajs = []
            for k, c in enumerate(comps):
                (s, u), (a, b) = turns[k // G], segs[k // G]
                t = Trajectory("bench", "train", k // G, 0, s, score=reward(c.text))
                t.segments = [a, b, Segment("assistant", list(c.token_ids), True)]
                t.steps = [Step(u, c.text, None, True, 0.0, "", context=[0, 1], reply=2,
                                logprobs=list(c.logprobs))]  # fmt: skip
                trajs.append(t)
            t1 = time.perf_counter()
            A = advantages([t.score for t in trajs], G, True)
            updater.update(trajs, A, "turn")
            t2 = time.perf_counter()
            if it:
                timing.add(t1 - t0, t2 - t1, sum(len(c.token_ids) for c in comps))
    return timing


def trl_single_turn(path, device, turns, G, max_new_tokens, iterations) -> Timing | None:
    try:
        import trl
        from datasets import Dataset
        from transformers import TrainerCallback
        from transformers.trainer_callback import PrinterCallback
    except ModuleNotFoundError as e:
        print(f"no TRL rows ({e}); install it with: .venv/bin/pip install -e '.[compare]'")
        return None
    net, tok = load_model(path, device, training=True)
    texts = [tok.apply_chat_template([{"role": "system", "content": s},
                                      {"role": "user", "content": u}],
                                     tokenize=False, add_generation_prompt=True)
             for s, u in turns]  # fmt: skip
    n = len(turns) * G
    timing = Timing(f"TRL {trl.__version__} GRPOTrainer (single turn)", samples=n)
    spans: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            spans.update(start=time.perf_counter(), gen=0.0, tokens=0)

        def on_step_end(self, args, state, control, **kw):
            if state.global_step > 1:  # the first step is the warm-up
                total = time.perf_counter() - spans["start"]
                timing.add(spans["gen"], total - spans["gen"], int(spans["tokens"]))

    def scored(*texts_, completions, **kw):
        return [reward(c) for c in completions]

    with tempfile.TemporaryDirectory() as out:
        args = trl.GRPOConfig(
            output_dir=out, per_device_train_batch_size=n, num_generations=G,
            max_completion_length=max_new_tokens, max_steps=iterations + 1, learning_rate=LR,
            lr_scheduler_type="constant", warmup_steps=0, beta=BETA, epsilon=EPS_LOW,
            epsilon_high=EPS_HIGH, temperature=TEMPERATURE, loss_type="dapo",
            use_cpu=device == "cpu",
            report_to="none", logging_steps=1, save_strategy="no", seed=0,
            dataloader_num_workers=0, disable_tqdm=True,
        )  # fmt: skip
        data = Dataset.from_dict({"prompt": texts * (iterations + 2)})
        trainer = trl.GRPOTrainer(model=net, reward_funcs=scored, args=args, train_dataset=data,
                                  processing_class=tok, callbacks=[Clock()])  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # its per-step log dicts
        gen = trainer._generate_and_score_completions  # its rollout: generation + rewards

        def timed(inputs):
            t0 = time.perf_counter()
            result = gen(inputs)
            spans["gen"] += time.perf_counter() - t0
            spans["tokens"] += int(result["completion_mask"].sum())
            return result

        trainer._generate_and_score_completions = timed
        trainer.train()
    return timing


def ours_multi_turn(path, device, env_id, tasks, G, max_new_tokens, iterations) -> Timing:
    net, tok = load_model(path, device, training=True)
    net.eval()
    cfg = config(tasks, G, max_new_tokens, iterations + 1)
    policy = HFPolicy(net, tok, batch_size=tasks * G)
    prompt = PromptConfig(window=cfg.window, action_help=False)
    timing = Timing(f"earlyexp grpo ({env_id.split('/')[-1]}, multi turn)", samples=tasks * G)
    with tempfile.TemporaryDirectory() as state:
        updater = PolicyUpdater(net, tok, cfg, seed=0, state_dir=Path(state))
        for it in range(iterations + 1):
            sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=TEMPERATURE,
                                      seed=it)  # fmt: skip
            engine = RolloutEngine(policy, prompt, sampling)
            t0 = time.perf_counter()
            trajs = engine.run(env_id, iteration_specs(it, cfg, 0), tasks * G)
            t1 = time.perf_counter()
            A = advantages(group_rewards(trajs, 0.0), G, True)
            updater.update(trajs, A, pick_mode("auto", trajs, prompt.window))
            t2 = time.perf_counter()
            if it:
                timing.add(t1 - t0, t2 - t1, sum(t.tokens for t in trajs))
    return timing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="'tiny' or a checkpoint folder")
    p.add_argument("--env", default="EarlyExp/FrozenLake-v0")
    p.add_argument("--prompts", type=int, default=8, help="single-turn prompts per iteration")
    p.add_argument("--tasks", type=int, default=8, help="multi-turn tasks per iteration")
    p.add_argument("--G", type=int, default=8, help="completions per prompt (the group)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--iterations", type=int, default=4, help="measured iterations per side")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    p.add_argument("--skip-trl", action="store_true", help="no TRL row")
    p.add_argument("--skip-single", action="store_true", help="only the multi-turn row")
    args = p.parse_args()
    path = resolve_model(args.model)
    print(f"model {path}, env {args.env}, prompts {args.prompts} x G {args.G}, "
          f"{args.max_new_tokens} new tokens, temperature {TEMPERATURE}, lr {LR}, "
          f"beta {BETA}, clip {EPS_LOW}/{EPS_HIGH}, 1 update per batch")  # fmt: skip
    with cpu_threads(args.threads):
        print(f"torch {torch.__version__}, device {args.device}, CPU threads "
              f"{torch.get_num_threads()}", flush=True)  # fmt: skip
        turns = first_turns(args.env, args.prompts)
        run = (path, args.device, turns, args.G, args.max_new_tokens, args.iterations)
        rows = [] if args.skip_single else [ours_single_turn(*run)]
        if not (args.skip_trl or args.skip_single):
            trl_row = trl_single_turn(*run)
            rows += [trl_row] if trl_row is not None else []
        multi = (path, args.device, args.env, args.tasks, args.G, args.max_new_tokens)
        rows.append(ours_multi_turn(*multi, args.iterations))
    print("\n| run | samples/iter | s/iter | samples/s | tokens/s | tokens/sample | rollout s | "
          "train s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r.row())
    if len(rows) == 3 and "TRL" in rows[1].name:
        print(f"\nsingle turn: earlyexp / TRL samples/s = "
              f"{rows[0].samples_per_s / rows[1].samples_per_s:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
