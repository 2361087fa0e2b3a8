"""Reflection providers: requests in, texts out, batched, with one protocol and three writers.

A :class:`ReflectionRequest` holds what one reflection is about, in one of four kinds:

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
- ``rulebook`` (ERL, as its public code): the prompt in use (the memory, else the initial
  system prompt) and up to 8 recent :class:`Attempt` records (observations, actions, whether
  each action had an effect, rewards, the env's feedback). The text is a complete revised
  system prompt: rules inferred from the attempts plus a ``Strategy:`` line. Models answer
  inside ``<prompt>...</prompt>``; a reply without the tags fails with
  :data:`MISSING_PROMPT_TAG`. The grounded writer infers the rules of grid boards (which
  symbol is the agent, what each move does, what stepping on each symbol did, which moves had
  no effect) and falls back to the feedback of the steps on any other env.

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

ReflectionKind = Literal["alternatives", "attempt", "revision", "rulebook"]
KINDS: tuple[ReflectionKind, ...] = ("alternatives", "attempt", "revision", "rulebook")

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
        observation: rulebook: the observation seen before the action.
        effect: rulebook: whether the action changed the state (None: unknown).
        reward: rulebook: the step's reward.
    """

    action: str
    outcome: str = ""
    valid: bool = True
    observation: str = ""
    effect: bool | None = None
    reward: float = 0.0

    @classmethod
    def from_info(cls, action: str, info: Mapping[str, Any]) -> Step:
        """The step of ``action`` from the ``info`` the env returned after it."""
        return cls(action, str(info.get("feedback", "")), bool(info.get("action_valid", True)))


@dataclass
class Attempt:
    """One attempt at a task, as an ERL rulebook reflection is shown it.

    Attributes:
        steps: the steps in order, with ``observation``, ``effect`` and ``reward`` set.
        score: the final score (the attempt's reward).
        task: the instruction.
        rubric: the final rubric.
    """

    steps: list[Step] = field(default_factory=list)
    score: float = 0.0
    task: str = ""
    rubric: list[RubricItem] = field(default_factory=list)


@dataclass
class ReflectionRequest:
    """What one reflection is about (fields a kind does not use stay empty).

    Attributes:
        kind: ``alternatives`` (SR), ``attempt`` (Reflexion), ``revision`` (HeRL) or
            ``rulebook`` (ERL).
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
        attempts: rulebook: the recent attempts, oldest first.
        system: rulebook: the initial system prompt (shown while the memory is empty, and
            the base of a grounded rulebook).
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
    attempts: list[Attempt] = field(default_factory=list)
    system: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Expect kind in {KINDS}, actually: {self.kind!r}")
        if self.kind == "alternatives" and not self.action:
            raise ValueError("Expect the expert action for an 'alternatives' request, actually: ''")

    def sources(self) -> str:
        """Every text the request carries (what a reflection may legitimately quote)."""
        parts = [self.task, self.observation, self.action, self.outcome, self.memory, self.system]
        steps = [*self.alternatives, *self.steps, *(s for a in self.attempts for s in a.steps)]
        parts += [f"{s.action}\n{s.outcome}\n{s.observation}" for s in steps]
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
        token_ids: the sampled ids of a model-written reply, as sampled (empty otherwise).
        logprobs: their log-probs under the model that wrote them (empty otherwise).
    """

    text: str
    provider: str
    ok: bool = True
    error: str = ""
    action: str | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


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
ALTERNATIVES_BLOCK = "\nOther actions, numbered, and what each did when tried:\n{lines}\n"
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

