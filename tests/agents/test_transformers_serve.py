"""Other servers sample the tiny checkpoint: ``transformers serve`` on 127.0.0.1.

The checkpoint's ``generation_config`` says ``do_sample``; a server that reads it (as
``transformers serve`` does) samples at temperature 1 instead of decoding greedily. Skipped
when the installed transformers has no ``serve`` command or its serving dependencies
(``pip install 'transformers[serving]'``: fastapi, uvicorn, openai).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)  # about 10 s: the server loads in 5-15 s on 2 cores

CLI = Path(sys.executable).parent / "transformers"
SERVING = ("fastapi", "uvicorn", "openai")


def serve_command_or_skip() -> None:
    """Skip, saying why, unless ``transformers serve`` can run here."""
    missing = [m for m in SERVING if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"transformers serve needs {', '.join(missing)}: "
                    "pip install 'transformers[serving]'")  # fmt: skip
    if not CLI.exists():
        pytest.skip(f"no transformers command at {CLI}")
    help_run = subprocess.run([str(CLI), "serve", "--help"], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
    if help_run.returncode != 0 or "--port" not in help_run.stdout:
        pytest.skip(f"this transformers has no serve command: {help_run.stderr[-300:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen, port: int, log: Path, seconds: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"transformers serve not up in {seconds} s: {log.read_text()[-2000:]}")


def reply(client, model: str, seed: int) -> str:
    messages = [{"role": "user", "content": "Observation:\nDDAB"}]
    r = client.chat.completions.create(
        model=model, messages=messages, max_tokens=16, temperature=1.0, seed=seed
    )
    return str(r.choices[0].message.content)


def test_transformers_serve_samples_the_tiny_checkpoint(tiny_path, tmp_path):
    serve_command_or_skip()
    import openai

    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(CLI), "serve", str(tiny_path), "--host", "127.0.0.1", "--port", str(port),
               "--device", "cpu"]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(proc, port, log)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                               max_retries=0, timeout=60)  # fmt: skip
        replies = [reply(client, str(tiny_path), seed) for seed in (1, 2)]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
    assert all(replies), replies
    assert replies[0] != replies[1], "two seeds at temperature 1 gave one reply: greedy?"
