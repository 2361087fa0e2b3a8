"""Losses of the learning methods, on token log-probs of the labelled (trainable) positions.

Two kinds of functions:

* model level: :func:`masked_lm_loss` and :func:`token_logprobs` run the model and project
  logits only where a label is (an agent example has a few policy tokens after hundreds of
  prompt tokens); :func:`sft_loss`, :func:`raft_loss` and :func:`policy_loss` are ready
  ``loss_fn(model, batch) -> (loss, metrics)`` for :class:`~earlyexp.agents.train.loop.Trainer`.
* tensor level: :func:`weighted_nll`, :func:`clipped_pg`, :func:`kl_k3`,
  :func:`shaped_offpolicy` and :func:`masked_mean` take (B, T-1) log-probs where column ``t``
  scores token ``t + 1`` (the layout of :func:`token_logprobs`), and a (B, T-1) bool mask.

Every token mean is over the batch's masked tokens together (each token counts the same),
and is 0 when no token is masked.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from earlyexp.agents.backends.hf import unwrap_peft

if TYPE_CHECKING:
    import torch

    from earlyexp.agents.train.batch import TrainBatch

IGNORE = -100
"""Label of a position without loss (the ``ignore_index`` of ``cross_entropy``)."""

LOGITS_ARE_HEAD_OF_HIDDEN = (
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gpt2",
    "phi3",
    "olmo",
    "smollm3",
)
"""Model types whose logits are exactly ``lm_head(last hidden state)`` (no soft-capping or
scaling), so :func:`masked_lm_loss` may project the labelled positions only."""


SHARES_PREFIX = ("llama", "qwen2", "qwen3", "mistral", "smollm3", "olmo", "phi3", "earlyexp_copy")
"""Model types (decoders with rotary positions and ``DynamicCache``) whose batches may run a
prefix shared by every row once (:func:`decoder_hidden`)."""
SHARED_PREFIX_MIN = 32
"""Shortest shared prefix, in tokens, that :func:`decoder_hidden` runs once."""


def shared_prefix_len(ids: torch.Tensor) -> int:
    """Length of the prefix that every row of (B, T) ``ids`` shares, at most T - 1."""
    same = (ids == ids[:1]).all(0)  # (T,)
    return min(int(same.long().cumprod(0).sum()), ids.shape[1] - 1)


def _shares_prefix(core: Any, ids: torch.Tensor) -> int:
    """The shared prefix length :func:`decoder_hidden` runs once, or 0 for the plain path."""
    import sys

    if len(ids) < 2 or getattr(core.config, "model_type", "") not in SHARES_PREFIX:
        return 0
    transformers = sys.modules.get("transformers")
    if transformers is None or not isinstance(core, transformers.PreTrainedModel):
        return 0
    # the flag was renamed in transformers 5.x (the old name warns)
    checkpointing = (
        "is_activation_checkpointing"
        if hasattr(type(core), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    if getattr(core, checkpointing, False):  # it turns the cache off in training
        return 0
    P = shared_prefix_len(ids)
    return P if P >= SHARED_PREFIX_MIN else 0


def decoder_hidden(core: Any, ids: torch.Tensor) -> torch.Tensor:
    """Last hidden states (B, T, H) of ``core``'s decoder on right-padded ``ids``.

    The rows of a training batch often share a prefix: the system prompt of every SFT
    example of an env (FrozenLake: 69 of about 118 tokens), the system prompt and first
    observation of a GRPO group's rollouts of one task. For the model types of
    :data:`SHARES_PREFIX`, that prefix runs once (one row, its keys and values kept) and the
    rest of every row attends to it through the cache: the same hidden states and gradients
    as the plain forward, to float rounding (``tests/agents/test_train_losses.py``), for
    fewer tokens (quick's FrozenLake IL, 16 examples per step: 6.3 -> 8.9 steps/s on 2 cores;
    ``benchmarks/sft_throughput.py --plain``).
    """
    import torch

    from earlyexp.agents.backends.hf import cache_argument, new_cache

    P = _shares_prefix(core, ids)
    base = core.base_model
    if not P:
        return base(input_ids=ids).last_hidden_state
    cache = {cache_argument(base): new_cache(core)}  # filled in place by the prefix's forward
    head = base(input_ids=ids[:1, :P], use_cache=True, **cache).last_hidden_state  # (1, P, H)
    stored = next(iter(cache.values()))
    if stored.get_seq_length() != P:  # a model that did not fill the cache: the plain path
        return base(input_ids=ids).last_hidden_state
    stored.batch_repeat_interleave(len(ids))
    tail = base(input_ids=ids[:, P:], use_cache=True, **cache).last_hidden_state  # (B, T-P, H)
    return torch.cat([head.expand(len(ids), -1, -1), tail], 1)


def _labelled_logits(model: Any, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Logits predicting ``ids[:, 1:][keep]``: (N, V), projected at those N positions only."""
    core = unwrap_peft(model)
    if hasattr(core, "labelled_log_probs"):  # the copy head: the mixture at those N only
        return core.labelled_log_probs(decoder_hidden(core, ids), ids, keep)  # (N, V)
    if getattr(core.config, "model_type", "") in LOGITS_ARE_HEAD_OF_HIDDEN:
        hidden = decoder_hidden(core, ids)  # (B, T, H)
        return core.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V)
    return model(input_ids=ids).logits[:, :-1][keep]  # (N, V)