MEMORY_HEADING = "Inferred information from past attempts (may be inaccurate)"
"""The heading of the memory (or, while it is empty, the initial prompt) in a rulebook request."""
PROMPT_OPEN, PROMPT_CLOSE = "<prompt>", "</prompt>"
MISSING_PROMPT_TAG = "no <prompt>...</prompt> in the reply"
"""The :attr:`Reflection.error` of a rulebook reply without the tags (the caller falls back)."""
RULES_HEADING = "Rules observed in past attempts"
RULEBOOK_SYSTEM = (
    "You maintain the system prompt of an agent that acts in a text environment whose rules "
    "it has to discover. You are shown the prompt in use and recent attempts: observations, "
    "actions, whether each action had an effect, rewards and the environment's feedback. "
    "Compare the attempts that scored with those that did not, infer the rules (what each "
    "symbol stands for, what each action does, what ends an episode and how it is scored) and "
    "a strategy, and write the complete revised system prompt inside <prompt>...</prompt>. "
    "State each rule once, as a short definite sentence; keep the task and the reply format."
)
RULEBOOK_TEMPLATE = """## {heading}
{base}

## Recent attempts
{attempts}

Write the complete revised system prompt for the next attempt inside <prompt>...</prompt>: \
the rules that the attempts above show, then one line starting with "Strategy:"."""
RETRY_INSTRUCTION = (
    "Below are your past attempts: observations, actions, rewards and the environment's "
    "feedback. Use them to choose better actions in this attempt, and keep to the reply format."
)
"""ERL's no-reflection ablation: this instruction and the raw attempts replace a reflection."""
ATTEMPT_OBSERVATION_CHARS = 600
"""An attempt's observations are cut at this many characters in a rulebook request."""


