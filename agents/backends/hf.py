"""Hugging Face causal LM backend: any local checkpoint folder (the tiny preset included).

Generation is batched with a KV cache over left-padded contexts (:func:`sample_batch`); it
returns the sampled ids and their log-probs, so the rollout engine never re-tokenizes.
The cache is a ``transformers`` cache object (:func:`new_cache`), passed under the name the
installed version's ``forward`` takes (``cache`` from transformers 5.x, ``past_key_values``
before): no legacy tuples and no deprecated argument names.
On CUDA the model runs in bf16; a LoRA adapter folder can be applied with ``peft``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from earlyexp.agents.chat import ChatEncoder
from earlyexp.agents.models import resolve_device
from earlyexp.agents.policy import Completion, Prompt, SamplingParams


def require_torch() -> Any:
    """Import torch, or raise an error naming the extra to install."""
    try:
        import torch
        import transformers  # noqa: F401
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"{e.name} is missing: local models need the train extra, "
            "`pip install 'earlyexp[train]'`"
        ) from e
    return torch


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (0: leave torch's setting), then restore.

    Tiny models gain little from several threads, and lose a lot when the cores are shared
    (threads spin waiting for each other), so the methods default to one.
    """
    torch = require_torch()
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_model(
    path: str | Path, device: str = "cpu", lora: str | Path | None = None, training: bool = False
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local folder, with an optional LoRA adapter.

    Weights are bf16 on CUDA for inference; ``training=True`` keeps float32 master weights
    (the trainers autocast the forward pass to bf16 on CUDA).
    """
    torch = require_torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    import earlyexp.agents.backends.copyhead  # noqa: F401  (registers the copy-head model type)

    logging.disable_progress_bar()
    if not (Path(path) / "config.json").exists():
        raise ValueError(f"Expect a checkpoint folder with config.json, actually: {str(path)!r}")
    dtype = torch.bfloat16 if device.startswith("cuda") and not training else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(device)  # in place
    if lora is not None:
        try:
            from peft import PeftModel
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                "LoRA needs the lora extra: `pip install 'earlyexp[lora]'`"
            ) from e
        model = PeftModel.from_pretrained(model, str(lora))
    model.eval()
    return model, tokenizer


class HFPolicy:
    """A local causal LM as a :class:`~earlyexp.agents.policy.Policy`.

    Args:
        model: a loaded ``transformers`` causal LM (or a ``peft`` wrapper of one).
        tokenizer: its tokenizer (a chat template is added when it has none).
        batch_size: prompts generated together at most (longer lists are chunked).
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"Expect batch_size >= 1, actually: {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer)
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.encoder.eos_ids)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str = "cpu",
        lora: str | Path | None = None,
        batch_size: int = 64,
    ) -> HFPolicy:
        """Load a checkpoint folder (see :func:`load_model`)."""
        model, tokenizer = load_model(path, resolve_device(device), lora)
        return cls(model, tokenizer, batch_size)

    def context_ids(self, prompt: Prompt) -> list[int]:
        """The prompt's ids: ``token_ids`` when given, else its messages encoded by segments."""
        if prompt.token_ids is not None:
            return list(prompt.token_ids)
        ids, _ = self.encoder.encode(prompt.messages)
        return ids

    def complete(
        self,
        prompts: Sequence[Prompt],
        sampling: SamplingParams,
        *,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Completion]:
        """Generate one completion per prompt, ``batch_size`` prompts at a time.

        ``seeds`` (one per prompt, replacing ``sampling.seed``) gives each row its own
        generator, so a row's sample does not depend on the other rows of the batch: a
        server batching unrelated requests uses it. Row ``i`` with seed ``s`` samples as a
        one-prompt call with ``sampling.seed = s`` does (up to float rounding of the batch).
        """
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"Expect one seed per prompt, actually: {len(seeds)} seeds for "
                             f"{len(prompts)} prompts")  # fmt: skip
        out: list[Completion] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = [self.context_ids(p) for p in prompts[i : i + self.batch_size]]
            rows = None if seeds is None else list(seeds[i : i + self.batch_size])
            out += self.generate_ids(chunk, sampling, seeds=rows)
        return out

    def generate_ids(
        self,
        contexts: list[list[int]],
        sampling: SamplingParams,
        *,
        seeds: list[int | None] | None = None,
    ) -> list[Completion]:
        """Generate from token-id contexts (one batch); ``seeds`` as in :meth:`complete`."""
        if any(not c for c in contexts):
            raise ValueError("Expect non-empty token contexts, actually: an empty one")
        stop_ids, stop_texts = self._stops(sampling.stop)
        rows = sample_batch(
            self.model,
            contexts,
            sampling,
            self.pad_id,
            self.encoder.eos_ids | stop_ids,
            stop_texts,
            self.tokenizer,
            seeds=seeds,
        )
        done = []
        for ids, logps, finished in rows:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            done.append(Completion(text, ids, logps, "stop" if finished else "length"))
        return done

    def top_logprobs(
        self, contexts: list[list[int]], continuations: list[list[int]], k: int
    ) -> list[list[list[tuple[int, float]]]]:
        """The ``k`` likeliest tokens and their log-probs (temperature 1) at each continuation step.

        One teacher-forced forward pass over ``context + continuation`` per row (one batch):
        ``out[i][j]`` lists ``(id, log pi(id))`` for step ``j`` of row ``i``, best first.
        """
        return score_top_k(self.model, contexts, continuations, k, self.pad_id)

    def _stops(self, stop: Sequence[str]) -> tuple[set[int], list[str]]:
        """Split stop strings into single-token ids (checked by id) and the rest (by text)."""
        ids, texts = set(), []
        for s in stop:
            enc = self.tokenizer(s, add_special_tokens=False)["input_ids"]
            if len(enc) == 1 and self.tokenizer.decode(enc) == s:
                ids.add(enc[0])
            else:
                texts.append(s)
        return ids, texts


