"""The model server under bad input and faults: every request answered, caps, timeouts, turns.

Fault tests use a fake policy (one token per prompt character, a fixed delay per slice) so
they are about the server, not a model; every server and socket is closed by the test.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from earlyexp.agents.policy import Completion, Prompt, SamplingParams
from earlyexp.agents.serve import ChatServer, Limits, ServeConfig, main

GOOD = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


class FakeTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(97 + i % 26) for i in ids)


class FakePolicy:
    """Generates token 0 repeatedly; records the last user message of every slice it serves."""

    tokenizer = FakeTokenizer()

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.calls = delay, []

    def context_ids(self, prompt: Prompt) -> list[int]:
        if prompt.token_ids is not None:
            return list(prompt.token_ids)
        return [1] * sum(len(m["content"]) + 1 for m in prompt.messages)

    def complete(self, prompts, sampling: SamplingParams):
        (prompt,) = prompts
        self.calls.append(prompt.messages[-1]["content"])
        time.sleep(self.delay)
        n = sampling.max_new_tokens
        return [Completion("a" * n, [0] * n, [-0.5] * n, "length")]


def exchange(port: int, data: bytes, *, shut: bool = False, timeout: float = 20):
    """Send raw bytes; return (status, parsed JSON body) of the answer, or None if closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(s)
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        return resp.status, json.loads(resp.read())


