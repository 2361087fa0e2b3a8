"""SQuAD-style answer normalization and token F1 (as in HotpotQA / Search-R1 evaluation)."""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, truth: str) -> float:
    """Token-level F1 between the normalized prediction and the normalized truth."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def answer_reward(prediction: str, truth: str, f1_floor: float = 0.3) -> tuple[float, bool, float]:
    """Return ``(reward, exact, f1)``: 1 on exact match, else F1 when F1 >= ``f1_floor``, else 0."""
    exact = normalize_answer(prediction) == normalize_answer(truth)
    f1 = 1.0 if exact else f1_score(prediction, truth)
    reward = 1.0 if exact else (f1 if f1 >= f1_floor else 0.0)
    return reward, exact, f1