def left_pad(contexts: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    """Return ``(input_ids, attention_mask)``, both (B, L), left-padded."""
    torch = require_torch()
    B, L = len(contexts), max(len(c) for c in contexts)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for i, c in enumerate(contexts):
        ids[i, L - len(c) :] = torch.tensor(c, dtype=torch.long)
        mask[i, L - len(c) :] = 1
    return ids.to(device), mask.to(device)


def sample_batch(
    model: Any,
    contexts: list[list[int]],
    sampling: SamplingParams,
    pad_id: int,
    end_ids: set[int],
    stop_texts: Sequence[str] = (),
    tokenizer: Any = None,
    seeds: Sequence[int | None] | None = None,
) -> list[tuple[list[int], list[float], bool]]:
    """Sample continuations of ``contexts`` together with a KV cache.

    Returns, per context, (sampled ids, log pi(id) at temperature 1, finished) where a row
    finishes on a token of ``end_ids`` (kept) or when its text ends with a stop string.
    ``seeds``: one per row, each row sampling from its own generator (``sampling.seed``
    is then ignored; a None row draws from torch's global generator).
    """
    torch = require_torch()
    device = next(model.parameters()).device
    ids, attn = left_pad(contexts, pad_id, device)  # (B, L)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, L) positions skip the left padding
    gen: Any = None
    if seeds is not None and any(s is not None for s in seeds):
        gen = [None if s is None else torch.Generator(device=device).manual_seed(s) for s in seeds]
    elif seeds is None and sampling.seed is not None:
        gen = torch.Generator(device=device).manual_seed(sampling.seed)
    B = len(contexts)
    out_ids: list[list[int]] = [[] for _ in range(B)]
    out_lp: list[list[float]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    end = torch.tensor(sorted(end_ids), dtype=torch.long, device=device)
    cache = {cache_argument(model): new_cache(model)}  # filled in place by every forward
    last_only = {"logits_to_keep": 1} if _keeps_last_logits(model) else {}
    with torch.no_grad(), _autocast(device):
        for _ in range(sampling.max_new_tokens):
            out = model(
                input_ids=ids,
                attention_mask=attn,
                position_ids=pos,
                use_cache=True,
                **cache,
                **last_only,  # the prefill projects its last position only, not (B, L, V)
            )
            logits = out.logits[:, -1, :].float()  # (B, V)
            nxt = _pick(_no_repeats(logits, out_ids, sampling.no_repeat_ngram), sampling, gen)
            logp = torch.log_softmax(logits, -1).gather(-1, nxt[:, None])[:, 0]  # (B,)
            for i in (~done).nonzero()[:, 0].tolist():
                out_ids[i].append(int(nxt[i]))
                out_lp[i].append(float(logp[i]))
            done |= torch.isin(nxt, end)
            done |= _hit_stop_text(out_ids, stop_texts, tokenizer, device)
            if bool(done.all()):
                break
            ids = torch.where(done, torch.full_like(nxt, pad_id), nxt)[:, None]  # (B, 1)
            attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=device)], 1)
            pos = pos[:, -1:] + 1
    return [(out_ids[i], out_lp[i], bool(done[i])) for i in range(B)]


