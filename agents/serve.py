"""A small OpenAI-compatible chat-completions server for a local checkpoint (127.0.0.1).

Serves ``POST /v1/chat/completions`` (``messages``, ``max_tokens``, ``temperature``,
``top_p``, ``stop``, ``seed``, ``logprobs``; ``n`` must be 1) and ``GET /v1/models``, with
an :class:`~earlyexp.agents.backends.hf.HFPolicy` behind it. It exists so the HTTP backend
is tested against a real server over real sockets, and so a trained tiny checkpoint can be
driven by any OpenAI-compatible client::

    python -m earlyexp.agents.serve --model runs/quick/cells/il__.../checkpoint --port 8011

Every request gets a JSON answer; a bad one gets a 4xx ``{"error": {"message", "type",
"param"}}``: 400 for a malformed body (not a JSON object, bad ``messages``, a non-integer
``max_tokens`` or ``seed``, NaN or Infinity, nesting too deep, a bad ``Content-Length``) and
over the caps on completion tokens, prompt tokens and request time; 411 without a
``Content-Length``; 413 over the body cap; 408 when the headers or the body do not arrive in
time. The caps are :class:`Limits` (``--max-tokens`` and the other flags).

Generation takes turns: each request generates ``slice_tokens`` tokens, then waits behind the
others (first come, first served), so one long request does not starve short ones. Between
slices the server checks the clock and whether the client is still connected; a client that
disconnects has its generation cancelled. A request of at most ``slice_tokens`` tokens is
generated exactly as the local policy generates it; a longer one continues from the tokens
so far (the prompt is encoded again each slice; seeded sampling reseeds each slice, so it is
reproducible across requests but differs from one local call).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from earlyexp.agents.policy import Completion, Prompt, SamplingParams
from earlyexp.envs.core.actions import lone_surrogate

ROLES = ("system", "user", "assistant")
MAX_MESSAGES, MAX_STOPS = 4096, 16
WRITE_SECONDS = 30.0
"""How long writing a response to a slow client may take before the connection is dropped."""


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
        slice_tokens: tokens a request generates per turn before waiting behind the others.
    """

    max_tokens: int = 1024
    max_prompt_tokens: int = 4096
    max_body_bytes: int = 1024 * 1024
    max_request_seconds: float = 120.0
    header_seconds: float = 10.0
    body_seconds: float = 30.0
    slice_tokens: int = 32

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_prompt_tokens", "max_body_bytes", "slice_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        for name in ("max_request_seconds", "header_seconds", "body_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Expect {name} > 0, actually: {getattr(self, name)}")


@dataclass
class ServeConfig:
    """Arguments of ``python -m earlyexp.agents.serve``."""

    model: str = "tiny"
    """Checkpoint folder, or 'tiny' (the built-in preset)."""
    port: int = 8011
    """TCP port on 127.0.0.1 (0: any free port)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    name: str = ""
    """Model name reported by /v1/models (default: the --model value)."""
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
    """Tokens a request generates per turn before the next waiting request gets one."""

    def limits(self) -> Limits:
        """The :class:`Limits` these arguments set."""
        names = Limits.__dataclass_fields__
        return Limits(**{k: v for k, v in vars(self).items() if k in names})


class RequestError(ValueError):
    """A request the server refuses: the HTTP status and the message sent back as JSON.

    ``close`` drops the connection after answering (the body was not read, or the request
    could not be framed).
    """

    def __init__(self, status: int, message: str, param: str | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.message, self.param, self.close = status, message, param, close


class Cancelled(Exception):
    """The client went away; nothing is answered."""


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request."""

    messages: list[dict[str, str]]
    sampling: SamplingParams
    logprobs: bool


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


def parse_chat(body: Any, limits: Limits) -> ChatRequest:
    """Validate a chat-completions body against ``limits``; RequestError 400 says what is wrong."""
    if not isinstance(body, dict):
        raise RequestError(400, f"Expect a JSON object body, actually: {type(body).__name__}")
    if body.get("stream"):
        raise RequestError(
            400, "Expect 'stream' false or absent: streaming is not served", "stream"
        )
    _integer(body, "n", 1, 1, 1)
    if not isinstance(body.get("logprobs", False), (bool, type(None))):
        raise RequestError(400, "Expect 'logprobs' to be true or false", "logprobs")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, key, 1, 2**63, min(64, limits.max_tokens))
    if max_tokens > limits.max_tokens:
        raise RequestError(
            400, f"Expect '{key}' <= {limits.max_tokens} (this server's cap), actually: "
            f"{max_tokens}", key,
        )  # fmt: skip
    sampling = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
        top_p=_top_p(body),
        stop=_stops(body.get("stop")),
        seed=_integer(body, "seed", -(2**63), 2**63 - 1, None),
    )
    return ChatRequest(_messages(body.get("messages")), sampling, bool(body.get("logprobs")))


