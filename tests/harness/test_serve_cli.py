"""``earlyexp serve model``: the OpenAI-compatible model server behind the ``earlyexp`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from earlyexp.harness.cli import SERVERS, main

pytestmark = pytest.mark.timeout(300)  # about 10 s: the server loads torch in 3-8 s


def test_serve_help_names_every_server(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "model" in SERVERS and all(name in out for name in SERVERS)


def test_serve_model_help_is_the_model_servers(capsys):
    pytest.importorskip("torch")
    from earlyexp.agents.serve import ServeConfig

    with pytest.raises(SystemExit) as e:
        main(["serve", "model", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: earlyexp serve model")
    for name in ServeConfig.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in out


def test_serve_an_unknown_name_is_an_error(capsys):
    assert main(["serve", "telepathy"]) == 2
    assert "Expect one of ['flights', 'model', 'webshop']" in capsys.readouterr().err


@pytest.fixture
def tiny_path(tmp_path, monkeypatch):
    """The ``test`` tiny preset (as tests/agents/conftest.py builds it), in a temp cache."""
    pytest.importorskip("torch")
    from earlyexp.agents.backends.tiny import tiny_checkpoint

    monkeypatch.setenv("EARLYEXP_CACHE", str(tmp_path / "cache"))
    return tiny_checkpoint("test")


def test_serve_model_answers_v1_models_and_stops_on_ctrl_c(tiny_path):
    command = [sys.executable, "-m", "earlyexp.harness.cli", "serve", "model",
               "--model", str(tiny_path), "--name", "tiny-test", "--port", "0", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # serving 'tiny-test' at http://127.0.0.1:PORT/v1
        if not line.startswith("serving 'tiny-test' at http://127.0.0.1:"):
            pytest.fail(f"no serving line: {line}{proc.stdout.read()[-2000:]}")
        url = line.split(" at ")[1].strip()
        with urllib.request.urlopen(f"{url}/models", timeout=30) as r:
            models = json.loads(r.read())
        assert [m["id"] for m in models["data"]] == ["tiny-test"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
