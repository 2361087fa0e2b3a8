"""Pretraining of the ``tiny:base`` preset: copying from the context, learnt before any SFT (issue 20).

The text envs need replies that copy from the prompt: a product id from the results page
(WebShop), a query word or an answer from a passage (SearchQA), a path or a sentence from the
user's request (ToolCall). Trained from scratch, the tiny model learns in 100 SFT steps the
reply format, not the copying. A model that has formed *induction heads* (attend to the token
after an earlier occurrence of the current one, and copy it) copies, so the ``base`` preset
pretrains the fresh ``tiny`` model in stages (:class:`PretrainStage`) over rows of env text:

- a *repeat* step is a synthetic induction batch: a random length of tokens drawn from a
  corpus row, a random gap of other tokens, then the same tokens again, with the loss on the
  repeat. The copy distance varies, so only a content match predicts the repeat;
- an *lm* step is a next-token loss over 4 packed rows of 1,024 tokens of expert and
  exploratory episodes of the text envs' ``train`` stream (a random available action with
  probability ``p_random``), rendered as the SFT examples are (window 0, no action help).

The ``test`` and ``ood`` panels are never read. Measured on 2 CPU cores (``benchmarks/
text_copying.py`` reports the copy accuracy at six distances): with 16 short repeat rows per
step the first stage (gaps up to 64) leaves its plateau after ~2,500 steps (copy accuracy
0.06 -> 0.97 on 24-token repeats by step 4,000; with 2 rows per step it took ~20,000); the
second (gaps up to 300, half lm steps) extends the heads to the distances of a page (0.77 at
256 tokens after 1,500 steps of a 4,000-step run). IL from this checkpoint solved 40.0% of
ToolCall's test tasks where the fresh model solved 4.0% (README, issue 20); with half the
second stage, 12.0%; with the first stage alone 6.0%, and with 1,500 second-stage steps of one
kind only, 8.0% (repeats) and 4.0% (next-token): the gain needs both, interleaved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from earlyexp.agents.prompting import PromptConfig

TEXT_ENVS = ("EarlyExp/WebShop-v0", "EarlyExp/SearchQA-v0", "EarlyExp/ToolCall-v0")
ROW = 1024
"""Tokens per packed lm row (and the last tokens kept of a longer example)."""
PROMPT = PromptConfig(window=0, action_help=False)
"""How the corpus episodes are rendered: the tiny model's prompts in the quick bench."""