def score_top_k(
    model: Any, contexts: list[list[int]], continuations: list[list[int]], k: int, pad_id: int
) -> list[list[list[tuple[int, float]]]]:
    """Teacher-forced top-``k`` log-probs (temperature 1) at each step of each continuation."""
    torch = require_torch()
    device = next(model.parameters()).device
    rows = [c + x for c, x in zip(contexts, continuations, strict=True)]
    ids, attn = left_pad(rows, pad_id, device)  # (B, L)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, L)
    with torch.no_grad(), _autocast(device):
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits.float()
    L = ids.shape[1]
    out = []
    for i, x in enumerate(continuations):
        # the logits predicting continuation step j sit at position L - len(x) - 1 + j
        at = logits[i, L - len(x) - 1 : L - 1]  # (len(x), V)
        top = torch.log_softmax(at, -1).topk(min(k, at.shape[-1]), -1)  # (len(x), k)
        out.append([
            list(zip(t_ids.tolist(), t_lp.tolist(), strict=True))
            for t_ids, t_lp in zip(top.indices, top.values, strict=True)
        ])  # fmt: skip
    return out


def unwrap_peft(model: Any) -> Any:
    """The model a peft wrapper adapts (the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def new_cache(model: Any) -> Any:
    """An empty ``transformers.DynamicCache`` for ``model`` (its config when it takes one)."""
    from transformers import DynamicCache

    if _takes(DynamicCache.__init__, "config"):  # transformers >= 4.56: layers from the config
        return DynamicCache(config=unwrap_peft(model).config)
    return DynamicCache()


def cache_argument(model: Any) -> str:
    """The forward argument that takes the cache: ``cache``, or ``past_key_values`` before 5.x.

    transformers 5.x deprecates ``past_key_values`` (a FutureWarning on every call).
    """
    forward = type(unwrap_peft(model)).forward
    return "cache" if _takes(forward, "cache") else "past_key_values"


def _keeps_last_logits(model: Any) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (transformers >= 4.50 models)."""
    return _takes(type(unwrap_peft(model)).forward, "logits_to_keep")


@lru_cache(maxsize=64)
def _takes(fn: Any, name: str) -> bool:
    """Whether ``fn`` has a parameter ``name`` (read once: generation asks every turn)."""
    import inspect

    return name in inspect.signature(fn).parameters


def _pick(logits: Any, sampling: SamplingParams, gen: Any) -> Any:
    """Greedy when temperature is 0, else temperature + top-p sampling. logits: (B, V).

    ``gen``: None, one generator for the batch, or a list of one per row (None entries use
    torch's global generator).
    """
    torch = require_torch()
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / sampling.temperature, -1)  # (B, V)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > sampling.top_p  # keep the smallest head >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    if isinstance(gen, list):  # each row its own generator: (1, V) draws as a one-row batch
        rows = [torch.multinomial(probs[i : i + 1], 1, generator=g) for i, g in enumerate(gen)]
        return torch.cat(rows)[:, 0]
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


def _no_repeats(logits: Any, out_ids: list[list[int]], n: int) -> Any:
    """``logits`` with -inf where a token would repeat an n-gram of its row's completion."""
    if n < 2 or all(len(ids) < n for ids in out_ids):
        return logits
    logits = logits.clone()
    for i, ids in enumerate(out_ids):
        head = ids[len(ids) - n + 1 :]
        banned = [ids[j + n - 1] for j in range(len(ids) - n + 1) if ids[j : j + n - 1] == head]
        if banned:
            logits[i, banned] = float("-inf")
    return logits


def _hit_stop_text(
    out_ids: list[list[int]], stops: Sequence[str], tokenizer: Any, device: Any
) -> Any:
    torch = require_torch()
    hit = torch.zeros(len(out_ids), dtype=torch.bool, device=device)
    if not stops:
        return hit
    for i, ids in enumerate(out_ids):
        tail = tokenizer.decode(ids[-16:])
        hit[i] = any(tail.endswith(s) for s in stops)
    return hit


def _autocast(device: Any) -> Any:
    torch = require_torch()
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    if kind == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
