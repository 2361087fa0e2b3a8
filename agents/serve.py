"""An OpenAI-compatible chat-completions server for a local checkpoint (127.0.0.1).

Routes: ``POST /v1/chat/completions``; ``GET /v1/models`` and ``GET /v1/models/{id}``;
``GET /stats`` (this server's counters: requests answered, refused and cancelled, calls to
the policy and the rows they generated). An :class:`~earlyexp.agents.backends.hf.HFPolicy`
answers; the official ``openai`` client works against it::

    earlyexp serve model --model runs/quick/cells/il__.../checkpoint --port 8011
    python -m earlyexp.agents.serve --model tiny   # the same server

A chat-completions body may carry:

- ``messages`` (system, user and assistant turns; text or ``{"type": "text"}`` parts);
- ``model``: this server's name (``--name``, default the ``--model`` value) or absent; any
  other name gets 404 with ``code: "model_not_found"``;
- ``max_completion_tokens`` or ``max_tokens``: 1 to the cap (``--max-tokens``), 64 when
  absent; 0 or less is a 400;
- ``temperature`` (0: greedy), ``top_p``, ``stop`` (a stop string is kept at the end of the
  text, as the local policy keeps it), ``seed``;
- ``n``: choices, 1 to ``--max-n``, sampled as rows of one batched generation;
- ``stream``: server-sent events of ``chat.completion.chunk`` objects (a first chunk with the
  role, content deltas, a last one per choice with its ``finish_reason``, a usage chunk when
  ``stream_options: {"include_usage": true}``), then ``data: [DONE]``; an error after the
  first event comes as a last ``data: {"error": ...}`` event;
- ``logprobs`` and ``top_logprobs`` (0 to 20): ``choices[i].logprobs.content[j]`` is
  ``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}], token_id}`` (log-probs at
  temperature 1; ``token_id``, the sampled id, is this server's addition).

Other fields (penalties, ``tools``, ``response_format``, ...) are ignored. ``usage`` counts
the prompt once and the completion tokens of every choice.

Every request gets a JSON answer; a bad one gets a 4xx ``{"error": {"message", "type",
"param", "code"}}``: 400 for a malformed body (not a JSON object, bad ``messages``, a
non-integer ``max_tokens`` or ``seed``, NaN or Infinity, nesting too deep, a bad
``Content-Length``) and over the caps on completion tokens, prompt tokens, choices and
request time; 404 for an unknown model or route; 411 without a ``Content-Length``; 413 over
the body cap; 408 when the headers or the body do not arrive in time. The caps are
:class:`Limits` (``--max-tokens`` and the other flags).

Requests are batched (:class:`Scheduler`): one thread generates for every request in flight,
``slice_tokens`` tokens a round, and the rows (choices) that sample alike (temperature,
top_p, stop strings, tokens this round) share one ``policy.complete`` call. A request that
finds the scheduler idle waits ``batch_window`` seconds, so requests sent together start
together; later ones join at the next round, so a long request does not starve short ones.
Seeded rows sample from their own generators (``HFPolicy.complete(seeds=...)``): a seed gives
the same reply whatever the request is batched with (up to the float rounding of a padded
batch); a policy without per-row seeds generates a seeded request in calls of its own.
Between rounds the scheduler checks each request's clock, and a client that disconnects has
its generation cancelled. A request of at most ``slice_tokens`` tokens is generated as the
local policy generates it; a longer one continues from the tokens so far (the prompt is
encoded again each round; seeded sampling reseeds each slice, so it is reproducible across
requests but differs from one local call).
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import math
import queue
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from earlyexp.agents.policy import Completion, Prompt, SamplingParams
from earlyexp.envs.core.actions import lone_surrogate
from earlyexp.envs.core.serving import serve_until_interrupted

ROLES = ("system", "user", "assistant")
MAX_MESSAGES, MAX_STOPS, MAX_TOP_LOGPROBS = 4096, 16, 20
DEFAULT_MAX_TOKENS = 64
"""Completion tokens of a request that names no ``max_tokens`` (the cap when lower)."""
WRITE_SECONDS = 30.0
"""How long writing a response to a slow client may take before the connection is dropped."""
ROW_SEED_STRIDE = 0x9E3779B97F4A7C15
"""Choice ``j`` of a request seeded ``s`` samples from seed ``s + j * ROW_SEED_STRIDE``."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (a request over a cap gets 400 or 413).

    Attributes:
        max_tokens: completion tokens per request at most.
        max_prompt_tokens: prompt tokens (after the chat template) at most.
        max_body_bytes: request body bytes at most (413 over it).
        max_request_seconds: seconds from the body's arrival to the answer, waiting included.
        header_seconds: seconds for the request line and headers to arrive (408 after).
        body_seconds: seconds for the body to arrive (408 after).
        slice_tokens: tokens a request generates per round before the next round starts.
        max_n: choices (``n``) per request at most.
        batch_window: seconds a request finding the scheduler idle waits for others (0: none).
    """

    max_tokens: int = 1024
    max_prompt_tokens: int = 4096
    max_body_bytes: int = 1024 * 1024
    max_request_seconds: float = 120.0
    header_seconds: float = 10.0
    body_seconds: float = 30.0
    slice_tokens: int = 32
    max_n: int = 16
    batch_window: float = 0.01

    def __post_init__(self) -> None:
        names = ("max_tokens", "max_prompt_tokens", "max_body_bytes", "slice_tokens", "max_n")
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        for name in ("max_request_seconds", "header_seconds", "body_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Expect {name} > 0, actually: {getattr(self, name)}")
        if not 0 <= self.batch_window <= 1:
            raise ValueError(f"Expect batch_window in [0, 1] s, actually: {self.batch_window}")


@dataclass
class ServeConfig:
    """Arguments of ``earlyexp serve model`` (``python -m earlyexp.agents.serve``)."""

    model: str = "tiny"
    """Checkpoint folder, or 'tiny' (the built-in preset)."""
    port: int = 8011
    """TCP port on 127.0.0.1 (0: any free port)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    name: str = ""
    """Model name reported by /v1/models and required in requests (default: the --model value)."""
    max_tokens: int = Limits.max_tokens
    """Completion tokens per request at most (400 over it)."""
    max_prompt_tokens: int = Limits.max_prompt_tokens
    """Prompt tokens per request at most (400 over it)."""
    max_body_bytes: int = Limits.max_body_bytes
    """Request body bytes at most (413 over it)."""
    max_request_seconds: float = Limits.max_request_seconds
    """Seconds a request may take, waiting for its turn included (400 after)."""
    header_seconds: float = Limits.header_seconds
    """Seconds for a request's line and headers to arrive (408 after)."""
    body_seconds: float = Limits.body_seconds
    """Seconds for a request's body to arrive (408 after)."""
    slice_tokens: int = Limits.slice_tokens
    """Tokens each request in flight generates per round (requests arriving later join the next)."""
    max_n: int = Limits.max_n
    """Choices (n) per request at most (400 over it)."""
    batch_window: float = Limits.batch_window
    """Seconds a request finding the server idle waits so requests sent together are batched."""

    def limits(self) -> Limits:
        """The :class:`Limits` these arguments set."""
        names = Limits.__dataclass_fields__
        return Limits(**{k: v for k, v in vars(self).items() if k in names})