@dataclass(frozen=True)
class PretrainStage:
    """One stage of pretraining: its steps, learning rate and share of repeat steps.

    Attributes:
        steps: optimizer steps (warmup then cosine decay to 0 within the stage).
        lr: peak learning rate.
        repeat_every: every K-th step is a repeat batch, the others lm steps (1: repeats only).
        repeat_rows: rows per repeat batch.
        repeat_len: (lo, hi) range of the repeated length in tokens (hi excluded).
        repeat_gap: (lo, hi) range of the gap before the repeat.
        warmup_ratio: share of the steps with a linear warmup.
    """

    steps: int
    lr: float = 2e-3
    repeat_every: int = 1
    repeat_rows: int = 2
    repeat_len: tuple[int, int] = (8, 48)
    repeat_gap: tuple[int, int] = (0, 64)
    warmup_ratio: float = 0.05

    def __post_init__(self) -> None:
        for name in ("repeat_len", "repeat_gap"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi:
                raise ValueError(f"Expect {name} (lo, hi) with 0 <= lo < hi, actually: {lo, hi}")
        if self.steps < 1 or self.repeat_every < 0 or self.repeat_rows < 1:
            raise ValueError(
                "Expect steps >= 1, repeat_every >= 0 and repeat_rows >= 1, actually: "
                f"{self.steps}, {self.repeat_every}, {self.repeat_rows}"
            )


@dataclass(frozen=True)
class PretrainSpec:
    """What the base model is pretrained on, and how.

    Attributes:
        stages: run in order, each with a fresh optimizer and schedule.
        envs: env ids whose ``train`` stream fills the corpus.
        episodes: train-stream episodes per env (seeds ``first_seed`` on).
        p_random: probability that a corpus step takes a random available action.
        first_seed: the corpus episodes' first seed (the tokenizer's corpus uses 0 on).
        seed: seeds the corpus's random actions and row order and every stage's batch draws.
    """

    stages: tuple[PretrainStage, ...]
    envs: tuple[str, ...] = TEXT_ENVS
    episodes: int = 300
    p_random: float = 0.25
    first_seed: int = 10_000
    seed: int = 0

    @property
    def steps(self) -> int:
        """Optimizer steps over all stages."""
        return sum(s.steps for s in self.stages)


BASE = PretrainSpec(
    stages=(
        PretrainStage(steps=4_500, lr=3e-3, repeat_every=1, repeat_rows=16, repeat_gap=(0, 64)),
        PretrainStage(steps=3_000, lr=1e-3, repeat_every=2, repeat_rows=16, repeat_gap=(0, 300)),
    )
)
"""The ``base`` preset's recipe (the checkpoint of the README's issue-20 tables): 13.9 min once
on 2 cores, about 9.5 of them in the second stage (its 1,500 lm steps of 4 x 1,024 tokens)."""


def train_messages(
    env_id: str, first_seed: int, n: int, p_random: float, rng: Any, prompt: PromptConfig = PROMPT
) -> Iterator[tuple[list[dict[str, str]], str, dict]]:
    """Yield (messages, action, info) for every step of ``n`` train-stream episodes of ``env_id``.

    ``messages`` end with the assistant's reply (the action taken: the expert's, or with
    probability ``p_random`` a random available one).
    """
    import gymnasium as gym

    import earlyexp.envs  # noqa: F401  (registers the ids)
    from earlyexp.agents.backends.scripted import random_action
    from earlyexp.agents.prompting import conversation, format_action, system_prompt, user_message

    env = gym.make(env_id)
    try:
        for ep in range(n):
            obs, info = env.reset(seed=first_seed + ep, options={"split": "train"})
            system, turns, done = system_prompt(info["task"], ""), [], False
            while not done:
                expert = env.unwrapped.expert_action()  # type: ignore[attr-defined]
                action = (random_action(info.get("available_actions") or [], rng)
                          if rng.random() < p_random else expert)  # fmt: skip
                user, reply = user_message(obs, info, prompt), format_action(action)
                messages = [*conversation(system, turns, user, prompt.window),
                            {"role": "assistant", "content": reply}]  # fmt: skip
                turns.append((user, reply))
                yield messages, action, info
                obs, _, term, trunc, info = env.step(action)
                done = term or trunc
    finally:
        env.close()


def packed_rows(tokenizer: Any, spec: PretrainSpec, rng: Any) -> Any:
    """The corpus as a (rows, :data:`ROW`) tensor: every example (its last ROW tokens), shuffled."""
    import numpy as np
    import torch

    from earlyexp.agents.chat import ChatEncoder
    from earlyexp.progress import bar

    enc = ChatEncoder(tokenizer)
    seqs = [
        enc.encode(m, "last")[0][-ROW:]
        for env_id in spec.envs
        for m, _, _ in bar(
            train_messages(env_id, spec.first_seed, spec.episodes, spec.p_random, rng),
            desc=f"pretraining corpus ({env_id})", unit="step",
        )
    ]  # fmt: skip
    flat = np.concatenate([np.array(seqs[i]) for i in rng.permutation(len(seqs))])
    return torch.tensor(flat[: len(flat) // ROW * ROW].reshape(-1, ROW))


def repeat_batch(rows: Any, g: Any, length: int, gap: int, n: int) -> tuple[Any, Any]:
    """``n`` synthetic induction rows, with labels on the repeat after its first token.

    Each row: ``length`` tokens drawn from a corpus row, ``gap`` more drawn from it, then the
    ``length`` tokens again.
    """
    import torch

    x = torch.empty(n, 2 * length + gap, dtype=torch.long)
    width = rows.shape[1]
    for r in range(n):
        src = rows[int(torch.randint(len(rows), (1,), generator=g))]
        part, filler = (src[torch.randint(width, (k,), generator=g)] for k in (length, gap))
        x[r] = torch.cat([part, filler, part])
    labels = x.clone()
    labels[:, : length + gap + 1] = -100
    return x, labels


def varied_repeat(rows: Any, g: Any, stage: PretrainStage) -> tuple[Any, Any]:
    """A repeat batch of a length and a gap drawn from the stage's ranges."""
    import torch

    length, gap = (int(torch.randint(*span, (1,), generator=g))
                   for span in (stage.repeat_len, stage.repeat_gap))  # fmt: skip
    return repeat_batch(rows, g, length, gap, stage.repeat_rows)


def run_stage(model: Any, rows: Any, stage: PretrainStage, seed: int, desc: str,
              on_step: Any = None) -> None:  # fmt: skip
    """Train ``model`` in place through ``stage``; ``on_step()`` after each step."""
    import torch

    from earlyexp.agents.train.loop import TrainConfig, Trainer
    from earlyexp.agents.train.losses import masked_lm_loss

    g = torch.Generator().manual_seed(seed)
    config = TrainConfig(steps=stage.steps, lr=stage.lr, warmup_ratio=stage.warmup_ratio)
    loop = Trainer(model, lambda m, b: (masked_lm_loss(m, *b), {}), config, desc=desc)
    for step in range(stage.steps):
        x = rows[torch.randint(len(rows), (4,), generator=g)]  # drawn on repeat steps too
        batch = (x, x)
        if stage.repeat_every and step % stage.repeat_every == 0:
            batch = varied_repeat(rows, g, stage)
        loop.step([batch])
        if on_step is not None:
            on_step()


def pretrain(model: Any, tokenizer: Any, spec: PretrainSpec) -> None:
    """Pretrain ``model`` in place through every stage of ``spec`` (module docstring)."""
    import numpy as np

    from earlyexp.progress import bar

    rows = packed_rows(tokenizer, spec, np.random.default_rng(spec.seed))
    with bar(total=spec.steps, desc="pretraining", unit="step") as progress:
        for k, stage in enumerate(spec.stages):
            run_stage(model, rows, stage, spec.seed, f"stage {k + 1}", lambda: progress.update(1))
