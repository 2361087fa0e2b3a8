"""Our model server through the official ``openai`` client: the protocol, not only JSON.

Each test starts a :class:`ChatServer` on 127.0.0.1 (a free port) over the tiny ``test``
checkpoint, talks to it with ``openai.OpenAI`` (no retries, a 30 s timeout) and stops it.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from earlyexp.agents.policy import Completion, SamplingParams
from earlyexp.agents.serve import ChatServer, Limits

openai = pytest.importorskip("openai", reason="the dev extra installs the openai client")
pytestmark = pytest.mark.timeout(180)

NAME = "tiny-test"
MESSAGES = [
    {"role": "system", "content": "Task: move the agent to the goal."},
    {"role": "user", "content": "Observation:\nDDAB\nAvailable actions: Up, Down, Left, Right"},
]


@pytest.fixture
def serve(policy):
    """``serve(**limits) -> (server, client)``; every server started is stopped."""
    started = []

    def start(**limits):
        server = ChatServer(policy, name=NAME, limits=Limits(**limits)).start()
        started.append(server)
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=30)
        return server, client

    yield start
    for server in started:
        server.stop()


def ask(client, **kw):
    body = {"model": NAME, "messages": MESSAGES, "max_tokens": 8, "temperature": 1.0, **kw}
    return client.chat.completions.create(**body)


def test_n_choices_come_from_one_batched_generation(serve):
    server, client = serve()
    r = ask(client, n=3, seed=5, logprobs=True)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1  # three samples, not one copied
    tokens = [len(c.logprobs.content) for c in r.choices]
    assert r.usage.completion_tokens == sum(tokens)
    assert r.usage.total_tokens == r.usage.prompt_tokens + sum(tokens)
    assert server.counts["generation_calls"] == 1 and server.counts["largest_batch"] == 3
    again = ask(client, n=3, seed=5)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]


def test_a_stream_of_chunks_concatenates_to_the_reply(serve):
    server, client = serve(slice_tokens=3)  # several rounds: deltas arrive as generated
    whole = ask(client, n=2, seed=11, max_tokens=10)
    stream = ask(client, n=2, seed=11, max_tokens=10, stream=True,
                 stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == NAME for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text, finish = ["", ""], [None, None]
    for c in chunks[:-1]:
        (choice,) = c.choices
        text[choice.index] += choice.delta.content or ""
        finish[choice.index] = choice.finish_reason or finish[choice.index]
    assert text == [c.message.content for c in whole.choices]
    assert finish == [c.finish_reason for c in whole.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) >= 3


def test_stream_logprobs_match_the_non_streamed_ones(serve):
    _, client = serve(slice_tokens=4)
    whole = ask(client, seed=2, max_tokens=10, logprobs=True)
    stream = ask(client, seed=2, max_tokens=10, logprobs=True, stream=True)
    entries = [e for c in stream if c.choices and c.choices[0].logprobs
               for e in c.choices[0].logprobs.content]  # fmt: skip
    assert [e.token for e in entries] == [e.token for e in whole.choices[0].logprobs.content]


def test_models_are_listed_and_unknown_names_are_404(serve):
    _, client = serve()
    assert [m.id for m in client.models.list().data] == [NAME]
    model = client.models.retrieve(NAME)
    assert (model.id, model.object, model.owned_by) == (NAME, "model", "earlyexp")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    with pytest.raises(openai.NotFoundError) as err:
        ask(client, model="gpt-4o")
    assert err.value.code == "model_not_found" and "tiny-test" in err.value.message
    with pytest.raises(openai.NotFoundError):
        ask(client, model="gpt-4o", stream=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_tokens": 0},
        {"max_completion_tokens": 0},
        {"max_tokens": -5},
        {"n": 0},
        {"top_logprobs": 3},
        {"stream_options": {"include_usage": True}},
    ],  # fmt: skip
)
def test_bad_arguments_are_400(serve, bad):
    _, client = serve()
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, **bad)
    assert "Expect" in err.value.message


def test_logprobs_have_the_shape_of_the_spec(serve, policy):
    _, client = serve()
    r = ask(client, temperature=0, logprobs=True, top_logprobs=3, max_tokens=6, stop=[])
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 6
    tok = policy.tokenizer
    for e in content:
        assert isinstance(e.token, str) and isinstance(e.bytes, list) and e.logprob <= 0
        assert len(e.top_logprobs) == 3
        assert [t.logprob for t in e.top_logprobs] == sorted(
            (t.logprob for t in e.top_logprobs), reverse=True
        )
        best = e.top_logprobs[0]  # greedy: the sampled token is the likeliest
        assert (best.token, best.logprob) == (e.token, pytest.approx(e.logprob, abs=1e-4))
    ids = [e.model_extra["token_id"] for e in content]
    raw = b"".join(bytes(e.bytes) for e in content)  # a token's own bytes, even half a character
    assert raw.decode("utf-8", errors="replace") == tok.decode(ids)


def test_concurrent_requests_share_generation_calls_and_keep_their_seeds(serve):
    k = 6
    server, client = serve(batch_window=0.25)
    alone = [ask(client, seed=s).choices[0].message.content for s in range(k)]
    calls_alone = server.counts["generation_calls"]
    assert calls_alone == k
    together: list[str | None] = [None] * k
    go = threading.Barrier(k)

    def one(s):
        go.wait()
        together[s] = ask(client, seed=s).choices[0].message.content

    threads = [threading.Thread(target=one, args=(s,)) for s in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    calls = server.counts["generation_calls"] - calls_alone
    assert calls < k and server.counts["largest_batch"] >= 2, server.counts
    assert together == alone  # a seeded row samples alike, batched or alone
    stats = httpx.get(server.url.removesuffix("/v1") + "/stats", timeout=10).json()
    assert stats["generation_calls"] == calls_alone + calls and stats["answered"] == 2 * k


class SlowPolicy:
    """One token (id 0) per step, ``delay`` seconds a call; batches of any size."""

    class tokenizer:  # noqa: N801
        @staticmethod
        def decode(ids, skip_special_tokens=False):
            return "a" * len(ids)

    def __init__(self, delay):
        self.delay = delay

    def context_ids(self, prompt):
        return list(prompt.token_ids or [1, 2, 3])

    def complete(self, prompts, sampling: SamplingParams):
        time.sleep(self.delay)
        n = sampling.max_new_tokens
        return [Completion("a" * n, [0] * n, [-0.5] * n, "length") for _ in prompts]


def test_a_stream_closed_early_is_cancelled_and_a_late_one_ends_with_an_error():
    limits = Limits(slice_tokens=2, max_request_seconds=0.5)
    with ChatServer(SlowPolicy(0.02), name=NAME, limits=limits) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=30)
        stream = ask(client, max_tokens=1000, stream=True)
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        for _ in range(400):  # bounded wait for the server to notice
            if server.counts["cancelled"]:
                break
            time.sleep(0.01)
        assert server.counts["cancelled"] == 1
        with pytest.raises(openai.APIError, match="within 0.5 s"):
            list(ask(client, max_tokens=1000, stream=True))
        assert ask(client, max_tokens=4).choices[0].message.content == "aaaa"