class RequestError(ValueError):
    """A request the server refuses: the HTTP status and the message sent back as JSON.

    ``close`` drops the connection after answering (the body was not read, or the request
    could not be framed); ``code`` is the OpenAI error code (``model_not_found``) or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        close: bool = False,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.close = status, message, param, close
        self.code = code

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


class Cancelled(Exception):
    """The client went away; nothing is answered."""


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request."""

    messages: list[dict[str, str]]
    sampling: SamplingParams
    logprobs: bool
    n: int = 1
    top_logprobs: int = 0
    stream: bool = False
    include_usage: bool = False
    model: str | None = None


# ---------------------------------------------------------------------- request validation
def decode_body(data: bytes) -> Any:
    """Parse a request body as strict JSON (no NaN or Infinity); RequestError 400 if it is not."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise RequestError(400, "Expect a UTF-8 JSON body, actually: invalid UTF-8") from None
    except RecursionError:
        raise RequestError(400, "Expect a JSON body, actually: nested too deeply") from None
    except ValueError as e:
        raise RequestError(400, f"Expect a JSON body, actually: {e}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _integer(body: dict[str, Any], key: str, low: int, high: int, default: int | None) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(400, f"Expect '{key}' to be an integer, actually: {value!r}"[:200], key)
    if not low <= value <= high:
        raise RequestError(400, f"Expect '{key}' in [{low}, {high}], actually: {value}"[:200], key)
    return value


def _number(body: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise RequestError(400, f"Expect '{key}' in [{low}, {high}], actually: {value!r}", key)
    return float(value)


def _top_p(body: dict[str, Any]) -> float:
    top_p = _number(body, "top_p", 0.0, 1.0, 1.0)
    if top_p == 0:
        raise RequestError(400, "Expect 'top_p' in (0, 1], actually: 0", "top_p")
    return top_p


def _content(m: dict[str, Any], i: int) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    content = m.get("content")
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise RequestError(
            400, f"Expect messages[{i}].content to be a string, actually: {content!r}"[:200],
            "messages",
        )  # fmt: skip
    if lone_surrogate(content) is not None:
        raise RequestError(400, f"Expect messages[{i}].content to be valid Unicode", "messages")
    return content


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_MESSAGES:
        raise RequestError(
            400, f"Expect 'messages' to be a list of 1 to {MAX_MESSAGES} messages", "messages"
        )
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise RequestError(
                400, f"Expect messages[{i}] to be an object with a role in {ROLES}, "
                f"actually: {m!r}"[:200], "messages",
            )  # fmt: skip
        if m["role"] == "system" and i > 0:
            raise RequestError(400, f"Expect a system message first only (messages[{i}])")
        out.append({"role": m["role"], "content": _content(m, i)})
    if out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": ""})
    return out


def _stops(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if value is None:
        return ()
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(s, str) and s and lone_surrogate(s) is None for s in stops)
    ):
        raise RequestError(
            400, f"Expect 'stop' to be a string or a list of at most {MAX_STOPS} strings", "stop"
        )
    return tuple(stops)


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, (bool, type(None))):
        raise RequestError(400, f"Expect '{key}' to be true or false, actually: {value!r}"[:200],
                           key)  # fmt: skip
    return bool(value)


def _max_tokens(body: dict[str, Any], limits: Limits) -> int:
    """``max_completion_tokens`` (or the older ``max_tokens``): each given one in [1, cap]."""
    given = []
    for key in ("max_completion_tokens", "max_tokens"):
        value = _integer(body, key, 1, 2**63, None)
        if value is not None and value > limits.max_tokens:
            raise RequestError(
                400, f"Expect '{key}' <= {limits.max_tokens} (this server's cap), actually: "
                f"{value}", key,
            )  # fmt: skip
        if value is not None:
            given.append(value)
    return given[0] if given else min(DEFAULT_MAX_TOKENS, limits.max_tokens)


def _streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    """``(stream, include_usage)``."""
    stream, options = _flag(body, "stream"), body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict) or not stream:
        raise RequestError(
            400, "Expect 'stream_options' to be an object, and only with 'stream': true",
            "stream_options",
        )  # fmt: skip
    return stream, _flag(options, "include_usage")


def parse_chat(body: Any, limits: Limits) -> ChatRequest:
    """Validate a chat-completions body against ``limits``; RequestError 400 says what is wrong."""
    if not isinstance(body, dict):
        raise RequestError(400, f"Expect a JSON object body, actually: {type(body).__name__}")
    stream, include_usage = _streaming(body)
    logprobs = _flag(body, "logprobs")
    top = _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, 0)
    if top and not logprobs:
        raise RequestError(400, "Expect 'logprobs': true with 'top_logprobs'", "top_logprobs")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, f"Expect 'model' to be a string, actually: {model!r}"[:200],
                           "model")  # fmt: skip
    sampling = SamplingParams(
        max_new_tokens=_max_tokens(body, limits),
        temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
        top_p=_top_p(body),
        stop=_stops(body.get("stop")),
        seed=_integer(body, "seed", -(2**63), 2**63 - 1, None),
    )
    return ChatRequest(
        _messages(body.get("messages")),
        sampling,
        logprobs,
        n=_integer(body, "n", 1, limits.max_n, 1),
        top_logprobs=top,
        stream=stream,
        include_usage=include_usage,
        model=model,
    )


# ---------------------------------------------------------------------- batched generation
@dataclass(eq=False)
class Row:
    """One choice being generated: its ids, log-probs, top log-probs and finish reason."""

    ids: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    tops: list[list[tuple[int, float]]] = field(default_factory=list)
    finish: str | None = None
    """``stop`` or ``length`` once the row is done."""


@dataclass(frozen=True)
class Update:
    """What a job's request thread learns after a round: the rows so far, or an error."""

    rows: tuple[Row, ...] = ()
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class Job:
    """One request in the scheduler: its ``n`` rows, generated a slice a round."""

    req: ChatRequest
    context: list[int]
    deadline: float
    arrived: float = field(default_factory=time.monotonic)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    rows: list[Row] = field(default_factory=list)
    started: bool = False
    cancelled: bool = False
    updates: queue.Queue[Update] = field(default_factory=queue.Queue)
    ended: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.rows = [Row() for _ in range(self.req.n)]

    def snapshot(self, done: bool) -> Update:
        """Copies of the rows (the scheduler goes on extending its own)."""
        rows = tuple(Row(list(r.ids), list(r.logps), list(r.tops), r.finish) for r in self.rows)
        return Update(rows, done)