def attempts_text(attempts: Sequence[Attempt], max_steps: int = 8) -> str:
    """The attempts as a rulebook request shows them, oldest first.

    Each step's observation, action, whether it had an effect, reward and feedback, then the
    attempt's reward and the env's feedback on it (:func:`attempt_feedback`).
    """
    blocks = []
    for k, a in enumerate(attempts, start=1):
        lines = [f"### Attempt {k}"] + ([f"Task: {a.task}"] if a.task else [])
        skipped = max(0, len(a.steps) - max_steps)
        if skipped:
            lines.append(f"({skipped} earlier steps not shown)")
        for t, s in enumerate(a.steps[skipped:], start=skipped + 1):
            effect = {True: "yes", False: "no", None: "unknown"}[s.effect]
            effect += "" if s.valid else " (rejected)"
            lines.append(f"Observation {t}:\n{_cut(s.observation, ATTEMPT_OBSERVATION_CHARS)}")
            lines.append(
                f"Action {t}: {s.action} | had an effect: {effect} | reward {s.reward:.2f}"
            )
            lines.append(f"Feedback {t}: {_quote(s.outcome) or '(none)'}")
        lines.append(f"Reward: {a.score:.2f}")
        lines.append(f"Feedback: {attempt_feedback(a)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) or "(no attempts)"


def attempt_feedback(a: Attempt) -> str:
    """The env's feedback on a whole attempt, in one line: how it ended, idle moves, score."""
    if not a.steps:
        return f"No step was taken. Score {a.score:.2f}."
    last = a.steps[-1]
    said = f' with "{_quote(last.outcome)}"' if last.outcome else ""
    n = f"{len(a.steps)} step" + ("s" if len(a.steps) != 1 else "")
    parts = [f'It ended after {n}{said}, the last action being "{last.action}".']
    idle = sum(s.effect is False and s.valid for s in a.steps)
    rejected = sum(not s.valid for s in a.steps)
    if idle:
        parts.append(f"{idle} action(s) had no effect.")
    if rejected:
        parts.append(f"{rejected} action(s) were rejected.")
    unmet, _ = _rubric_split(a.rubric)
    if unmet:
        parts.append("Not met: " + "; ".join(unmet) + ".")
    return " ".join([*parts, f"Score {a.score:.2f}."])


def retry_prompt(
    request: ReflectionRequest, max_steps: int = 8, max_chars: int | None = None
) -> str:
    """ERL's no-reflection ablation: the initial prompt, :data:`RETRY_INSTRUCTION`, the attempts.

    With ``max_chars`` (the cap of a reflector's revised prompt), the oldest attempts are left
    out until the prompt fits; the latest attempt is always kept.
    """
    head = f"{request.system.strip()}\n\n{RETRY_INSTRUCTION}\n\n## Recent attempts\n"
    attempts = list(request.attempts)
    text = head + attempts_text(attempts, max_steps)
    while max_chars is not None and len(text) > max_chars and len(attempts) > 1:
        attempts = attempts[1:]
        text = head + attempts_text(attempts, max_steps)
    return text


def extract_prompt(text: str) -> str | None:
    """The text inside the first ``<prompt>...</prompt>`` of ``text`` (None: no such pair)."""
    m = _PROMPT_TAG.search(text)
    return m.group(1).strip() if m else None


_PROMPT_TAG = re.compile(r"<prompt>(.*?)</prompt>", re.IGNORECASE | re.DOTALL)


def reflection_messages(request: ReflectionRequest, max_words: int = 120) -> list[Message]:
    """The chat messages asking a model for ``request``'s reflection."""
    r = request
    if r.kind == "alternatives":
        tried = _distinct(r.alternatives, r.action)
        lines = "\n".join(f"{i}. {_tried(s)}" for i, s in enumerate(tried, start=1))
        user = ALTERNATIVES_TEMPLATE.format(
            task=r.task,
            observation=_cut(r.observation, OBSERVATION_CHARS),
            action=r.action,
            outcome=_quote(r.outcome) or "(no message)",
            alternatives=ALTERNATIVES_BLOCK.format(lines=lines) if lines else "",
            why="the better choice here" if lines else "the right step toward the task",
            max_words=max_words,
        )
    elif r.kind == "rulebook":
        base = r.memory.strip() or r.system.strip() or f"Task: {r.task}"
        user = RULEBOOK_TEMPLATE.format(
            heading=MEMORY_HEADING, base=base, attempts=attempts_text(r.attempts)
        )
        return [{"role": "system", "content": RULEBOOK_SYSTEM}, {"role": "user", "content": user}]
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
    A rulebook's text is what its ``<prompt>`` tags hold (no tags: :data:`MISSING_PROMPT_TAG`);
    it is cleaned and capped the same way, and only an empty one fails.
    """
    if request.kind == "rulebook":
        body = extract_prompt(text)
        if body is None:
            return Reflection("", provider, ok=False, error=MISSING_PROMPT_TAG)
        body = _cap(dedupe_sentences(body), max_chars)
        return Reflection(body, provider, bool(body), "" if body else "empty reflection")
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
            replace(
                finish_reflection(c.text, r, self.name, self.max_chars),
                token_ids=list(c.token_ids),
                logprobs=list(c.logprobs),
            )  # fmt: skip
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
    alternatives with the same result, and stop at ``max_chars``. Rulebooks (ERL) are the
    initial prompt plus the rules the attempts show and a strategy (:func:`grounded_rulebook`).

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
        if request.kind == "rulebook":
            return Reflection(grounded_rulebook(request, self.max_chars), self.name)
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
        elif r.rubric:
            lines.append("Every rubric item is met; raise the score with the feedback below.")
        else:  # naive HE: no rubric shown
            lines.append("No rubric is given; raise the score with the feedback below.")
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
# ERL rulebooks written from the evidence (the grounded writer's ``rulebook`` kind)

_DIRECTIONS = {(-1, 0): "up", (1, 0): "down", (0, -1): "left", (0, 1): "right"}
_EDGES = {(-1, 0): "top", (1, 0): "bottom", (0, -1): "left", (0, 1): "right"}
Cell = tuple[int, int]
Board = tuple[str, ...]


def grounded_rulebook(r: ReflectionRequest, max_chars: int = 2000) -> str:
    """ERL's revised system prompt from the attempts' own evidence, no model.

    The initial prompt, then the rules under :data:`RULES_HEADING` (those of the memory, a
    rulebook this writer wrote before, after the new ones), then a ``Strategy:`` line; rules
    that do not fit in ``max_chars`` are left out. Grid boards (every observation holds one)
    give board rules (:func:`board_facts`); any other env the rules of its feedback.

    The memory's rules and the new ones are one body of evidence: a symbol seen pushed is a
    box (an episode that ended as the agent moved into it ended on the push, and what the
    memory said about stepping on it or bumping into it is dropped), and a cell stepped on
    safely is not one that ends the episode (whichever side saw the ending).
    """
    old = [ln[2:] for ln in r.memory.splitlines() if ln.startswith("- ")]
    facts = board_facts(r.attempts, old) or text_facts(r.attempts)
    old = _uncontradicted(old, [*facts.rules, *old])
    old_strategy = [ln[10:] for ln in r.memory.splitlines() if ln.startswith("Strategy: ")]
    boxes = _symbols([*facts.rules, *old], "Moving into", "pushes it")
    if old_strategy and any(f"reach {s} " in old_strategy[-1] for s in boxes):
        old_strategy = []  # it aimed at a cell that the attempts showed is a box
    strategy = facts.strategy if facts.knows_goal or not old_strategy else old_strategy[-1]
    head = f"{r.system.strip()}\n\n{RULES_HEADING}:".lstrip()
    tail = f"Strategy: {strategy}"
    budget = max_chars - len(head) - len(tail) - 2
    kept = []
    for rule in dict.fromkeys(facts.rules + old):
        if len(rule) + 3 > budget:
            break
        kept.append(f"- {rule}")
        budget -= len(rule) + 3
    return "\n".join([head, *kept, tail])


_ABOUT = re.compile(r"(Stepping on|Moving into) (\S+) (.*)")


def _symbols(rules: Sequence[str], kind: str, rest: str) -> set[str]:
    """The symbols X of the rules ``<kind> X <rest>...`` (e.g. ``Moving into X pushes it``)."""
    return {m[2] for r in rules if (m := _ABOUT.fullmatch(r)) and m[1] == kind
            and m[3].startswith(rest)}  # fmt: skip


def _uncontradicted(memory: Sequence[str], rules: Sequence[str]) -> list[str]:
    """The ``memory`` rules that ``rules`` (the memory's included) do not contradict.

    A symbol pushed is a box: not a cell that ends the episode or that stops the agent. A
    cell stepped on safely ends nothing and lets the agent in.
    """
    boxes = _symbols(rules, "Moving into", "pushes it")
    safe = _symbols(rules, "Stepping on", "is safe")
    kept = []
    for rule in memory:
        m = _ABOUT.fullmatch(rule)
        if m is not None:
            kind, sym, rest = m.groups()
            bumped = kind == "Stepping on" or rest.startswith("had no effect")
            ended = rest.startswith("ended" if kind == "Stepping on" else "had no effect")
            if (bumped and sym in boxes) or (ended and sym in safe):
                continue
        kept.append(rule)
    return kept


@dataclass
class Facts:
    """What a grounded rulebook says: rules (sentences) and a strategy.

    Attributes:
        rules: one fact each, as observed.
        strategy: the plan the facts suggest.
        knows_goal: the facts name what scored (else an earlier strategy is kept).
    """

    rules: list[str]
    strategy: str
    knows_goal: bool = False


@dataclass
class _Move:
    """One step on a board: the board before and after it (None: after the last step)."""

    step: Step
    before: Board
    after: Board | None
    last: bool
    score: float


def board_grid(observation: str) -> Board | None:
    """The board of an observation: its longest run (>= 2) of equal-length lines without spaces."""
    best: list[str] = []
    run: list[str] = []
    for line in observation.splitlines():
        fits = len(line) >= 2 and " " not in line
        if fits and (not run or len(line) == len(run[0])):
            run.append(line)
            continue
        best = max(best, run, key=len)
        run = [line] if fits else []
    best = max(best, run, key=len)
    return tuple(best) if len(best) >= 2 else None


def _moves(attempts: Sequence[Attempt]) -> list[_Move]:
    """The steps of the attempts whose observations all hold boards of one shape."""
    out = []
    for a in attempts:
        boards = [board_grid(s.observation) for s in a.steps]
        shapes = {(len(b), len(b[0])) if b else None for b in boards}
        if not boards or None in shapes or len(shapes) != 1:
            continue
        for t, (s, b) in enumerate(zip(a.steps, boards, strict=True)):
            last = t == len(a.steps) - 1
            out.append(_Move(s, b, None if last else boards[t + 1], last, a.score))  # type: ignore[arg-type]
    return out


def _cells(board: Board, symbol: str) -> list[Cell]:
    return [(r, c) for r, row in enumerate(board) for c, ch in enumerate(row) if ch == symbol]


def _at(board: Board, cell: Cell) -> str | None:
    r, c = cell
    return board[r][c] if 0 <= r < len(board) and 0 <= c < len(board[0]) else None


def _agent(moves: Sequence[_Move]) -> str | None:
    """The symbol that is alone on the board before and after a step, and moved: the agent."""
    votes: dict[str, int] = {}
    for m in moves:
        if m.after is None or m.after == m.before:
            continue
        for sym in sorted(set("".join(m.before))):
            a, b = _cells(m.before, sym), _cells(m.after, sym)
            if len(a) == len(b) == 1 and a != b:
                votes[sym] = votes.get(sym, 0) + 1
    return min(votes, key=lambda s: (-votes[s], s)) if votes else None


def _displacements(moves: Sequence[_Move], agent: str) -> dict[str, Cell]:
    """Each action's most frequent move of the agent, (rows, columns)."""
    seen: dict[str, dict[Cell, int]] = {}
    for m in moves:
        a = _cells(m.before, agent)
        b = _cells(m.after, agent) if m.after is not None else []
        if len(a) == len(b) == 1 and a != b:
            d = (b[0][0] - a[0][0], b[0][1] - a[0][1])
            counts = seen.setdefault(m.step.action, {})
            counts[d] = counts.get(d, 0) + 1
    return {act: min(c, key=lambda d: (-c[d], d)) for act, c in seen.items()}


def _named(moves: Sequence[_Move], seen: dict[str, Cell]) -> dict[str, Cell]:
    """``seen`` plus the moves named up/down/left/right that were never seen moving the agent.

    Only when every move seen agrees with its name (an edge bump or a final step shows none).
    """
    by_name = {v: k for k, v in _DIRECTIONS.items()}
    if not seen or any(by_name.get(a.lower()) != d for a, d in seen.items()):
        return dict(seen)
    names = dict.fromkeys(m.step.action for m in moves if m.step.action.lower() in by_name)
    return {a: by_name[a.lower()] for a in names} | seen


@dataclass
class _Evidence:
    """What stepping on each symbol did, by kind of event."""

    safe: set[str] = field(default_factory=set)
    ended: dict[str, set[float]] = field(default_factory=dict)
    pushed: set[str] = field(default_factory=set)
    push_ended: dict[tuple[str, str], set[float]] = field(default_factory=dict)
    blocked: dict[str, set[str]] = field(default_factory=dict)
    edges: dict[str, str] = field(default_factory=dict)


def _collect(moves: Sequence[_Move], agent: str, d: dict[str, Cell],
             pushable: set[str]) -> _Evidence:  # fmt: skip
    """Sort each step with a known move of the agent into the evidence (module docs)."""
    ev = _Evidence()
    ongoing = {m.step.outcome for m in moves if not m.last}  # feedback seen mid-episode
    for m in moves:
        pos = _cells(m.before, agent)
        if not m.step.valid or len(pos) != 1 or m.step.action not in d:
            continue
        (r, c), (dr, dc) = pos[0], d[m.step.action]
        target, beyond = (r + dr, c + dc), (r + 2 * dr, c + 2 * dc)
        sym, behind = _at(m.before, target), _at(m.before, beyond)
        if sym is None:
            ev.edges.setdefault(m.step.action, _EDGES.get((dr, dc), "outer"))
        elif m.after == m.before or (m.after is None and m.step.effect is False):
            ev.blocked.setdefault(sym, set()).add(behind or "")
        elif m.after is not None and behind not in (None, sym) and _at(m.after, beyond) == sym:
            ev.pushed.add(sym)
        elif not m.last:
            ev.safe.add(sym)
        elif m.step.outcome not in ongoing:  # an end of its own, not the step budget
            ev.ended.setdefault(sym, set()).add(m.score)
    for sym in [s for s in ev.ended if s in ev.pushed | pushable]:  # the last step pushed it
        for m in moves:
            if m.last and m.step.valid and m.step.action in d and len(_cells(m.before, agent)) == 1:
                (r, c), (dr, dc) = _cells(m.before, agent)[0], d[m.step.action]
                if _at(m.before, (r + dr, c + dc)) == sym:
                    onto = _at(m.before, (r + 2 * dr, c + 2 * dc)) or ""
                    ev.push_ended.setdefault((sym, onto), set()).add(m.score)
        del ev.ended[sym]
    return ev


def board_facts(attempts: Sequence[Attempt], memory: Sequence[str] = ()) -> Facts | None:
    """Rules of a grid board, inferred from the attempts (None: no board, or no agent found).

    ``memory``: rules written before, as evidence too: a symbol they saw pushed makes a last
    step into it a push (as when these attempts also pushed it mid-episode), and a cell they
    saw stepped on safely is not one that ended the episode.
    """
    moves = _moves(attempts)
    agent = _agent(moves)
    if agent is None:
        return None
    d = _displacements(moves, agent)
    pushable = _symbols(memory, "Moving into", "pushes it")
    ev = _collect(moves, agent, _named(moves, d), pushable)
    for sym in _symbols(memory, "Stepping on", "is safe") & set(ev.ended):
        del ev.ended[sym]  # safe beats ended, as within one batch of attempts
    rules = [f"{agent} is you: it moves with your actions."]
    for act, (dr, dc) in d.items():
        way = _DIRECTIONS.get((dr, dc), f"by {dr} rows and {dc} columns")
        rules.append(f'"{act}" moves {agent} one cell {way}.' if (dr, dc) in _DIRECTIONS
                     else f'"{act}" moves {agent} {way}.')  # fmt: skip
    for sym, scores in sorted(ev.ended.items()):
        if sym not in ev.safe:
            rules.append(f"Stepping on {sym} ended the episode with score {_scores(scores)}.")
    rules += [f"Stepping on {sym} is safe: the episode went on." for sym in sorted(ev.safe)]
    rules += [f"Moving into {sym} pushes it one cell further." for sym in sorted(ev.pushed)]
    for (sym, onto), scores in sorted(ev.push_ended.items()):
        rules.append(f"Pushing {sym} onto {onto} ended the episode with score {_scores(scores)}.")
    for sym, behind in sorted(ev.blocked.items()):
        if sym in ev.pushed | pushable:
            rules += [
                f"Moving into {sym} did nothing when {b} was behind it."
                for b in sorted(behind)
                if b
            ]
        else:
            rules.append(f"Moving into {sym} had no effect: {agent} stayed.")
    rules += [f'"{a}" had no effect at the {e} edge of the board.' for a, e in ev.edges.items()]
    rules += _rejections(attempts)
    return Facts(rules, *_board_strategy(ev))


def _board_strategy(ev: _Evidence) -> tuple[str, bool]:
    wins = [s for s, v in sorted(ev.ended.items()) if max(v) >= 1 and s not in ev.safe]
    pushes = [f"push {s} onto {t}" for (s, t), v in sorted(ev.push_ended.items()) if max(v) >= 1]
    losses = [s for s, v in sorted(ev.ended.items()) if max(v) <= 0 and s not in ev.safe]
    if pushes:
        parts = pushes[:1]
    elif wins:
        parts = [f"reach {wins[0]} by the shortest safe path"]
    else:
        parts = ["find what scores: try moves and cells not tried yet"]
    if losses:
        parts.append("never step on " + " or ".join(losses))
    if ev.blocked or ev.edges:
        parts.append("do not repeat moves that had no effect")
    return ", ".join(parts) + ".", bool(pushes or wins)


def text_facts(attempts: Sequence[Attempt]) -> Facts:
    """Rules of any env from its feedback: rejected and idle actions, how attempts ended."""
    steps = [s for a in attempts for s in a.steps]
    rules = _rejections(attempts)
    idle = dict.fromkeys(s.action for s in steps if s.valid and s.effect is False)
    rules += [f'"{a}" had no effect: the observation did not change.' for a in list(idle)[:4]]
    ends = dict.fromkeys(
        (a.steps[-1].action, _quote(a.steps[-1].outcome), a.score) for a in attempts if a.steps
    )
    for action, outcome, score in list(ends)[:3]:
        said = f' ("{outcome}")' if outcome else ""
        rules.append(f'An attempt that ended with "{action}"{said} scored {score:.2f}.')
    unmet = list(dict.fromkeys(c for a in attempts for c in _rubric_split(a.rubric)[0]))
    met = list(dict.fromkeys(c for a in attempts for c in _rubric_split(a.rubric)[1]))
    fixes = [f"meet what was not met ({'; '.join(unmet[:4])})"] if unmet else []
    fixes += [f"keep what was met ({'; '.join(met[:4])})"] if met else []
    fixes += ["avoid the actions that were rejected or had no effect"] if rules else []
    return Facts(rules, ", ".join(fixes or ["try a different sequence of actions"]) + ".")


def _rejections(attempts: Sequence[Attempt]) -> list[str]:
    rejected = dict.fromkeys((s.action, _quote(s.outcome)) for a in attempts for s in a.steps
                             if not s.valid)  # fmt: skip
    return [f'"{a}" was rejected: "{fb}".' if fb else f'"{a}" was rejected.'
            for a, fb in list(rejected)[:3]]  # fmt: skip


def _scores(scores: set[float]) -> str:
    return " or ".join(f"{v:g}" for v in sorted(scores))


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
