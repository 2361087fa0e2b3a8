"""Reflection providers: requests in, texts out, batched, with one protocol and three writers.

A :class:`ReflectionRequest` holds what one reflection is about, in one of three kinds:

- ``alternatives`` (Early Experience self-reflection, SR): at an expert state ``s_i``, the
  expert action ``a_i`` and what it led to, and ``K >= 0`` alternative actions with what they
  did when tried. The text is a short first-person reasoning for why ``a_i`` is the better
  choice, grounded in those outcomes (``K = 0``: why this action, with no alternatives).
- ``attempt`` (ERL, Reflexion): a failed attempt (``r1 < tau``) as its steps (action, feedback),
  its score and rubric, and the memory of the last reflection that led to a success. The text
  guides a second attempt: rules inferred from the feedback plus a ``Strategy:`` line (ERL's
  rewritten "rulebook" system prompt; Reflexion keeps such texts in an episodic memory).
- ``revision`` (HeRL): a failed response's rubric, as a guide for a revision attempt: fix
  the unmet items, keep the met ones.

A :class:`ReflectionProvider` turns a batch of requests into one :class:`Reflection` per
request, in order, and never raises for a bad text or a dead server: it records ``ok=False``
and the reason. Every reflection names its :attr:`Reflection.provider`. Providers:

- :class:`PolicyReflector`: the policy itself (any backend of the Policy protocol), prompted
  with the templates below, one ``complete`` call for the batch;
- :class:`HTTPReflector`: an external model behind an OpenAI-compatible server, failures
  retried with exponential backoff and then recorded;
- :class:`GroundedReflector`: no model, the text is assembled from the env's feedback, the
  observed outcomes and the rubric (the honest choice for a model trained from scratch).

The paper's pitfalls are guarded twice: the templates forbid them and
:func:`validate_reflection` flags label leaks ("the expert action", "Action 2") and repeated
sentences in what a model wrote (repeats are stripped, leaks fail the reflection). Outcomes
are phrased as what an action would do, or did when tried, never as already seen at ``s_i``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from earlyexp.agents.policy import Policy, Prompt, SamplingParams
from earlyexp.agents.prompting import ACTION_CLOSE, ACTION_OPEN, Message, parse_action

if TYPE_CHECKING:
    from earlyexp.envs.core.types import RubricItem

ReflectionKind = Literal["alternatives", "attempt", "revision"]
KINDS: tuple[ReflectionKind, ...] = ("alternatives", "attempt", "revision")

DEFAULT_SAMPLING = SamplingParams(max_new_tokens=160, temperature=0.7, stop=())
"""Sampling of model-written reflections (no stop string: SR's closing action tag is cut)."""
QUOTE_CHARS = 160
"""An outcome or feedback line is quoted up to this many characters."""
OBSERVATION_CHARS = 1500
"""The state observation shown to a model is cut at this many characters."""


@dataclass(frozen=True)
class Step:
    """One action and what the env answered.

    Attributes:
        action: the action text as sent to the env.
        outcome: ``info["feedback"]``, or a short summary of the next observation.
        valid: ``info["action_valid"]`` (False: malformed or impossible, state unchanged).
    """

    action: str
    outcome: str = ""
    valid: bool = True

    @classmethod
    def from_info(cls, action: str, info: Mapping[str, Any]) -> Step:
        """The step of ``action`` from the ``info`` the env returned after it."""
        return cls(action, str(info.get("feedback", "")), bool(info.get("action_valid", True)))


@dataclass
class ReflectionRequest:
    """What one reflection is about (fields a kind does not use stay empty).

    Attributes:
        kind: ``alternatives`` (SR), ``attempt`` (ERL, Reflexion) or ``revision`` (HeRL).
        task: ``info["task"]``.
        observation: SR: the observation of the state ``s_i``.
        action: SR: the expert action ``a_i``.
        outcome: SR: what ``a_i`` led to (feedback or a short next observation).
        alternatives: SR: the K alternative actions with what they did when tried.
        steps: attempt / revision: the attempt's steps, in order.
        score: attempt / revision: the final ``info["score"]`` (None: unknown).
        rubric: attempt / revision: the final ``info["rubric"]``.
        memory: the last reflection that led to a success (ERL), or earlier reflections
            (Reflexion); empty when none.
    """

    kind: ReflectionKind
    task: str
    observation: str = ""
    action: str = ""
    outcome: str = ""
    alternatives: list[Step] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    score: float | None = None
    rubric: list[RubricItem] = field(default_factory=list)
    memory: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Expect kind in {KINDS}, actually: {self.kind!r}")
        if self.kind == "alternatives" and not self.action:
            raise ValueError("Expect the expert action for an 'alternatives' request, actually: ''")

    def sources(self) -> str:
        """Every text the request carries (what a reflection may legitimately quote)."""
        parts = [self.task, self.observation, self.action, self.outcome, self.memory]
        parts += [f"{s.action}\n{s.outcome}" for s in (*self.alternatives, *self.steps)]
        parts += [r["criterion"] for r in self.rubric]
        return "\n".join(parts)


@dataclass
class Reflection:
    """One reflection and who wrote it.

    Attributes:
        text: the reflection (empty when it failed to be written).
        provider: the name of the provider that wrote it (``policy``, ``http``, ``grounded``).
        ok: False when the text must not be used (server failure, label leak, empty).
        error: why ``ok`` is False (empty otherwise).
        action: SR: the action the reflection concludes with, when it names one.
    """

    text: str
    provider: str
    ok: bool = True
    error: str = ""
    action: str | None = None


@runtime_checkable
class ReflectionProvider(Protocol):
    """Anything that writes one reflection per request, in order."""

    name: str
    """Recorded in every :attr:`Reflection.provider` it writes."""

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[Reflection]:
        """Return one reflection per request, in order; never raise for a failed one."""
        ...


# ---------------------------------------------------------------------------------------------
# Prompt templates (model-written reflections)

REFLECT_SYSTEM = (
    "You write short reflections for an agent acting in a text environment. Write in the "
    "first person, refer to actions only by their text, and say each thing once."
)
ALTERNATIVES_TEMPLATE = """Task: {task}

Current observation:
{observation}

The action I take now: {action}
What it leads to: {outcome}
{alternatives}
Write my reasoning, in at most {max_words} words, for why "{action}" is {why}, grounded in \
the results above. Rules:
- Name actions by their text only. Never write "expert", "Action 1", "Option 2" or any other label.
- At this state I have not seen any result yet: say what an action would do, or did when \
tried, never describe a result as something I see now.
- Do not repeat a sentence.
End with the action as <action>{action}</action>"""
ALTERNATIVES_BLOCK = "\nOther actions, and what each did when tried:\n{lines}\n"
ATTEMPT_TEMPLATE = """Task: {task}

My last attempt (score {score}):
{steps}
{rubric}{memory}
The attempt failed. Write, in at most {max_words} words, a short rulebook for my next attempt: \
the rules of this environment that the feedback above shows, then one line starting with \
"Strategy:" giving the plan that fixes what went wrong. Name actions by their text only and \
do not repeat a sentence."""
REVISION_TEMPLATE = """Task: {task}

A previous attempt (score {score}):
{steps}
{rubric}{memory}
Write, in at most {max_words} words, a revision guide for a new attempt: keep what the \
rubric marks as met, and for each item not met say how to fix it, using the feedback above. \
Name actions by their text only and do not repeat a sentence."""


def reflection_messages(request: ReflectionRequest, max_words: int = 120) -> list[Message]:
    """The chat messages asking a model for ``request``'s reflection."""
    r = request
    if r.kind == "alternatives":
        lines = "\n".join(f"- {_tried(s)}" for s in _distinct(r.alternatives, r.action))
        user = ALTERNATIVES_TEMPLATE.format(
            task=r.task,
            observation=_cut(r.observation, OBSERVATION_CHARS),
            action=r.action,
            outcome=_quote(r.outcome) or "(no message)",
            alternatives=ALTERNATIVES_BLOCK.format(lines=lines) if lines else "",
            why="the better choice here" if lines else "the right step toward the task",
            max_words=max_words,
        )
    else:
        template = ATTEMPT_TEMPLATE if r.kind == "attempt" else REVISION_TEMPLATE
        memory = f"\nWhat worked in an earlier success:\n{r.memory.strip()}\n" if r.memory else ""
        user = template.format(
            task=r.task,
            score=_score(r.score),
            steps="\n".join(_trace(r.steps)) or "(no steps)",
            rubric=_rubric_block(r.rubric),
            memory=memory,
            max_words=max_words,
        )
    return [{"role": "system", "content": REFLECT_SYSTEM}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------------------------------
# Checks on model-written texts

LEAK_PATTERNS = (
    re.compile(r"\bexpert(?:'s)?\b", re.IGNORECASE),
    re.compile(r"\b(?:action|option|alternative|candidate|choice)\s*#?\s*\d+\b", re.IGNORECASE),
)
"""Labels a reflection must not name (unless the request's own texts contain them)."""
_SENTENCE_END = re.compile(r"((?<=[.!?])\s+|\n+)")


def _sentence_key(sentence: str) -> str:
    """A sentence reduced to its words, for spotting repeats (short ones never count)."""
    words = re.findall(r"\w+", sentence.lower())
    return " ".join(words) if len(words) >= 3 else ""


def validate_reflection(text: str, request: ReflectionRequest) -> list[str]:
    """Return the problems of ``text`` as a reflection on ``request`` (empty: none).

    Flags an empty text, label leaks (:data:`LEAK_PATTERNS` matches that the request's own
    texts do not contain, e.g. "the expert action", "Action 2") and sentences said twice.
    """
    if not text.strip():
        return ["empty reflection"]
    problems: list[str] = []
    sources = request.sources().lower()
    for pattern in LEAK_PATTERNS:
        for m in pattern.finditer(text):
            if m.group(0).lower() not in sources:
                problems.append(f"label leak: {m.group(0)!r}")
    seen: set[str] = set()
    for sentence in _SENTENCE_END.split(text)[::2]:
        key = _sentence_key(sentence)
        if key and key in seen:
            problems.append(f"repeated sentence: {sentence.strip()[:80]!r}")
        seen.add(key)
    return list(dict.fromkeys(problems))


def dedupe_sentences(text: str) -> str:
    """Drop every later copy of a sentence of ``text`` (its separators kept)."""
    parts = _SENTENCE_END.split(text)  # sentence, separator, sentence, ...
    seen: set[str] = set()
    out: list[str] = []
    for i in range(0, len(parts), 2):
        key = _sentence_key(parts[i])
        if key and key in seen:
            continue
        seen.add(key)
        out.append(parts[i] + (parts[i + 1] if i + 1 < len(parts) else ""))
    return "".join(out).strip()


def finish_reflection(
    text: str, request: ReflectionRequest, provider: str, max_chars: int = 1500
) -> Reflection:
    """Turn a model's raw text into a :class:`Reflection`: split SR's action, clean, check.

    SR texts are cut at the first ``</action>``, and the action in that tag (the
    ``prompting`` rule) becomes :attr:`Reflection.action`. Repeated sentences are removed,
    the text is capped at ``max_chars``, and any remaining problem fails the reflection.
    """
    action = None
    if request.kind == "alternatives":
        end = text.find(ACTION_CLOSE)
        head = text if end < 0 else text[: end + len(ACTION_CLOSE)]
        action = parse_action(head)
        text = head[: head.rfind(ACTION_OPEN)] if action is not None else head
    text = _cap(dedupe_sentences(text.strip()), max_chars)
    problems = validate_reflection(text, request)
    return Reflection(text, provider, not problems, "; ".join(problems), action)


# ---------------------------------------------------------------------------------------------
# Providers


class PolicyReflector:
    """Reflections written by a policy (any backend), one ``complete`` call per batch.

    Args:
        policy: the model that writes (in the papers, the policy being trained).
        sampling: how to sample (default :data:`DEFAULT_SAMPLING`).
        max_words: the length asked for in the prompt (keep it short for small models).
        max_chars: texts are capped at this many characters.
        name: recorded as :attr:`Reflection.provider`.
    """

    def __init__(
        self,
        policy: Policy,
        sampling: SamplingParams | None = None,
        max_words: int = 120,
        max_chars: int = 1500,
        name: str = "policy",
    ) -> None:
        if max_words < 1 or max_chars < 1:
            raise ValueError(
                f"Expect max_words >= 1 and max_chars >= 1, actually: {max_words}, {max_chars}"
            )
        self.policy, self.name = policy, name
        self.sampling = sampling or DEFAULT_SAMPLING
        self.max_words, self.max_chars = max_words, max_chars

    def prompt(self, request: ReflectionRequest) -> Prompt:
        """The policy prompt of one request."""
        return Prompt(reflection_messages(request, self.max_words))

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[Reflection]:
        """One reflection per request, in order."""
        if not requests:
            return []
        completions = self.policy.complete([self.prompt(r) for r in requests], self.sampling)
        return [
            finish_reflection(c.text, r, self.name, self.max_chars)
            for c, r in zip(completions, requests, strict=True)
        ]


class HTTPReflector(PolicyReflector):
    """Reflections written by a model behind an OpenAI-compatible server.

    Each request is sent on its own (``max_concurrency`` in flight); connection errors,
    timeouts, 429 and 5xx answers are retried ``retries`` times with exponential backoff
    (``backoff``, doubled each time), after which the request's reflection is recorded as
    failed (``ok=False``, the error, empty text). ``reflect`` never raises for the server.

    Args:
        base_url: the server's ``/v1`` URL.
        model: the model name sent with each request.
        api_key: sent as a bearer token when given.
        sampling: how to sample (``seed``, when set, is offset by the request's index).
        retries: extra attempts after a retryable failure.
        backoff: first retry delay in seconds.
        timeout: seconds per HTTP request.
        max_concurrency: requests in flight at most.
        max_words: the length asked for in the prompt.
        max_chars: texts are capped at this many characters.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        sampling: SamplingParams | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        max_words: int = 120,
        max_chars: int = 1500,
    ) -> None:
        from earlyexp.agents.backends.openai_http import OpenAIPolicy

        client = OpenAIPolicy(
            base_url, model, api_key, max_concurrency, timeout, retries, backoff, logprobs=False
        )
        super().__init__(client, sampling, max_words, max_chars, name="http")
        self.client, self.model, self.max_concurrency = client, model, max_concurrency

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[Reflection]:
        """One reflection per request, in order; failed requests give ``ok=False``."""
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(self._one, range(len(requests)), requests))

    def _one(self, index: int, request: ReflectionRequest) -> Reflection:
        import httpx

        from earlyexp.agents.backends.openai_http import ServerError

        sampling = self.sampling
        if sampling.seed is not None:
            sampling = replace(sampling, seed=sampling.seed + index)
        try:
            (c,) = self.client.complete([self.prompt(request)], sampling)
        except (ServerError, httpx.HTTPError, ValueError) as e:  # ValueError: a non-JSON answer
            return Reflection("", self.name, ok=False, error=str(e) or repr(e))
        return finish_reflection(c.text, request, self.name, self.max_chars)


class GroundedReflector:
    """Reflections assembled from the env's own words: feedback, outcomes and rubric.

    Deterministic and model-free. SR texts name actions by their text, phrase the chosen
    action's result as expected and the alternatives' as what they did when tried, merge
    alternatives with the same result, and stop at ``max_chars``.

    Args:
        max_alternatives: SR: at most this many (merged) alternatives are described.
        max_steps: attempt / revision: the last this many steps are listed.
        max_chars: texts are capped at this many characters.
    """

    name = "grounded"

    def __init__(self, max_alternatives: int = 4, max_steps: int = 8, max_chars: int = 900):
        if min(max_alternatives, max_steps, max_chars) < 1:
            raise ValueError(
                "Expect max_alternatives, max_steps and max_chars >= 1, actually: "
                f"{max_alternatives}, {max_steps}, {max_chars}"
            )
        self.max_alternatives, self.max_steps = max_alternatives, max_steps
        self.max_chars = max_chars

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[Reflection]:
        """One reflection per request, in order."""
        return [self.one(r) for r in requests]

    def one(self, request: ReflectionRequest) -> Reflection:
        """The reflection of one request."""
        if request.kind == "alternatives":
            text = self._alternatives(request)
            return Reflection(text, self.name, action=request.action)
        lines = self._attempt(request) if request.kind == "attempt" else self._revision(request)
        if request.memory.strip():
            lines.append(f"What worked in an earlier success: {request.memory.strip()}")
        return Reflection(_cap("\n".join(lines), self.max_chars), self.name)

    def _alternatives(self, r: ReflectionRequest) -> str:
        outcome = _quote(r.outcome)
        a = f'"{r.action}"'
        head = f'I choose {a}, which I expect to give "{outcome}".' if outcome else f"I choose {a}."
        groups: dict[tuple[str, bool], list[str]] = {}
        for s in _distinct(r.alternatives, r.action):
            groups.setdefault((_quote(s.outcome), s.valid), []).append(f'"{s.action}"')
        clauses = [
            _tried_clause(names, fb, valid, same=bool(fb) and fb == outcome)
            for (fb, valid), names in list(groups.items())[: self.max_alternatives]
        ]
        tried: list[str] = []
        for clause in clauses:  # as many as fit, in order
            if (
                len(head) + sum(len(c) + 2 for c in tried) + len(clause) + len(a) + 40
                > self.max_chars
            ):
                break
            tried.append(clause)
        if tried:
            return f"{head} When tried, {'; '.join(tried)}. So {a} is the better choice here."
        if groups:
            return f"{head} So {a} is the better choice here."
        return f"{head} It is a step toward the task: {_cut(_first_sentence(r.task), 200)}"

    def _attempt(self, r: ReflectionRequest) -> list[str]:
        unmet, met = _rubric_split(r.rubric)
        lines = [f"My last attempt scored {_score(r.score)} after {len(r.steps)} steps:"]
        lines += _trace(r.steps, self.max_steps)
        if unmet:
            lines.append("Not met: " + "; ".join(unmet) + ".")
        if met:
            lines.append("Met: " + "; ".join(met) + ".")
        fixes = [f"fix what was not met ({'; '.join(unmet)})"] if unmet else []
        fixes += ["keep what was met"] if met else []
        rejected = list(dict.fromkeys(f'"{s.action}"' for s in r.steps if not s.valid))
        if rejected:
            fixes.append(f"avoid actions that were rejected ({', '.join(rejected[:6])})")
        if r.steps and r.steps[-1].outcome:
            fixes.append(f'do not end the same way ("{_quote(r.steps[-1].outcome)}")')
        if not fixes:
            fixes.append("try a different sequence of actions")
        lines.append("Strategy: " + ", ".join(fixes) + ".")
        return lines

    def _revision(self, r: ReflectionRequest) -> list[str]:
        unmet, met = _rubric_split(r.rubric)
        lines = [f"Revise the previous attempt (score {_score(r.score)})."]
        if unmet:
            lines += ["Fix, not met yet:"] + [f"- [ ] {c}" for c in unmet]
        else:
            lines.append("No rubric item is marked unmet; raise the score with the feedback below.")
        if met:
            lines += ["Keep, already met:"] + [f"- [x] {c}" for c in met]
        rejected = _distinct([s for s in r.steps if not s.valid], "")
        for s in rejected[: self.max_steps]:
            lines.append(f'Avoid "{s.action}": the env answered "{_quote(s.outcome)}".')
        if r.steps and r.steps[-1].outcome and r.steps[-1] not in rejected:
            lines.append(f'The attempt ended with "{_quote(r.steps[-1].outcome)}".')
        return lines


def make_reflector(
    name: str,
    policy: Policy | None = None,
    url: str | None = None,
    model: str = "",
    sampling: SamplingParams | None = None,
    **kwargs: Any,
) -> ReflectionProvider:
    """The provider called ``name``: ``policy``, ``http`` or ``grounded``.

    Args:
        name: which provider.
        policy: the policy (``policy`` only).
        url: the server's ``/v1`` URL, or ``http://HOST:PORT/v1#MODEL`` (``http`` only).
        model: the model name (``http``; default: the ``#MODEL`` part of ``url``).
        sampling: how to sample (model providers).
        **kwargs: passed on to the provider's constructor.
    """
    if name == "grounded":
        return GroundedReflector(**kwargs)
    if name == "policy":
        if policy is None:
            raise ValueError("Expect a policy for the 'policy' reflector, actually: None")
        return PolicyReflector(policy, sampling, **kwargs)
    if name == "http":
        if not url:
            raise ValueError(f"Expect a server URL for the 'http' reflector, actually: {url!r}")
        if not model:
            from earlyexp.agents.models import parse_model

            spec = parse_model(url)
            url, model = spec.url or url, spec.name
        return HTTPReflector(url, model, sampling=sampling, **kwargs)
    raise ValueError(f"Expect a reflector in ('policy', 'http', 'grounded'), actually: {name!r}")


# ---------------------------------------------------------------------------------------------
# Text helpers shared by the templates and the grounded writer


def _cut(text: str, n: int) -> str:
    """``text`` cut at ``n`` characters, with a marker."""
    return text if len(text) <= n else text[: n - 3].rstrip() + "..."


def _quote(text: str, n: int = QUOTE_CHARS) -> str:
    """``text`` on one line to quote: whitespace collapsed, ``"`` made ``'``, no final period."""
    return _cut(" ".join(text.split()).replace('"', "'").rstrip(" ."), n)


def _cap(text: str, n: int) -> str:
    """``text`` cut at ``n`` characters, at a sentence or line end where one is near."""
    if len(text) <= n:
        return text
    head = text[:n]
    end = max(head.rfind(". "), head.rfind(".\n"), head.rfind("\n"))
    return head[: end + 1].rstrip() if end > n // 2 else _cut(text, n)


def _first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when it has no sentence end)."""
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def _score(score: float | None) -> str:
    return "unknown" if score is None else f"{score:.2f}"


def _distinct(steps: Sequence[Step], exclude: str) -> list[Step]:
    """``steps`` without repeats and without the action ``exclude``, in order."""
    return [s for s in dict.fromkeys(steps) if s.action != exclude or not exclude]


def _tried(s: Step) -> str:
    """One alternative for a prompt: its action and what it did when tried."""
    mark = " (rejected)" if not s.valid else ""
    return f"{s.action}: {_quote(s.outcome) or '(no message)'}{mark}"


def _tried_clause(names: list[str], feedback: str, valid: bool, same: bool) -> str:
    """What alternatives that all gave ``feedback`` did when tried, as one clause."""
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    if same:
        return f"{who} gave the same result"
    if not valid:
        return f'{who} {"was" if len(names) == 1 else "were"} rejected ("{feedback}")'
    return f'{who} gave "{feedback}"' if feedback else f"{who} gave no message"


def _trace(steps: Sequence[Step], max_steps: int = 8) -> list[str]:
    """The last ``max_steps`` steps as ``- "action": "feedback"`` lines, runs merged."""
    runs: list[tuple[Step, int]] = []
    for s in steps:
        if runs and runs[-1][0] == s:
            runs[-1] = (s, runs[-1][1] + 1)
        else:
            runs.append((s, 1))
    lines = []
    skipped = sum(n for _, n in runs[:-max_steps])
    if skipped:
        lines.append(f"- ({skipped} earlier steps)")
    for s, n in runs[-max_steps:]:
        notes = ([] if s.valid else ["rejected"]) + ([f"{n} times"] if n > 1 else [])
        note = f" ({', '.join(notes)})" if notes else ""
        lines.append(f'- "{s.action}": "{_quote(s.outcome)}"{note}')
    return lines


def _rubric_split(rubric: Sequence[RubricItem]) -> tuple[list[str], list[str]]:
    """(unmet criteria, met criteria), in rubric order, without repeats."""
    unmet = [r["criterion"] for r in rubric if not r["met"]]
    met = [r["criterion"] for r in rubric if r["met"]]
    return list(dict.fromkeys(unmet)), list(dict.fromkeys(met))


def _rubric_block(rubric: Sequence[RubricItem]) -> str:
    """The rubric for a prompt: the unmet items, then the met ones."""
    unmet, met = _rubric_split(rubric)
    lines = [f"- not met: {c}" for c in unmet] + [f"- met: {c}" for c in met]
    return "Rubric:\n" + "\n".join(lines) + "\n" if lines else ""
