"""A small OpenAI-compatible chat-completions server for a local checkpoint (127.0.0.1).

Serves ``POST /v1/chat/completions`` (``messages``, ``max_tokens``, ``temperature``,
``top_p``, ``stop``, ``seed``, ``logprobs``; ``n`` must be 1) and ``GET /v1/models``, with
an :class:`~earlyexp.agents.backends.hf.HFPolicy` behind it, one request generating at a
time. It exists so the HTTP backend is tested against a real server over real sockets,
and so a trained tiny checkpoint can be driven by any OpenAI-compatible client::

    python -m earlyexp.agents.serve --model runs/quick/cells/il__.../checkpoint --port 8011
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from earlyexp.agents.policy import Prompt, SamplingParams

MAX_BODY = 8 * 1024 * 1024


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


class ChatServer:
    """The server: ``start()`` in a background thread, ``url``, ``stop()``.

    Args:
        policy: the policy answering requests (its ``complete`` is called one at a time).
        name: model name reported to clients.
        port: port on 127.0.0.1 (0 picks a free one).
    """

    def __init__(self, policy: Any, name: str = "local", port: int = 0) -> None:
        self.policy, self.name = policy, name
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8011/v1``."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> ChatServer:
        """Serve in a daemon thread; return self."""
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
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

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one chat-completions request body (raises ValueError on a bad request)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("Expect 'messages' to be a non-empty list")
        if body.get("n", 1) != 1:
            raise ValueError(f"Expect n == 1, actually: {body.get('n')}")
        stop = body.get("stop") or ()
        sampling = SamplingParams(
            max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 64),
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            seed=body.get("seed"),
        )
        if messages[0].get("role") != "system":
            messages = [{"role": "system", "content": ""}] + messages
        with self.lock:
            (c,) = self.policy.complete([Prompt(messages)], sampling)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
        }
        if body.get("logprobs"):
            tok = self.policy.tokenizer
            choice["logprobs"] = {
                "content": [
                    {"token": tok.decode([t]), "logprob": lp, "token_id": t}
                    for t, lp in zip(c.token_ids, c.logprobs, strict=True)
                ]
            }
        n_prompt = len(self.policy.context_ids(Prompt(messages)))
        return {
            "id": f"chatcmpl-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": len(c.token_ids),
                "total_tokens": n_prompt + len(c.token_ids),
            },
        }


class _Handler(BaseHTTPRequestHandler):
    server_ref: ChatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str) -> None:
        self._send(code, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(
                200, {"object": "list", "data": [{"id": self.server_ref.name, "object": "model"}]}
            )
        else:
            self._error(404, f"No route {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"No route {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._error(413, f"Body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            self._send(200, self.server_ref.chat(body))
        except (ValueError, TypeError, KeyError) as e:
            self._error(400, str(e))


def main(argv: list[str] | None = None) -> int:
    """Serve a checkpoint until interrupted."""
    from earlyexp.agents.backends.hf import HFPolicy
    from earlyexp.agents.config import add_dataclass_args, from_args
    from earlyexp.agents.models import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_args(parser, ServeConfig)
    cfg = from_args(ServeConfig, parser.parse_args(argv))
    policy = HFPolicy.from_pretrained(resolve_model(cfg.model), cfg.device)
    server = ChatServer(policy, cfg.name or cfg.model, cfg.port)
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