# ---------------------------------------------------------------------- fair turns
class Turns:
    """First come, first served turns at the model: one holder at a time, in arrival order."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def turn(self, give_up: Callable[[], None]) -> Iterator[None]:
        """Hold the model; while waiting, ``give_up()`` is polled and may raise to leave."""
        me = object()
        with self._cv:
            self._queue.append(me)
            try:
                while self._queue[0] is not me:
                    self._cv.wait(0.05)
                    give_up()
            except BaseException:
                self._queue.remove(me)
                self._cv.notify_all()
                raise
        try:
            yield
        finally:
            with self._cv:
                self._queue.popleft()
                self._cv.notify_all()


# ---------------------------------------------------------------------- the server
class ChatServer:
    """The server: ``start()`` in a background thread, ``url``, ``stop()``.

    Args:
        policy: the policy answering requests (``complete``, ``context_ids``, ``tokenizer``).
        name: model name reported to clients.
        port: port on 127.0.0.1 (0 picks a free one).
        limits: the caps and timeouts of :class:`Limits`.
    """

    def __init__(
        self, policy: Any, name: str = "local", port: int = 0, limits: Limits | None = None
    ) -> None:
        self.policy, self.name = policy, name
        self.limits = limits or Limits()
        self.turns = Turns()
        self.counts = {"answered": 0, "refused": 0, "cancelled": 0}
        """Requests answered 200, refused with an error, and cancelled (client gone)."""
        self._count_lock = threading.Lock()
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
        """Stop serving and close the socket."""
        self.httpd.shutdown()
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

    def chat(self, body: Any, gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Answer one chat-completions body; RequestError (4xx) or Cancelled (``gone()``)."""
        req = parse_chat(body, self.limits)
        deadline = time.monotonic() + self.limits.max_request_seconds
        context = self.policy.context_ids(Prompt(req.messages))
        self._check_prompt(len(context), req.sampling.max_new_tokens)
        ids, logps, finish = self._generate(req, context, gone, deadline)
        tok = self.policy.tokenizer
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": tok.decode(ids, skip_special_tokens=True)},
            "finish_reason": finish,
        }
        if req.logprobs:
            choice["logprobs"] = {
                "content": [
                    {"token": tok.decode([t]), "logprob": lp, "token_id": t}
                    for t, lp in zip(ids, logps, strict=True)
                ]
            }
        return {
            "id": f"chatcmpl-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(context),
                "completion_tokens": len(ids),
                "total_tokens": len(context) + len(ids),
            },
        }

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

    def _generate(
        self, req: ChatRequest, context: list[int], gone: Callable[[], bool], deadline: float
    ) -> tuple[list[int], list[float], str]:
        """Generate in slices of ``slice_tokens``, taking turns; (ids, log-probs, finish)."""
        sampling, size = req.sampling, self.limits.slice_tokens

        def give_up() -> None:
            if gone():
                raise Cancelled
            if time.monotonic() > deadline:
                raise RequestError(
                    400, f"Expect a request to finish within {self.limits.max_request_seconds} s "
                    "(this server's cap), actually: it ran out; ask for fewer max_tokens",
                    "max_tokens",
                )  # fmt: skip

        ids: list[int] = []
        logps: list[float] = []
        for k in range(0, sampling.max_new_tokens, size):
            give_up()
            part = replace(
                sampling,
                max_new_tokens=min(size, sampling.max_new_tokens - k),
                seed=None if sampling.seed is None else (sampling.seed + k) % 2**63,
            )
            with self.turns.turn(give_up):
                (c,) = self.policy.complete([Prompt(req.messages, token_ids=context + ids)], part)
            cut = _stop_across(ids, c, sampling.stop, self.policy.tokenizer)
            ids, logps = ids + c.token_ids[:cut], logps + c.logprobs[:cut]
            if cut < len(c.token_ids) or c.finish_reason == "stop":
                return ids, logps, "stop"
        return ids, logps, "length"


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
        kind = "server_error" if e.status >= 500 else "invalid_request_error"
        self.server_ref.count("refused")
        self._send(e.status, {"error": {"message": e.message, "type": kind, "param": e.param}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": self.server_ref.name, "object": "model"}]
            self._send(200, {"object": "list", "data": data})
        else:
            self._error(RequestError(404, f"No route {self.path[:200]}"))

    def do_POST(self) -> None:
        try:
            if self.path.rstrip("/") != "/v1/chat/completions":
                raise RequestError(404, f"No route {self.path[:200]}", close=True)
            body = decode_body(self._read_body())
            payload = self.server_ref.chat(body, lambda: _client_gone(self.connection))
        except RequestError as e:
            self.close_connection = self.close_connection or e.close
            return self._error(e)
        except Cancelled:
            self.server_ref.count("cancelled")
            self.close_connection = True
            return None
        except Exception as e:  # a bug or a model failure: still a JSON answer
            return self._error(RequestError(500, f"Internal error: {type(e).__name__}: {e}"))
        self.server_ref.count("answered")
        self._send(200, payload)
        return None

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

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_args(parser, ServeConfig)
    cfg = from_args(ServeConfig, parser.parse_args(argv))
    try:
        limits = cfg.limits()
    except ValueError as e:
        parser.error(str(e))
    policy = HFPolicy.from_pretrained(resolve_model(cfg.model), cfg.device)
    server = ChatServer(policy, cfg.name or cfg.model, cfg.port, limits)
    print(f"serving {cfg.model} at {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
