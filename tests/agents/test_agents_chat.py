"""The loss mask covers exactly the assistant tokens, for our template and a default one."""

from __future__ import annotations

import pytest

from earlyexp.agents.chat import ChatEncoder

MESSAGES = [
    {"role": "system", "content": "You are an agent. Task: reach B."},
    {"role": "user", "content": "Observation:\nDDAB\nAvailable actions: Up, Down"},
    {"role": "assistant", "content": "<action>Right</action>"},
    {"role": "user", "content": "Observation:\nThe agent moved Right.\nDDDA"},
    {"role": "assistant", "content": "I go <action>Left</action>"},
]


def _tokenizers(tiny_path):
    from transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(tiny_path)
    plain = AutoTokenizer.from_pretrained(tiny_path)
    plain.chat_template = None  # the encoder falls back to its default template
    return [ours, plain]


def _runs(ids, mask):
    """Maximal runs of masked ids."""
    runs, cur = [], []
    for t, m in zip(ids, mask, strict=True):
        if m:
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])


@pytest.mark.parametrize("which", [0, 1])
def test_mask_covers_exactly_the_assistant_tokens(tiny_path, which):
    tok = _tokenizers(tiny_path)[which]
    enc = ChatEncoder(tok)
    eos = tok.eos_token
    ids, mask = enc.encode(MESSAGES, train_on="all")
    assert len(ids) == len(mask)
    runs = [tok.decode(r) for r in _runs(ids, mask)]
    assert runs == [MESSAGES[2]["content"] + eos, MESSAGES[4]["content"] + eos]
    # the unmasked tokens are exactly the rest of the rendered conversation
    full = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert tok.decode(ids) == full
    rest = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    for m in MESSAGES[:2] + [MESSAGES[3]]:
        assert m["content"] in rest
    assert "Right</action>" not in rest and "Left</action>" not in rest

    last_ids, last_mask = enc.encode(MESSAGES, train_on="last")
    assert last_ids == ids
    assert [tok.decode(r) for r in _runs(last_ids, last_mask)] == [MESSAGES[4]["content"] + eos]


def test_encode_rejects_bad_conversations(tiny_path):
    enc = ChatEncoder(_tokenizers(tiny_path)[0])
    with pytest.raises(ValueError, match="system"):
        enc.encode(MESSAGES[1:])
    with pytest.raises(ValueError, match="train_on"):
        enc.encode(MESSAGES, train_on="some")


def test_template_generation_marks_the_encoder_mask(tiny_path):
    """``return_assistant_tokens_mask`` (TRL's assistant_only_loss) marks the encoder's tokens."""
    tok = _tokenizers(tiny_path)[0]
    ids, mask = ChatEncoder(tok).encode(MESSAGES, train_on="all")
    out = tok.apply_chat_template(
        MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert out["input_ids"] == ids
    assert out["assistant_masks"] == mask


def test_tiny_generation_config_samples(tiny_path):
    """Servers that read the checkpoint's generation config sample (temperature 1)."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(tiny_path)
    assert config.do_sample and config.temperature == 1.0
