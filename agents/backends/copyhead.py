"""A Llama causal LM with a copy head: a pointer over its own context mixed into the output.

The text envs' replies copy from the page (a product id, an option, a path, an entity), and a
small model trained from scratch learns that copying late, through induction heads
(issue 20). A pointer-generator output gives the model the copy path from its first step:

    p(w | x_<=t) = g_t * softmax(W h_t)[w] + (1 - g_t) * sum_{j < t, x_{j+1} = w} alpha_tj

with h the last layer's states, alpha_t = softmax_j(q_t . k_j / sqrt(d)) over the
earlier positions j whose next token x_{j+1} is known, and g_t = sigmoid(w_g . h_t). Attending
to j copies the token that followed it, so "continue the span I am copying" is attending to
the position of the token just written, the induction step. ``q`` and ``k`` start as the
identity, so from the first step a state attends to earlier states like itself. ``q_t =
q(h_t)`` and ``k_j = k(h_j)``, plus, with ``copy_context = n > 1``, maps of the normalized
embeddings of the n - 1 tokens before (also the identity at first): a span is then matched on
its last n tokens. A position
with no earlier source predicts from the vocabulary alone.

``logits`` are ``log p`` (normalized, so ``log_softmax`` leaves them unchanged and every
consumer of logits, losses, sampling and log-probs, sees the mixture). The copy keys and the
ids of a cached generation are kept on the cache object beside its keys and values.

``import earlyexp.agents.backends.copyhead`` registers the model type ``earlyexp_copy`` with
``AutoConfig`` and ``AutoModelForCausalLM``, so a saved folder loads with
``AutoModelForCausalLM.from_pretrained`` after that import.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "earlyexp_copy"
_KEYS, _IDS = "_earlyexp_copy_keys", "_earlyexp_copy_ids"


class CopyConfig(LlamaConfig):
    """``LlamaConfig`` of a model with a copy head.

    Args:
        copy_context: tokens ending at a position that its copy query and key see: 1, the last
            layer's state alone; n > 1, also the n - 1 tokens before it (their normalized
            embeddings, each through its own map), so that a span is matched on its last n
            tokens and not on one token that recurs everywhere (``/``, a digit).
    """

    model_type = MODEL_TYPE

    def __init__(self, copy_context: int = 1, **kwargs: Any) -> None:
        if copy_context < 1:
            raise ValueError(f"Expect copy_context >= 1, actually: {copy_context}")
        self.copy_context = copy_context
        super().__init__(**kwargs)


class CopyForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` whose output mixes the vocabulary with a pointer (module docstring)."""

    config_class = CopyConfig

    def __init__(self, config: CopyConfig) -> None:
        super().__init__(config)
        width = config.hidden_size
        self.copy_q = nn.Linear(width, width, bias=False)
        self.copy_k = nn.Linear(width, width, bias=False)
        self.copy_gate = nn.Linear(width, 1)
        before = config.copy_context - 1
        self.copy_q_before = nn.ModuleList(
            nn.Linear(width, width, bias=False) for _ in range(before)
        )
        self.copy_k_before = nn.ModuleList(
            nn.Linear(width, width, bias=False) for _ in range(before)
        )
        self._identity_init()

    def _identity_init(self) -> None:
        with torch.no_grad():
            eye = torch.eye(self.config.hidden_size)
            for lin in (self.copy_q, self.copy_k, *self.copy_q_before, *self.copy_k_before):
                lin.weight.copy_(eye)
            self.copy_gate.weight.zero_()
            self.copy_gate.bias.zero_()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Llama's forward, with ``logits`` the log of the copy mixture."""
        if input_ids is None:
            raise ValueError("Expect input_ids (the copy head copies ids), actually: None")
        if not isinstance(logits_to_keep, int):
            raise ValueError(f"Expect logits_to_keep an int, actually: {type(logits_to_keep)}")
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        h = out.last_hidden_state  # (B, T, H)
        ids, old_keys = self._context(out.cache, input_ids)  # (B, S): the whole context
        S, T = ids.shape[1], h.shape[1]
        keys = self.copy_k(h) + self._before(self.copy_k_before, ids, S - T)  # (B, T, H)
        if old_keys is not None:
            keys = torch.cat([old_keys, keys], 1)  # (B, S, H)
        if out.cache is not None:
            setattr(out.cache, _KEYS, keys.detach())
        hq = h[:, -logits_to_keep:] if logits_to_keep else h  # (B, Tq, H)
        q = self.copy_q(hq) + self._before(self.copy_q_before, ids, S - hq.shape[1])
        logits = self._mixture(hq, q, keys, ids, attention_mask)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache)

    @staticmethod
    def _context(store: Any, new_ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The ids of the whole context (the cached ones, then this call's) and the cached keys."""
        if store is None:
            return new_ids, None
        old_keys = getattr(store, _KEYS, None)
        if old_keys is not None and store.get_seq_length() > new_ids.shape[1]:
            new_ids = torch.cat([getattr(store, _IDS), new_ids], 1)
        else:
            old_keys = None
        setattr(store, _IDS, new_ids)
        return new_ids, old_keys

    def _before(self, maps: nn.ModuleList, ids: torch.Tensor, start: int) -> Any:
        """Sum over o of ``maps[o-1]`` of the normalized embedding of x_{p-o}, p >= ``start``."""
        if not len(maps):
            return 0
        lo = max(0, start - len(maps))
        e = self.model.embed_tokens(ids[:, lo:]).float()  # (B, S - lo, H)
        e = e * torch.rsqrt(e.pow(2).mean(-1, keepdim=True) + 1e-6)
        total = 0
        for o, lin in enumerate(maps, 1):
            shifted = nn.functional.pad(e, (0, 0, o, 0))[:, : e.shape[1]]  # row p: x_{p-o}
            total = total + lin(shifted[:, start - lo :])
        return total

    def _mixture(self, hq, q, keys, ids, attention_mask) -> torch.Tensor:
        """The log-mixture at the last ``hq.shape[1]`` positions of the context: (B, Tq, V)."""
        B, S = ids.shape
        Tq = hq.shape[1]
        if S < 2:
            return self._combine(hq, None, None, None)
        scores = self._scores(q, keys)  # (B, Tq, S-1)
        valid = self._earlier(torch.arange(S - Tq, S, device=ids.device), S)[None]
        valid = valid.expand(B, -1, -1)  # (B, Tq, S-1)
        if attention_mask is not None:
            real = attention_mask[:, -S:].bool()
            valid = valid & (real[:, :-1] & real[:, 1:])[:, None, :]
        values = ids[:, None, 1:].expand(B, Tq, S - 1)  # x_{j+1} for source j
        return self._combine(hq, scores, valid, values)

    def labelled_log_probs(self, hidden: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor):
        """The log-mixture predicting ``ids[:, 1:][keep]``: (N, V), at those N positions only.

        Args:
            hidden: (B, T, H) last hidden states of ``ids``.
            ids: (B, T) right-padded token ids.
            keep: (B, T-1) bool; column t marks the position t that predicts token t + 1.
        """
        B, T = ids.shape
        rows, cols = keep.nonzero(as_tuple=True)  # (N,), (N,)
        hq = hidden[:, :-1][keep]  # (N, H)
        if T < 2 or not len(rows):
            return self._combine(hq, None, None, None)
        keys = self.copy_k(hidden) + self._before(self.copy_k_before, ids, 0)  # (B, T, H)
        q = self.copy_q(hidden[:, :-1]) + self._before(self.copy_q_before, ids[:, :-1], 0)
        scores = self._scores(q, keys)[rows, cols]  # (N, T-1)
        valid = self._earlier(cols, T)  # (N, T-1)
        return self._combine(hq, scores, valid, ids[rows, 1:])

    @staticmethod
    def _scores(q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """q_t . k_j / sqrt(d) for every source j but the last: (B, Tq, S-1)."""
        return q.float() @ keys[:, :-1].float().transpose(1, 2) / math.sqrt(q.shape[-1])

    @staticmethod
    def _earlier(at: torch.Tensor, S: int) -> torch.Tensor:
        """Sources j < t (their next token x_{j+1} is in the context) for each t of ``at``."""
        return torch.arange(S - 1, device=at.device)[None, :] < at[:, None]  # (len(at), S-1)

    def _combine(self, hq, scores, valid, values) -> torch.Tensor:
        """log(g p_vocab + (1 - g) p_copy) from query states (..., H) and sources (..., S')."""
        vocab = torch.softmax(self.lm_head(hq).float(), -1)  # (..., V)
        if scores is None:
            return torch.log(vocab.clamp_min(1e-30))
        gate = torch.sigmoid(self.copy_gate(hq).float())  # (..., 1)
        has_source = valid.any(-1, keepdim=True)
        alpha = torch.softmax(scores.masked_fill(~valid, -1e9), -1) * has_source
        gate = torch.where(has_source, gate, torch.ones_like(gate))
        copied = torch.zeros_like(vocab).scatter_add_(-1, values, alpha)  # (..., V)
        return torch.log((gate * vocab + (1 - gate) * copied).clamp_min(1e-30))


AutoConfig.register(MODEL_TYPE, CopyConfig, exist_ok=True)
AutoModelForCausalLM.register(CopyConfig, CopyForCausalLM, exist_ok=True)