def takes_seeds(policy: Any) -> bool:
    """Whether ``policy.complete`` takes per-row ``seeds`` (as HFPolicy does)."""
    try:
        return "seeds" in inspect.signature(policy.complete).parameters
    except (TypeError, ValueError):
        return False


def slice_seed(seed: int | None, row: int, k: int) -> int | None:
    """The seed of row ``row``'s slice that starts at its token ``k``."""
    return None if seed is None else (seed + row * ROW_SEED_STRIDE + k) % 2**63


class Scheduler:
    """One thread generating for every job in flight, a round at a time.

    A round gives each unfinished row ``slice_tokens`` tokens (fewer when its request's
    ``max_tokens`` is reached); rows whose sampling matches share one ``policy.complete``.
    Jobs end on their own (``Update.done``), past their deadline, when cancelled, or when a
    call fails (``Update.error``); ``Job.ended`` is set once the scheduler holds them no more.

    Args:
        policy: ``complete`` and ``tokenizer``; ``top_logprobs`` for ``top_logprobs``.
        limits: ``slice_tokens``, ``batch_window`` and ``max_request_seconds``.
        record: called with ``("generation_calls" | "scoring_calls", rows)`` per call to the
            policy (the server's counters).
    """

    def __init__(self, policy: Any, limits: Limits, record: Callable[[str, int], None]) -> None:
        self.policy, self.limits, self.record = policy, limits, record
        self.per_row_seeds = takes_seeds(policy)
        self._cv = threading.Condition()
        self._jobs: list[Job] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="serve-scheduler")
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Add ``job``; it starts at the next round (503 once the server stops)."""
        with self._cv:
            if self._stopping:
                raise RequestError(503, "The server is shutting down")
            self._jobs.append(job)
            self._cv.notify_all()

    def cancel(self, job: Job, timeout: float) -> None:
        """Drop ``job`` before the next round; return once no call generates for it."""
        with self._cv:
            job.cancelled = True
            self._cv.notify_all()
        job.ended.wait(timeout)

    def stop(self) -> None:
        """End the thread; jobs still in flight get a 503."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout=30)
        with self._cv:
            for job in list(self._jobs):
                self._end(job, RequestError(503, "The server is shutting down"))

    def _run(self) -> None:
        while (jobs := self._next_round()) is not None:
            try:
                self._round(jobs)
            except Exception as e:  # a bug here: every job of the round gets a 500
                for job in jobs:
                    self._end(job, e)

    def _next_round(self) -> list[Job] | None:
        """The jobs of the next round, once the newest have had ``batch_window`` to gather."""
        with self._cv:
            while not self._stopping:
                now = time.monotonic()
                for job in list(self._jobs):
                    if job.cancelled:
                        self._end(job, Cancelled())
                    elif now > job.deadline:
                        self._end(job, _late(self.limits.max_request_seconds))
                fresh = [j.arrived for j in self._jobs if not j.started]
                start = min(fresh) + self.limits.batch_window if fresh else now
                if self._jobs and now >= start:
                    for job in self._jobs:
                        job.started = True
                    return list(self._jobs)
                self._cv.wait(start - now if self._jobs else 1.0)
            return None

    def _end(self, job: Job, error: BaseException | None = None) -> None:
        with self._cv:
            if job in self._jobs:
                self._jobs.remove(job)
                job.updates.put(Update(error=error) if error else job.snapshot(done=True))
            job.ended.set()

    def _round(self, jobs: list[Job]) -> None:
        groups: dict[tuple[Any, ...], list[tuple[Job, int]]] = {}
        for job in jobs:
            for i, row in enumerate(job.rows):
                if row.finish is None:
                    groups.setdefault(self._key(job, row), []).append((job, i))
        for rows in groups.values():
            try:
                self._generate(rows)
            except Exception as e:  # the model failed: these requests get a 500
                for job in {id(j): j for j, _ in rows}.values():
                    self._end(job, e)
        for job in jobs:
            if job.ended.is_set():
                continue
            if all(r.finish for r in job.rows):
                self._end(job)
            else:
                job.updates.put(job.snapshot(done=False))

    def _key(self, job: Job, row: Row) -> tuple[Any, ...]:
        """Rows with equal keys are generated in one call."""
        s = job.req.sampling
        length = min(self.limits.slice_tokens, s.max_new_tokens - len(row.ids))
        alone = s.seed is not None and s.temperature > 0 and not self.per_row_seeds
        return (s.temperature, s.top_p, s.stop, length, id(job) if alone else None)

    def _generate(self, rows: list[tuple[Job, int]]) -> None:
        """One ``policy.complete`` for ``rows`` (equal keys), then each row extended."""
        first, i0 = rows[0]
        s, k0 = first.req.sampling, len(first.rows[i0].ids)
        part = replace(s, max_new_tokens=self._key(first, first.rows[i0])[3], seed=None)
        prompts = [Prompt(job.req.messages, token_ids=job.context + job.rows[i].ids)
                   for job, i in rows]  # fmt: skip
        if self.per_row_seeds:
            seeds = [slice_seed(j.req.sampling.seed, i, len(j.rows[i].ids)) for j, i in rows]
            out = self.policy.complete(prompts, part, seeds=seeds)
        else:  # seeded rows come one job a call: its rows share the call's generator
            out = self.policy.complete(prompts, replace(part, seed=slice_seed(s.seed, 0, k0)))
        self.record("generation_calls", len(rows))
        tops = self._top_logprobs(rows, out)
        tok = self.policy.tokenizer
        for (job, i), c, top in zip(rows, out, tops, strict=True):
            row, stop = job.rows[i], job.req.sampling.stop
            cut = _stop_across(row.ids, c, stop, tok)
            row.ids, row.logps = row.ids + c.token_ids[:cut], row.logps + c.logprobs[:cut]
            row.tops += top[:cut]
            if cut < len(c.token_ids) or c.finish_reason == "stop":
                row.finish = "stop"
            elif len(row.ids) >= job.req.sampling.max_new_tokens:
                row.finish = "length"

    def _top_logprobs(
        self, rows: list[tuple[Job, int]], out: list[Completion]
    ) -> list[list[list[tuple[int, float]]]]:
        """The top log-probs of the tokens just sampled, for the rows that ask for them."""
        tops: list[list[list[tuple[int, float]]]] = [[] for _ in rows]
        want = [r for r, (job, _) in enumerate(rows) if job.req.top_logprobs]
        if not want:
            return tops
        contexts = [rows[r][0].context + rows[r][0].rows[rows[r][1]].ids for r in want]
        k = max(rows[r][0].req.top_logprobs for r in want)
        scored = self.policy.top_logprobs(contexts, [out[r].token_ids for r in want], k)
        self.record("scoring_calls", len(want))
        for r, top in zip(want, scored, strict=True):
            tops[r] = [t[: rows[r][0].req.top_logprobs] for t in top]
        return tops


