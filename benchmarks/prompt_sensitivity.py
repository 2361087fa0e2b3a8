"""How much a checkpoint's replies depend on its system prompt: original against revised.

ERL's second attempt changes only the system prompt (the reflection's rulebook). A policy
whose replies do not move when the prompt changes cannot use the rulebook, but is not thrown
off by it either; one whose replies move a lot has learnt something of the prompt. This script
takes the expert examples of an IL cell's ``expert_sft.jsonl`` that kept the original prompt,
puts a revised prompt in their place (one of the same file's variants, ``il.prompt_variants``,
or one written the same way for a cell trained without them) and prints, over the expert
reply's tokens, the mean KL(original || revised) of the next-token distributions and the
share of examples whose greedy reply tokens are all the same under both prompts.

    .venv/bin/python benchmarks/prompt_sensitivity.py \\
        --checkpoint runs/sok_var/cells/il__EarlyExp_Sokoban-v0__s1/checkpoint \\
        --data runs/sok_var/cells/il__EarlyExp_Sokoban-v0__s1/expert_sft.jsonl --kind rulebook
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import earlyexp.envs  # noqa: F401

KINDS = {"rulebook": "Rules observed in past attempts", "retry": "## Recent attempts"}


def split_examples(path: Path) -> tuple[list[list[dict]], dict[str, list[str]]]:
    """The examples under the original prompt, and the revised system prompts by kind."""
    original, revised = [], {k: [] for k in KINDS}
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        kind = next((k for k, mark in KINDS.items() if mark in messages[0]["content"]), None)
        if kind is None:
            original.append(messages)
        else:
            revised[kind].append(messages[0]["content"])
    return original, revised


def written_variants(env_id: str, examples: list[list[dict]], kind: str, n: int) -> list[str]:
    """Revised prompts written as ``il.prompt_variants`` writes them (a file without any)."""
    from earlyexp.agents.data import collect_expert
    from earlyexp.agents.methods.il import ILConfig, vary_prompts
    from earlyexp.agents.prompting import PromptConfig

    prompt = PromptConfig(window=0, action_help=False)
    demos = collect_expert(env_id, 2 * n, 0, prompt)
    varied = vary_prompts(env_id, demos, ILConfig(prompt_variants=1.0), 0, prompt, None)
    return [t.system for t in varied if KINDS[kind] in t.system]


def reply_logprobs(net, encoder, messages: list[dict]):
    """Log-softmax of the next-token logits at each position that predicts a reply token."""
    import torch

    ids, mask = encoder.encode(messages, "last")
    with torch.no_grad():
        logits = net(torch.tensor([ids])).logits[0]
    at = [t - 1 for t in range(1, len(ids)) if mask[t]]
    return torch.log_softmax(logits[at].float(), -1)


def measure(args: argparse.Namespace) -> tuple[float, int, int]:
    """Mean KL per reply token, examples with the same greedy reply, examples."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from earlyexp.agents.chat import ChatEncoder

    torch.set_num_threads(args.threads)
    original, revised = split_examples(Path(args.data))
    prompts = revised[args.kind] or written_variants(args.env, original, args.kind, args.examples)
    if not original or not prompts:
        raise SystemExit(f"Expect original examples and {args.kind} prompts in {args.data}")
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    net = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    encoder = ChatEncoder(tokenizer)
    kl, same, n = 0.0, 0, 0
    step = max(1, len(original) // args.examples)
    for i, messages in enumerate(original[::step][: args.examples]):
        system = {"role": "system", "content": prompts[i % len(prompts)]}
        a = reply_logprobs(net, encoder, messages)
        b = reply_logprobs(net, encoder, [system, *messages[1:]])
        kl += float((a.exp() * (a - b)).sum(-1).mean())
        same += int(bool((a.argmax(-1) == b.argmax(-1)).all()))
        n += 1
    return kl / n, same, n


def main(argv: list[str] | None = None) -> int:
    """Print the KL and the greedy agreement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an IL cell's checkpoint folder")
    parser.add_argument("--data", required=True, help="that cell's expert_sft.jsonl")
    parser.add_argument("--kind", choices=sorted(KINDS), default="rulebook")
    parser.add_argument("--env", default="EarlyExp/Sokoban-v0",
                        help="writes the revised prompts when the file has none")  # fmt: skip
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    kl, same, n = measure(args)
    print(f"{args.checkpoint}: {args.kind} prompt against the original, {n} expert examples")
    print(f"mean KL(original || {args.kind}) per reply token: {kl:.4f} nats")
    print(f"greedy reply unchanged: {same} / {n} ({100 * same / n:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
