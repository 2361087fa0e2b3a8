"""Which model a method runs: ``tiny``, a local checkpoint folder, or an OpenAI-compatible server.

``--model`` takes one of:

- ``tiny`` (or ``tiny:<preset>``): the built-in preset, built and cached on first use;
- a checkpoint folder with ``config.json`` (any Hugging Face causal LM);
- ``http://HOST:PORT/v1#MODEL``: a model behind an OpenAI-compatible server (vLLM, SGLang,
  ``transformers serve``, ``python -m earlyexp.agents.serve``), played through
  :class:`~earlyexp.agents.backends.openai_http.OpenAIPolicy`. Such a model cannot be
  trained here: methods that change weights refuse it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value.

    Attributes:
        raw: the value as given.
        path: the checkpoint folder (local models), else None.
        url: the server's base URL (``.../v1``), else None.
        name: the model name sent to the server (``#MODEL``), else ``""``.
    """

    raw: str
    path: Path | None = None
    url: str | None = None
    name: str = ""

    @property
    def is_remote(self) -> bool:
        """True for a model behind an HTTP server (its weights cannot be trained here)."""
        return self.url is not None

    @property
    def is_tiny(self) -> bool:
        """True for the built-in tiny preset."""
        return is_tiny(self.raw)


def is_tiny(model: str) -> bool:
    """``tiny`` or ``tiny:<preset>``."""
    return model == "tiny" or model.startswith("tiny:")


def parse_model(model: str) -> ModelSpec:
    """Parse a ``--model`` value without loading anything (see the module docstring)."""
    if model.startswith(("http://", "https://")):
        url, _, name = model.partition("#")
        if not name:
            raise ValueError(
                f"Expect an HTTP model as http://HOST:PORT/v1#MODEL (the model name after '#'), "
                f"actually: {model!r}"
            )
        return ModelSpec(model, url=url.rstrip("/"), name=name)
    return ModelSpec(model)


def resolve_model(model: str) -> Path:
    """``tiny`` / ``tiny:<preset>`` -> the cached tiny checkpoint; a folder -> that folder."""
    if is_tiny(model):
        from earlyexp.agents.backends.tiny import tiny_checkpoint

        return tiny_checkpoint(model.partition(":")[2] or "tiny")
    path = Path(model).expanduser()
    if not (path / "config.json").exists():
        raise ValueError(
            "Expect model 'tiny', a checkpoint folder with config.json or "
            f"http://HOST:PORT/v1#MODEL, actually: {model!r}"
        )
    return path


def require_local(model: str, method: str) -> Path:
    """The checkpoint folder of ``model``, or a ValueError for a method that trains weights."""
    if parse_model(model).is_remote:
        raise ValueError(
            f"Expect a local model (tiny or a checkpoint folder) for {method!r}, which trains "
            f"weights; actually an HTTP model: {model!r}. Use --model tiny or --model PATH."
        )
    return resolve_model(model)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; validates the name.

    Accepts ``auto``, ``cpu``, ``cuda`` and ``cuda:N``. Without torch installed, ``auto``
    is ``cpu``.
    """
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"Expect device auto, cpu, cuda or cuda:N, actually: {device!r}")
    if device == "cpu":
        return device
    try:
        import torch
    except ModuleNotFoundError as e:
        if device == "auto":
            return "cpu"
        raise ValueError(f"Expect torch installed for device={device!r}, actually: missing") from e
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"Expect a visible CUDA device for device={device!r}, actually: none")
    return device