def post(body: bytes, extra: str = "", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n{extra}\r\n"
    return head.encode() + body


def jpost(body, **kw) -> bytes:
    return post(json.dumps(body).encode(), **kw)


def msg(**fields) -> bytes:
    return jpost({**GOOD, **fields})


BAD_BODIES = {
    "a list": b"[1,2]",
    "null": b"null",
    "a number": b"1",
    "a string": b'"hi"',
    "empty": b"",
    "truncated": b'{"messages": [',
    "not utf-8": b'{"messages": "\xff"}',
    "too deep": b"[" * 100_000 + b"]" * 100_000,
    "Infinity": b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": Infinity}',
    "NaN": b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "huge int": b'{"messages": [], "seed": ' + b"9" * 5000 + b"}",
}
BAD_FIELDS = {
    "messages of strings": {"messages": ["hi"]},
    "messages of numbers": {"messages": [1]},
    "no messages": {"messages": []},
    "messages not a list": {"messages": "hi"},
    "unknown role": {"messages": [{"role": "tool", "content": "x"}]},
    "late system": {
        "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]
    },
    "content not text": {"messages": [{"role": "user", "content": 3}]},
    "lone surrogate": {"messages": [{"role": "user", "content": "\ud800"}]},
    "max_tokens 1e9": {"max_tokens": 10**9},
    "max_tokens 1e30": {"max_tokens": 1e30},
    "max_tokens 0": {"max_tokens": 0},
    "max_tokens text": {"max_tokens": "8"},
    "temperature -1": {"temperature": -1},
    "temperature 1e400": {"temperature": 1e308 * 10},
    "top_p 0": {"top_p": 0},
    "seed text": {"seed": "x"},
    "seed 1.5": {"seed": 1.5},
    "seed true": {"seed": True},
    "seed 2**64": {"seed": 2**64},
    "n 0": {"n": 0},
    "n over the cap": {"n": 17},
    "stream text": {"stream": "yes"},
    "stream_options without stream": {"stream_options": {"include_usage": True}},
    "max_completion_tokens 0": {"max_completion_tokens": 0},
    "max_tokens -1": {"max_tokens": -1},
    "top_logprobs without logprobs": {"top_logprobs": 2},
    "top_logprobs 21": {"logprobs": True, "top_logprobs": 21},
    "model not a string": {"model": 3},
    "stop of numbers": {"stop": [1]},
    "logprobs text": {"logprobs": "yes"},
}
BAD_FRAMING = {
    "Content-Length abc": (b"{}", "Content-Length: abc\r\n", 400),
    "Content-Length -1": (b"{}", "Content-Length: -1\r\n", 400),
    "two Content-Lengths": (b"{}", "Content-Length: 3\r\n", 400),
    "huge Content-Length": (b"{}", "Content-Length: " + "9" * 40 + "\r\n", 413),
}


@pytest.fixture
def server():
    with ChatServer(FakePolicy(), limits=Limits(max_body_bytes=300_000)) as s:
        yield s


def port_of(server: ChatServer) -> int:
    return server.httpd.server_address[1]


def assert_json_error(answer, status: int | None = None) -> str:
    assert answer is not None, "the server closed the connection without an answer"
    code, payload = answer
    assert 400 <= code < 500 if status is None else code == status, (code, payload)
    assert set(payload["error"]) >= {"message", "type"} and payload["error"]["message"]
    return payload["error"]["message"]


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_malformed_bodies_get_a_400_json_error(server, case):
    assert_json_error(exchange(port_of(server), post(BAD_BODIES[case])), 400)
    assert exchange(port_of(server), jpost(GOOD))[0] == 200  # and the server goes on


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_malformed_fields_get_a_400_json_error(server, case):
    message = assert_json_error(exchange(port_of(server), msg(**BAD_FIELDS[case])), 400)
    assert "Expect" in message


@pytest.mark.parametrize("case", sorted(BAD_FRAMING))
def test_bad_content_length_gets_a_json_error(server, case):
    body, header, status = BAD_FRAMING[case]
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{header}"
    if case == "two Content-Lengths":
        head += "Content-Length: 2\r\n"
    assert_json_error(exchange(port_of(server), head.encode() + b"\r\n" + body), status)


def test_missing_length_chunked_routes_and_methods_are_json_errors(server):
    port = port_of(server)
    no_length = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_json_error(exchange(port, no_length), 411)
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    assert_json_error(exchange(port, chunked), 411)
    assert_json_error(exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), 404)
    assert_json_error(exchange(port, b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"), 501)
    assert_json_error(exchange(port, b"GARBAGE\r\n\r\n"), 400)
    over = post(b"{" + b" " * 300_001 + b"}")
    assert_json_error(exchange(port, over), 413)


def test_caps_on_tokens_prompt_and_request_time():
    limits = Limits(max_tokens=50, max_prompt_tokens=100, max_request_seconds=0.3, slice_tokens=1)
    with ChatServer(FakePolicy(delay=0.02), limits=limits) as s:
        port = port_of(s)
        assert "<= 50" in assert_json_error(exchange(port, msg(max_tokens=51)), 400)
        long_prompt = {"messages": [{"role": "user", "content": "x" * 200}], "max_tokens": 2}
        assert "prompt tokens" in assert_json_error(exchange(port, jpost(long_prompt)), 400)
        ok = exchange(port, msg(max_tokens=2))
        assert ok[0] == 200 and ok[1]["usage"]["completion_tokens"] == 2
        # 50 slices of 0.02 s cannot finish within 0.3 s: refused with the cap named
        message = assert_json_error(exchange(port, msg(max_tokens=50)), 400)
        assert "within 0.3 s" in message


def test_header_and_body_read_timeouts_answer_408():
    limits = Limits(header_seconds=0.3, body_seconds=0.3)
    with ChatServer(FakePolicy(), limits=limits) as s:
        port = port_of(s)
        partial_headers = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        assert_json_error(exchange(port, partial_headers), 408)
        short_body = post(b'{"messages"', length=100)
        assert "did not arrive" in assert_json_error(exchange(port, short_body), 408)
        assert "closed" in assert_json_error(exchange(port, short_body, shut=True), 400)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as idle:
            assert idle.recv(100) == b""  # a silent connection is closed, without an answer
        assert exchange(port, jpost(GOOD))[0] == 200


def test_a_slow_request_does_not_starve_a_short_one():
    policy = FakePolicy(delay=0.01)
    with ChatServer(policy, limits=Limits(slice_tokens=4)) as s:
        port = port_of(s)
        long_body = jpost({"messages": [{"role": "user", "content": "long"}], "max_tokens": 400})
        answers = {}
        t = threading.Thread(target=lambda: answers.setdefault("long", exchange(port, long_body)))
        t.start()
        for _ in range(2000):  # until the long request is generating
            if "long" in policy.calls:
                break
            time.sleep(0.005)
        short = {"messages": [{"role": "user", "content": "short"}], "max_tokens": 2}
        assert exchange(port, jpost(short))[0] == 200
        t.join(timeout=60)
    assert answers["long"][0] == 200
    assert answers["long"][1]["usage"]["completion_tokens"] == 400
    calls = policy.calls
    assert calls.count("long") == 100 and calls.count("short") == 1
    assert calls.index("short") < len(calls) - 1 - calls[::-1].index("long")  # served between


def test_a_disconnected_clients_generation_is_cancelled():
    policy = FakePolicy(delay=0.01)
    with ChatServer(policy, limits=Limits(slice_tokens=2)) as s:
        body = jpost({"messages": [{"role": "user", "content": "gone"}], "max_tokens": 1000})
        with socket.create_connection(("127.0.0.1", port_of(s)), timeout=20) as c:
            c.sendall(body)
            for _ in range(2000):
                if policy.calls:
                    break
                time.sleep(0.005)
        for _ in range(2000):  # bounded wait for the server to notice
            if s.counts["cancelled"]:
                break
            time.sleep(0.005)
        assert s.counts["cancelled"] == 1
        done = len(policy.calls)
        assert done < 500  # 500 slices were asked for
        assert exchange(port_of(s), jpost(GOOD))[0] == 200
    assert policy.calls.count("gone") == done


def test_a_stop_string_spanning_two_slices_ends_the_completion():
    with ChatServer(FakePolicy(), limits=Limits(slice_tokens=2)) as s:
        code, payload = exchange(port_of(s), msg(max_tokens=10, stop=["aaa"]))
    assert code == 200
    choice = payload["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("aaa", "stop")
    assert payload["usage"]["completion_tokens"] == 3


def test_limits_and_cli_flags_are_validated(capsys):
    with pytest.raises(ValueError, match="max_tokens >= 1"):
        Limits(max_tokens=0)
    cfg = ServeConfig(max_tokens=7, slice_tokens=3)
    assert (cfg.limits().max_tokens, cfg.limits().slice_tokens) == (7, 3)
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--max-tokens", "--max-prompt-tokens", "--max-body-bytes",
                 "--max-request-seconds", "--header-seconds", "--body-seconds", "--slice-tokens"):  # fmt: skip
        assert flag in out
    with pytest.raises(SystemExit):
        main(["--slice-tokens", "0"])
    assert "slice_tokens >= 1" in capsys.readouterr().err


def test_sliced_greedy_generation_matches_the_local_policy(policy):
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0, stop=())
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": "Go Up or Down?"}]
    (direct,) = policy.complete([Prompt(messages)], greedy)
    with ChatServer(policy, limits=Limits(slice_tokens=5)) as s:
        body = {"messages": messages, "max_tokens": 12, "temperature": 0, "logprobs": True}
        code, payload = exchange(port_of(s), jpost(body))
    assert code == 200
    content = payload["choices"][0]["logprobs"]["content"]
    assert [t["token_id"] for t in content] == direct.token_ids
    assert [t["logprob"] for t in content] == pytest.approx(direct.logprobs, abs=1e-4)
    assert payload["choices"][0]["message"]["content"] == direct.text
