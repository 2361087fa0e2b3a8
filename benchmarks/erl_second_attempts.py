"""ERL's second attempts: under the reflection's prompt, against a plain retry under the original.

ERL's distinctive signal is a second attempt that succeeds where the first failed, because the
revised system prompt (the reflection) helped. This script measures, from one checkpoint and
with no weight update, whether it does: it plays ERL's first round at each given iteration
(the first attempts, the gate, the reflections of the configured provider, the second
attempts, all as the ``erl`` method plays them with the profile's settings), then plays the
same gated tasks again under the *original* system prompt, with the same sampling seed. For
each it prints the episodes, the successes and the replies the env rejected (invalid actions)
out of all replies. A rulebook that helps gives more second-attempt successes than the retry;
a model that cannot read it (the tiny model: a system prompt it never saw in training) gives
fewer, and more rejected replies.

    .venv/bin/python benchmarks/erl_second_attempts.py \\
        --checkpoint runs/standard/cells/il__EarlyExp_Sokoban-v0__s1/checkpoint \\
        --env EarlyExp/Sokoban-v0 --seed 1 --iterations 6
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import earlyexp.envs  # noqa: F401


@dataclass
class Tally:
    """Episodes, successes, replies and rejected replies of one kind of attempt."""

    episodes: int = 0
    successes: int = 0
    replies: int = 0
    rejected: int = 0

    def add(self, trajs) -> None:
        """Count ``trajs``."""
        self.episodes += len(trajs)
        self.successes += sum(t.success for t in trajs)
        self.replies += sum(len(t.steps) for t in trajs)
        self.rejected += sum(t.invalid for t in trajs)

    def row(self, name: str) -> str:
        """A table row: success % and rejected-reply %."""
        s = 100 * self.successes / max(self.episodes, 1)
        r = 100 * self.rejected / max(self.replies, 1)
        return (f"| {name} | {self.episodes} | {self.successes} ({s:.1f}%) | "
                f"{self.rejected} / {self.replies} ({r:.1f}%) |")  # fmt: skip


def measure(args: argparse.Namespace) -> tuple[dict[str, Tally], str]:
    """Play the rounds and count the three kinds of attempts; the reflection provider's name."""
    import torch

    from earlyexp.agents.backends.hf import HFPolicy, load_model
    from earlyexp.agents.methods import get_method
    from earlyexp.agents.methods.common import prompt_config
    from earlyexp.agents.methods.erl import ERLRun, erl_round, make_erl_reflector
    from earlyexp.agents.rollout import EpisodeSpec
    from earlyexp.harness.profiles import get_profile

    torch.set_num_threads(args.threads)
    sets = {"reflection": args.reflection}
    config = get_profile(args.profile).config_for(get_method("erl"), args.env, sets)
    net, tokenizer = load_model(args.checkpoint, "cpu", training=False)
    policy = HFPolicy(net, tokenizer, batch_size=64)
    reflector = make_erl_reflector(config, policy, args.seed)
    run = ERLRun(args.env, args.seed, config, prompt_config(config, args.model), policy, reflector)
    tally = {"first": Tally(), "rulebook": Tally(), "original": Tally()}
    for it in range(args.iterations):
        rd = erl_round(it, run, "")
        gated = [rd.y1[d.first] for d in rd.D]
        specs = [
            EpisodeSpec(t.split, t.task, t.seed, system=t.system, label="retry") for t in gated
        ]
        tally["first"].add(rd.y1)
        tally["rulebook"].add(rd.y2)
        tally["original"].add(run.play(specs, it, attempt=2) if specs else [])
    return tally, reflector.name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the policy (an IL cell's checkpoint)")
    p.add_argument("--env", default="EarlyExp/Sokoban-v0")
    p.add_argument("--profile", default="standard", help="whose erl settings to use")
    p.add_argument("--model", default="tiny", help="tiny (no action help) or another model id")
    p.add_argument("--seed", type=int, default=0, help="the cell's seed (the train tasks drawn)")
    p.add_argument("--iterations", type=int, default=6, help="ERL rounds 0..N-1, no update")
    p.add_argument(
        "--reflection",
        default="provider",
        choices=("provider", "none"),
        help="none: ERL's no-reflection ablation (a retry instruction, raw attempts)",
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    tally, provider = measure(args)
    print(f"{args.env}, seed {args.seed}, rounds 0-{args.iterations - 1}, {args.checkpoint}")
    print("| attempt | episodes | successes | rejected replies |")
    print("|---|---:|---|---|")
    print(tally["first"].row("first (original prompt)"))
    name = "the retry instruction" if args.reflection == "none" else f"the {provider} reflection"
    print(tally["rulebook"].row(f"second, under {name}"))
    print(tally["original"].row("second, plain retry under the original prompt"))


if __name__ == "__main__":
    main()
