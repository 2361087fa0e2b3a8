"""Any OpenAI-compatible chat-completions server over ``httpx`` (vLLM, SGLang, Ollama, ...).

Requests run concurrently (at most ``max_concurrency`` in flight), each with a timeout;
connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff;
other 4xx answers fail at once. Every failure names the URL, the status and the server's
message. This backend has no tokenizer: completions carry text, and the per-token
log-probs when the server returns them (``logprobs: true`` is requested).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from earlyexp.agents.policy import Completion, Prompt, SamplingParams

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(RuntimeError):
    """The server could not answer (after retries where they apply)."""


class OpenAIPolicy:
    """Chat completions from ``base_url`` (for example ``http://127.0.0.1:8000/v1``).

    Args:
        base_url: the server's ``/v1`` URL.
        model: the model name sent with each request.
        api_key: sent as a bearer token when given.
        max_concurrency: requests in flight at most.
        timeout: seconds per request (connect, read and write).
        retries: extra attempts after a retryable failure.
        backoff: first retry delay in seconds, doubled each time.
        logprobs: ask the server for per-token log-probs.
    """

    tokenizer = None

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        logprobs: bool = True,
    ) -> None:
        try:
            import httpx
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                "The HTTP backend needs httpx: `pip install 'earlyexp[train]'`"
            ) from e
        if max_concurrency < 1 or retries < 0 or timeout <= 0:
            raise ValueError(
                "Expect max_concurrency >= 1, retries >= 0 and timeout > 0, actually: "
                f"{max_concurrency}, {retries}, {timeout}"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.retries, self.backoff, self.logprobs = model, retries, backoff, logprobs
        self.max_concurrency = max_concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_concurrency)
        self.client = httpx.Client(timeout=timeout, headers=headers, limits=limits)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def complete(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[Completion]:
        """One request per prompt, ``max_concurrency`` at a time; results in prompt order."""
        bodies = [self._body(p, sampling, i) for i, p in enumerate(prompts)]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(self._request, bodies))

    def _body(self, prompt: Prompt, sampling: SamplingParams, index: int) -> dict[str, Any]:
        if sampling.no_repeat_ngram:
            raise ValueError(
                "Expect no_repeat_ngram 0 for an HTTP model (the OpenAI API has no such "
                f"field), actually: {sampling.no_repeat_ngram}"
            )
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "n": 1,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed + index
        if self.logprobs:
            body["logprobs"] = True
        return body

    def _request(self, body: dict[str, Any]) -> Completion:
        import httpx

        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self.client.post(self.url, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                if last:
                    raise ServerError(
                        f"POST {self.url} failed after {attempt + 1} attempts: {e!r}"
                    ) from e
            else:
                if r.status_code == 200:
                    return _completion(r.json(), self.url)
                if r.status_code not in RETRY_STATUS or last:
                    raise ServerError(
                        f"POST {self.url} answered {r.status_code} (attempt {attempt + 1}): {r.text[:300]}"
                    )
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


def _completion(data: dict[str, Any], url: str) -> Completion:
    """Read one chat-completions response."""
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as e:
        raise ServerError(
            f"Expect a chat.completion from {url}, actually: {str(data)[:300]}"
        ) from e
    content = (choice.get("logprobs") or {}).get("content") or []
    logprobs = [float(t["logprob"]) for t in content]
    ids = [int(t["token_id"]) for t in content if "token_id" in t]
    reason = "length" if choice.get("finish_reason") == "length" else "stop"
    return Completion(text, ids if len(ids) == len(logprobs) else [], logprobs, reason)