def _late(seconds: float) -> RequestError:
    return RequestError(
        400, f"Expect a request to finish within {seconds} s (this server's cap), actually: "
        "it ran out; ask for fewer max_tokens", "max_tokens",
    )  # fmt: skip


# ---------------------------------------------------------------------- the server
class ChatServer:
    """The server: ``start()`` in a background thread, ``url``, ``stop()``.

    Args:
        policy: the policy answering requests (``complete``, ``context_ids``, ``tokenizer``;
            ``top_logprobs`` to serve ``top_logprobs``).
        name: model name reported to clients (requests naming another get 404).
        port: port on 127.0.0.1 (0 picks a free one).
        limits: the caps and timeouts of :class:`Limits`.
    """

    def __init__(
        self, policy: Any, name: str = "local", port: int = 0, limits: Limits | None = None
    ) -> None:
        self.policy, self.name = policy, name
        self.limits = limits or Limits()
        self.created = int(time.time())
        self.counts = dict.fromkeys(
            ("answered", "refused", "cancelled", "generation_calls", "generated_rows",
             "largest_batch", "scoring_calls"), 0,
        )  # fmt: skip
        """Requests answered 200, refused with an error, cancelled (client gone); calls to
        ``policy.complete``, the rows they generated and the most in one call; calls to
        ``policy.top_logprobs``."""
        self._count_lock = threading.Lock()
        self.scheduler = Scheduler(policy, self.limits, self._record)
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8011/v1``."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> ChatServer:
        """Serve in a daemon thread; return self."""
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end the scheduler and close the socket."""
        if self.thread is not None:
            self.httpd.shutdown()
        self.scheduler.stop()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, what: str) -> None:
        """Add one to ``counts[what]``."""
        with self._count_lock:
            self.counts[what] += 1

    def _record(self, kind: str, rows: int) -> None:
        with self._count_lock:
            self.counts[kind] += 1
            if kind == "generation_calls":
                self.counts["generated_rows"] += rows
                self.counts["largest_batch"] = max(self.counts["largest_batch"], rows)

    def model_card(self) -> dict[str, Any]:
        """This server's entry of ``/v1/models``."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "earlyexp"}

    def unknown_model(self, model: str) -> RequestError:
        """The 404 for a model this server does not serve."""
        return RequestError(
            404, f"The model '{model}' does not exist: this server serves '{self.name}' (GET "
            "/v1/models)"[:300], "model", code="model_not_found",
        )  # fmt: skip

    def submit(self, body: Any) -> Job:
        """Validate a chat-completions body and queue its generation; RequestError (4xx)."""
        req = parse_chat(body, self.limits)
        if req.model is not None and req.model != self.name:
            raise self.unknown_model(req.model)
        if req.top_logprobs and not hasattr(self.policy, "top_logprobs"):
            raise RequestError(400, "Expect no 'top_logprobs': this server's policy does not "
                               "report them", "top_logprobs")  # fmt: skip
        context = self.policy.context_ids(Prompt(req.messages))
        self._check_prompt(len(context), req.sampling.max_new_tokens)
        job = Job(req, context, time.monotonic() + self.limits.max_request_seconds)
        self.scheduler.submit(job)
        return job

    def updates(self, job: Job, gone: Callable[[], bool]) -> Iterator[Update]:
        """``job``'s rows after each round, the last one ``done``; Cancelled once ``gone()``.

        ``gone()`` is asked every 50 ms, whether rounds end faster or slower than that.
        """
        asked = time.monotonic()
        while True:
            try:
                update: Update | None = job.updates.get(timeout=0.05)
            except queue.Empty:
                update = None
            if update is not None and update.error is not None:
                raise update.error
            if update is not None and update.done:
                yield update
                return
            if time.monotonic() - asked >= 0.05:
                if gone():
                    self.cancel(job)
                    raise Cancelled
                asked = time.monotonic()
            if update is not None:
                yield update

    def cancel(self, job: Job) -> None:
        """Stop generating for ``job`` (its client went away)."""
        self.scheduler.cancel(job, self.limits.max_request_seconds)

    def chat(self, body: Any, gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Answer one chat-completions body; RequestError (4xx) or Cancelled (``gone()``)."""
        return self.reply(self.submit(body), gone)

    def reply(self, job: Job, gone: Callable[[], bool]) -> dict[str, Any]:
        """The ``chat.completion`` of a submitted job, once it is generated."""
        last = Update()
        for update in self.updates(job, gone):
            last = update
        choices = [
            {
                "index": j,
                "message": {"role": "assistant", "content": self._text(row.ids)},
                "logprobs": self._logprobs(row, 0, job.req) if job.req.logprobs else None,
                "finish_reason": row.finish,
            }
            for j, row in enumerate(last.rows)
        ]
        return {
            "id": job.id,
            "object": "chat.completion",
            "created": job.created,
            "model": self.name,
            "choices": choices,
            "usage": self._usage(job, last),
        }

    def chunks(self, job: Job, gone: Callable[[], bool]) -> Iterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of a submitted streaming job, as generated."""
        req, sent = job.req, [""] * job.req.n
        head = {"id": job.id, "object": "chat.completion.chunk", "created": job.created,
                "model": self.name, **({"usage": None} if req.include_usage else {})}  # fmt: skip

        def chunk(j: int, delta: dict[str, Any], logprobs: Any, finish: str | None) -> Any:
            choice = {"index": j, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return {**head, "choices": [choice]}

        for j in range(req.n):
            yield chunk(j, {"role": "assistant", "content": ""}, None, None)
        shown, ended = [0] * req.n, [False] * req.n  # tokens sent, finish sent
        last = Update()
        for last in self.updates(job, gone):
            for j, row in enumerate(last.rows):
                if ended[j] or (shown[j] == len(row.ids) and row.finish is None):
                    continue
                text = self._text(row.ids)
                if row.finish is None:  # hold back a character whose bytes are not all here
                    text = text.rstrip("\ufffd")
                delta = text[len(sent[j]) :] if text.startswith(sent[j]) else ""
                new = req.logprobs and len(row.ids) > shown[j]
                logprobs = self._logprobs(row, shown[j], req) if new else None
                if delta or logprobs:
                    yield chunk(j, {"content": delta}, logprobs, None)
                sent[j], shown[j] = sent[j] + delta, len(row.ids)
                if row.finish is not None:
                    yield chunk(j, {}, None, row.finish)
                    ended[j] = True
        if req.include_usage:
            yield {**head, "choices": [], "usage": self._usage(job, last)}

    def _usage(self, job: Job, last: Update) -> dict[str, int]:
        done = sum(len(r.ids) for r in last.rows)
        return {"prompt_tokens": len(job.context), "completion_tokens": done,
                "total_tokens": len(job.context) + done}  # fmt: skip

    def _text(self, ids: list[int]) -> str:
        return str(self.policy.tokenizer.decode(ids, skip_special_tokens=True))

    def _logprobs(self, row: Row, start: int, req: ChatRequest) -> dict[str, Any]:
        """OpenAI's ``logprobs`` object for ``row``'s tokens from ``start`` on."""
        tok, content = self.policy.tokenizer, []
        for m in range(start, len(row.ids)):
            tops = row.tops[m] if m < len(row.tops) else []
            content.append({
                **token_entry(tok, row.ids[m], row.logps[m]),
                "top_logprobs": [token_entry(tok, t, lp) for t, lp in tops[: req.top_logprobs]],
                "token_id": row.ids[m],
            })  # fmt: skip
        return {"content": content, "refusal": None}

    def _check_prompt(self, n_prompt: int, max_tokens: int) -> None:
        if n_prompt > self.limits.max_prompt_tokens:
            raise RequestError(
                400, f"Expect at most {self.limits.max_prompt_tokens} prompt tokens (this "
                f"server's cap), actually: {n_prompt}", "messages",
            )  # fmt: skip
        config = getattr(getattr(self.policy, "model", None), "config", None)
        window = getattr(config, "max_position_embeddings", None)
        if isinstance(window, int) and n_prompt + max_tokens > window:
            raise RequestError(
                400, f"Expect prompt + max_tokens <= {window} (the model's context), actually: "
                f"{n_prompt} + {max_tokens}", "max_tokens",
            )  # fmt: skip


def token_entry(tok: Any, token_id: int, logprob: float) -> dict[str, Any]:
    """``{token, logprob, bytes}`` of one token (its own bytes, even of a split character)."""
    text = tok.decode([token_id])
    return {"token": text, "logprob": logprob, "bytes": token_bytes(tok, token_id, text)}


def token_bytes(tok: Any, token_id: int, text: str) -> list[int]:
    """A token's UTF-8 bytes, read from its byte-level piece where the tokenizer has one.

    A byte-level piece may hold part of a character; other tokenizers give the bytes of the
    decoded text.
    """
    to_piece = getattr(tok, "convert_ids_to_tokens", None)
    piece = to_piece(token_id) if to_piece is not None else None
    table = _byte_level_table()
    if isinstance(piece, str) and piece and all(ch in table for ch in piece):
        raw = bytes(table[ch] for ch in piece)
        if raw.decode("utf-8", errors="replace") == text:
            return list(raw)
    return list(text.encode("utf-8"))


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[str, int]:
    """The ByteLevel (GPT-2) alphabet: character -> the byte it stands for."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _stop_across(before: list[int], c: Completion, stops: tuple[str, ...], tok: Any) -> int:
    """Where a stop string that began in an earlier slice ends in ``c`` (its length if none)."""
    if not before or not stops:
        return len(c.token_ids)
    for k in range(1, min(len(c.token_ids), 16) + 1):
        tail = tok.decode((before + c.token_ids[:k])[-16:])
        if any(tail.endswith(s) for s in stops):
            return k
    return len(c.token_ids)


# ---------------------------------------------------------------------- HTTP
class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose reads fail with TimeoutError past a deadline.

    A deadline for the whole header (or body), not per read: a client trickling one byte at
    a time cannot hold a connection longer than the limit.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.deadline, self.received, self.timed_out = sock, 0.0, 0, False

    def start(self, seconds: float) -> None:
        """Set the deadline ``seconds`` from now and reset the byte count."""
        self.deadline, self.received, self.timed_out = time.monotonic() + seconds, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError("read deadline passed")
            self.sock.settimeout(left)
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            self.timed_out = True
            raise
        self.received += n
        return n


def _client_gone(sock: socket.socket) -> bool:
    """True when the peer closed (or reset) the connection; pipelined bytes do not count."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    server_ref: ChatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def setup(self) -> None:
        super().setup()
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        self.reader.start(self.server_ref.limits.header_seconds)
        self._answered = False
        try:
            super().handle_one_request()  # a header timeout is caught there: connection closed
            if self.reader.timed_out and self.reader.received and not self._answered:
                limit = self.server_ref.limits.header_seconds
                self._error(RequestError(408, f"The headers did not arrive in {limit} s", None))
                self.close_connection = True
        except OSError:  # the client reset the connection, or a write to it timed out
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (bad request line, 501 method) as JSON too."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an unparsed request line: answer with headers
        self.close_connection = True
        self._error(RequestError(code, message or self.responses.get(code, ("Error",))[0]))

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.connection.settimeout(WRITE_SECONDS)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self._answered = True

    def _error(self, e: RequestError) -> None:
        self.server_ref.count("refused")
        self._send(e.status, e.body())

    def _route(self) -> str:
        return unquote(self.path.split("?", 1)[0]).rstrip("/")

    def do_GET(self) -> None:
        server, route = self.server_ref, self._route()
        if route == "/v1/models":
            self._send(200, {"object": "list", "data": [server.model_card()]})
        elif route.startswith("/v1/models/"):
            model = route[len("/v1/models/") :]
            if model == server.name:
                self._send(200, server.model_card())
            else:
                self._error(server.unknown_model(model))
        elif route == "/stats":
            with server._count_lock:
                self._send(200, dict(server.counts))
        else:
            self._error(RequestError(404, f"No route {self.path[:200]}"))

    def do_POST(self) -> None:
        server = self.server_ref

        def gone() -> bool:
            return _client_gone(self.connection)

        try:
            if self._route() != "/v1/chat/completions":
                raise RequestError(404, f"No route {self.path[:200]}", close=True)
            job = server.submit(decode_body(self._read_body()))
            if job.req.stream:
                return self._stream(job, gone)
            payload = server.reply(job, gone)
        except RequestError as e:
            self.close_connection = self.close_connection or e.close
            return self._error(e)
        except Cancelled:
            server.count("cancelled")
            self.close_connection = True
            return None
        except Exception as e:  # a bug or a model failure: still a JSON answer
            return self._error(RequestError(500, f"Internal error: {type(e).__name__}: {e}"))
        server.count("answered")
        self._send(200, payload)
        return None

    def _stream(self, job: Job, gone: Callable[[], bool]) -> None:
        """Server-sent events over a chunked body: the chunks, then ``data: [DONE]``."""
        server = self.server_ref
        self.connection.settimeout(WRITE_SECONDS)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._answered = True
        try:
            try:
                for chunk in server.chunks(job, gone):
                    self._event(json.dumps(chunk))
                self._event("[DONE]")
                server.count("answered")
            except (OSError, Cancelled):
                raise
            except Exception as e:  # after the first event: the error is the last event
                error = e if isinstance(e, RequestError) else RequestError(
                    500, f"Internal error: {type(e).__name__}: {e}"
                )  # fmt: skip
                server.count("refused")
                self._event(json.dumps(error.body()))
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, Cancelled):  # the client went away mid-stream
            server.cancel(job)
            server.count("cancelled")
            self.close_connection = True

    def _event(self, data: str) -> None:
        """One ``data:`` event as one chunk of the chunked body."""
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")

    def _read_body(self) -> bytes:
        """The body, exactly Content-Length bytes, within the body deadline."""
        limits = self.server_ref.limits
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(
                411, "Expect a Content-Length body (chunked is not served)", None, True
            )
        values = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
        if not values:
            raise RequestError(411, "Expect a Content-Length header", None, True)
        raw = values.pop()
        if values or not (raw.isascii() and raw.isdigit()):
            shown = sorted({raw, *values})
            raise RequestError(400, f"Expect one integer Content-Length, actually: {shown}"[:200],
                               None, True)  # fmt: skip
        length = int(raw) if len(raw) < 20 else limits.max_body_bytes + 1
        if length > limits.max_body_bytes:
            raise RequestError(
                413, f"Expect a body of at most {limits.max_body_bytes} bytes, actually: {raw}",
                None, True,
            )  # fmt: skip
        self.reader.start(limits.body_seconds)
        data = bytearray()
        try:
            while len(data) < length:
                chunk = self.rfile.read1(min(length - len(data), 65536))
                if not chunk:
                    raise RequestError(
                        400, f"Expect {length} body bytes, actually: the client sent {len(data)} "
                        "and closed", None, True,
                    )  # fmt: skip
                data += chunk
        except TimeoutError:
            raise RequestError(
                408, f"The body did not arrive in {limits.body_seconds} s ({len(data)} of "
                f"{length} bytes)", None, True,
            ) from None  # fmt: skip
        return bytes(data)


def main(argv: list[str] | None = None) -> int:
    """Serve a checkpoint until interrupted."""
    from earlyexp.agents.backends.hf import HFPolicy
    from earlyexp.agents.config import add_dataclass_args, from_args
    from earlyexp.agents.models import resolve_model

    parser = argparse.ArgumentParser(
        prog="earlyexp serve model", description=__doc__.split("\n")[0]
    )
    add_dataclass_args(parser, ServeConfig)
    cfg = from_args(ServeConfig, parser.parse_args(argv))
    try:
        limits = cfg.limits()
    except ValueError as e:
        parser.error(str(e))
    policy = HFPolicy.from_pretrained(resolve_model(cfg.model), cfg.device)
    server = ChatServer(policy, cfg.name or cfg.model, cfg.port, limits)
    serve_until_interrupted(server.httpd.serve_forever, server.stop,
                            f"serving {server.name!r} at {server.url}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