def masked_lm_loss(model: Any, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean -log pi over the labelled tokens of a (B, T) batch (labels ``IGNORE`` elsewhere).

    IL loss of Early Experience (eq. 1): L = -sum_i log pi(a_i | s_i), here averaged over the
    labelled tokens. Equal to ``model(input_ids=ids, labels=labels).loss``; for the model
    types of :data:`LOGITS_ARE_HEAD_OF_HIDDEN` the vocabulary projection runs on the N
    labelled positions only ((N, V) logits instead of (B, T, V)). Other models take the full
    path.
    """
    import torch

    core = unwrap_peft(model)
    projects = hasattr(core, "labelled_log_probs")  # the copy head
    if not projects and getattr(core.config, "model_type", "") not in LOGITS_ARE_HEAD_OF_HIDDEN:
        return model(input_ids=ids, labels=labels).loss
    targets = labels[:, 1:]  # (B, T-1) token t+1 is predicted at position t
    keep = targets != IGNORE  # (B, T-1)
    logits = _labelled_logits(model, ids, keep)  # (N, V)
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def token_logprobs(model: Any, ids: torch.Tensor, labels_or_mask: torch.Tensor) -> torch.Tensor:
    """Log-probs log pi(ids[b, t+1] | ids[b, :t+1]) of the labelled tokens, 0 elsewhere: (B, T-1).

    Args:
        model: a causal LM (or a peft wrapper of one).
        ids: (B, T) token ids.
        labels_or_mask: (B, T) labels (``IGNORE`` off the loss) or a bool mask of the tokens
            to score. Logits are projected at those positions only (as :func:`masked_lm_loss`).
    """
    import torch

    if labels_or_mask.dtype == torch.bool:
        keep = labels_or_mask[:, 1:]  # (B, T-1)
    else:
        keep = labels_or_mask[:, 1:] != IGNORE  # (B, T-1)
    logits = _labelled_logits(model, ids, keep)  # (N, V)
    lp = -torch.nn.functional.cross_entropy(
        logits.float(), ids[:, 1:][keep], reduction="none"
    )  # (N,)
    return torch.zeros(keep.shape, dtype=lp.dtype, device=lp.device).masked_scatter(keep, lp)


def reference_logprobs(model: Any, batch: TrainBatch) -> torch.Tensor:
    """Log-probs of ``batch``'s labelled tokens under a frozen ``model``, no gradient: (B, T).

    Aligned to ``input_ids`` (column t scores token t, column 0 is 0), the layout of
    ``TrainBatch.old_logprobs`` / ``ref_logprobs``: a reference policy's log-probs for the KL
    term, or the old policy's recomputed with the trainer's numerics.
    """
    import torch

    with torch.no_grad():
        lp = token_logprobs(model, batch.input_ids, batch.labels)  # (B, T-1)
    return torch.nn.functional.pad(lp, (1, 0))  # (B, T)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the True entries of ``mask`` (same shape); 0 when there are none."""
    return x.where(mask, 0.0).sum() / mask.sum().clamp(min=1)


def weighted_nll(logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample weighted NLL (RAFT, Dong et al. 2023; ERL's internalization, step 4).

    L = -sum_{b,t} w_b m_bt log pi_bt / sum_{b,t} [w_b != 0] m_bt, i.e. RAFT's supervised
    loss on weighted samples (advantage max(r, 0) as the weight): a row of weight 0 counts
    neither in the sum nor in the token count (the loss is that of the batch without it), and
    with every weight 1 this is the masked token mean NLL of :func:`masked_lm_loss`.

    Args:
        logp: (B, T-1) token log-probs (:func:`token_logprobs`).
        mask: (B, T-1) bool, the trainable tokens.
        weights: (B,) per-sample weights.
    """
    w = weights[:, None].to(logp.dtype)  # (B, 1)
    counted = mask & (w != 0)  # (B, T-1)
    return -(logp * w).where(counted, 0.0).sum() / counted.sum().clamp(min=1)


def group_advantages(
    rewards: Sequence[float], groups: Sequence[Hashable], eps: float = 1e-6
) -> list[float]:
    """Group-normalized advantages (GRPO, DeepSeekMath sec. 4.1.2, outcome supervision).

    A_i = (r_i - mean_{j in g(i)} r_j) / (std_{j in g(i)} r_j + eps), with the unbiased std
    (as TRL and verl); a group whose rewards are all equal (one sample included) gets A = 0.

    Args:
        rewards: (N,) one reward per sample.
        groups: (N,) the group id of each sample (e.g. the task it answers).
        eps: added to the std.
    """
    if len(rewards) != len(groups):
        raise ValueError(
            f"Expect one group id per reward, actually: {len(rewards)} rewards, "
            f"{len(groups)} group ids"
        )
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    A = [0.0] * len(rewards)
    for idx in members.values():
        r = [float(rewards[i]) for i in idx]
        if max(r) == min(r):
            continue
        mean = sum(r) / len(r)
        std = (sum((x - mean) ** 2 for x in r) / (len(r) - 1)) ** 0.5
        for i, x in zip(idx, r, strict=True):
            A[i] = (x - mean) / (std + eps)
    return A


def _clipped_terms(
    logp: torch.Tensor, old_logp: torch.Tensor, A: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate and where the clip is active, both (B, T-1)."""
    import torch

    rho = torch.exp(logp - old_logp)  # (B, T-1) pi_theta / pi_old
    A = A[:, None].to(rho.dtype)  # (B, 1)
    terms = -torch.minimum(rho * A, rho.clamp(1 - eps_low, 1 + eps_high) * A)  # (B, T-1)
    clipped = ((rho < 1 - eps_low) & (A < 0)) | ((rho > 1 + eps_high) & (A > 0))  # (B, T-1)
    return terms, clipped


def clipped_pg(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    A: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped PG surrogate with clip-higher (PPO eq. 7; DeepSeekMath eq. 3; DAPO sec. 3.1).

    Per token -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A), rho = exp(logp - old_logp),
    averaged over the masked tokens. Metrics: ``clip_frac``, the share of masked tokens whose
    gradient the clip removes.

    Args:
        logp: (B, T-1) log pi_theta of the sampled tokens.
        old_logp: (B, T-1) log pi_old of the same tokens (the sampling policy).
        A: (B,) one advantage per sample.
        mask: (B, T-1) bool, the policy tokens.
        eps_low: lower clip range.
        eps_high: upper clip range (DAPO's clip-higher: 0.28 with eps_low 0.2).
    """
    _check_clip(eps_low, eps_high)
    terms, clipped = _clipped_terms(logp, old_logp, A, eps_low, eps_high)
    clip_frac = masked_mean(clipped.to(terms.dtype), mask)
    return masked_mean(terms, mask), {"clip_frac": clip_frac.item()}


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Low-variance KL(pi_theta || pi_ref) estimate (k3; Schulman 2020; DeepSeekMath eq. 4).

    Per token exp(q - p) - (q - p) - 1, q = log pi_ref, p = log pi_theta (>= 0, unbiased under
    samples of pi_theta), averaged over the masked tokens. Shapes (B, T-1).
    """
    import torch

    d = ref_logp - logp  # (B, T-1) q - p
    return masked_mean(torch.exp(d) - d - 1, mask)


def _shaped_terms(
    logp: torch.Tensor, old_logp: torch.Tensor, A: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Per-token -A rho / (rho + gamma): (B, T-1)."""
    import torch

    rho = torch.exp(logp - old_logp)  # (B, T-1)
    return -A[:, None].to(rho.dtype) * rho / (rho + gamma)


def shaped_offpolicy(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    A: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
) -> torch.Tensor:
    """HeRL's shaped weight for off-policy (revised) samples (HeRL, the off-policy objective).

    Per token -A rho / (rho + gamma), rho = pi_theta / pi_old, unclipped: the weight saturates
    instead of being cut, so a revision the policy finds unlikely still gets a gradient.
    Averaged over the masked tokens. Shapes as :func:`clipped_pg`; gamma 1 (0.1 in one of the
    paper's domains).
    """
    _check_gamma(gamma)
    return masked_mean(_shaped_terms(logp, old_logp, A, gamma), mask)


def sft_loss(model: Any, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """IL / SFT ``loss_fn``: :func:`masked_lm_loss` of the batch, no extra metrics."""
    return masked_lm_loss(model, batch.input_ids, batch.labels), {}


def raft_loss(model: Any, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """RAFT ``loss_fn``: :func:`weighted_nll` with ``batch.weights`` (set them to max(r, 0)).

    Rows of weight 0 are not projected at all.
    """
    mask = batch.mask & (batch.weights != 0)[:, None]  # (B, T)
    logp = token_logprobs(model, batch.input_ids, mask)  # (B, T-1)
    return weighted_nll(logp, mask[:, 1:], batch.weights), {}


def policy_loss(
    model: Any,
    batch: TrainBatch,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    beta: float = 0.0,
    gamma: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO-style ``loss_fn``: clipped PG, HeRL's shaped weight off-policy, beta * k3 KL.

    L = mean over all policy tokens of w_b * (:func:`clipped_pg` terms on on-policy rows,
    :func:`shaped_offpolicy` terms on rows flagged ``off_policy``) + beta * :func:`kl_k3`
    when ``batch.ref_logprobs`` is set. Without ``old_logprobs`` the batch is taken as
    sampled by the current policy (rho = 1, the single-update GRPO case). Bind the keywords
    with ``functools.partial(policy_loss, beta=0.001)``.

    Metrics: ``clip_frac`` (over on-policy tokens) and ``kl`` (when ref log-probs are set).
    """
    _check_clip(eps_low, eps_high)
    _check_gamma(gamma)
    mask = batch.mask[:, 1:]  # (B, T-1)
    logp = token_logprobs(model, batch.input_ids, batch.labels)  # (B, T-1)
    old = logp.detach() if batch.old_logprobs is None else batch.old_logprobs[:, 1:]
    pg, clipped = _clipped_terms(logp, old, batch.advantages, eps_low, eps_high)  # (B, T-1)
    shaped = _shaped_terms(logp, old, batch.advantages, gamma)  # (B, T-1)
    off = batch.off_policy[:, None]  # (B, 1)
    terms = pg.where(~off, shaped) * batch.weights[:, None].to(pg.dtype)  # (B, T-1)
    loss = masked_mean(terms, mask)
    metrics = {"clip_frac": masked_mean(clipped.to(pg.dtype), mask & ~off).item()}
    if batch.ref_logprobs is not None:
        kl = kl_k3(logp, batch.ref_logprobs[:, 1:].to(logp.dtype), mask)
        loss = loss + beta * kl
        metrics["kl"] = kl.item()
    return loss, metrics


def _check_clip(eps_low: float, eps_high: float) -> None:
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise ValueError(
            f"Expect 0 <= eps_low < 1 and eps_high >= 0, actually: {eps_low}, {eps_high}"
        )


def _check_gamma(gamma: float) -> None:
    if gamma <= 0:
        raise ValueError(f"Expect gamma > 0, actually: {gamma}")
