"""One optimizer loop for every method: SFT/IL, RAFT, GRPO, ERL and HeRL updates.

:class:`Trainer` owns the optimizer side (AdamW over the trainable parameters, linear warmup
then cosine decay to 0, global-norm gradient clipping, ``grad_accum`` micro-batches per
optimizer step, bf16 autocast on CUDA) and calls a plain ``loss_fn(model, batch) ->
(loss, metrics)``; the method owns the data. Two ways to drive it:

* :meth:`Trainer.fit` runs the remaining steps; ``batch_at(k)`` builds micro-batch ``k``
  (``k = step * grad_accum + j``) deterministically, so a resumed run needs no replay;
* :meth:`Trainer.step` does one update (RL: one call between rollouts).

Seeded (``torch.manual_seed(seed)`` on construction). With ``state_dir`` and
``checkpoint_every`` the whole training state (model, optimizer, scheduler, step, RNG states,
the log) is written every N steps, atomically (a temporary folder renamed into place; only the
latest is kept), and a new Trainer on the same ``state_dir`` resumes from it: a killed run
ends with the same weights as an uninterrupted one. A NaN or infinite loss stops the run with
a :class:`FloatingPointError` naming the step, before the update.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earlyexp.progress import bar

LossFn = Callable[[Any, Any], tuple[Any, dict[str, float]]]
"""``loss_fn(model, batch) -> (scalar loss tensor, metrics)``."""

STATE_FILE = "state.pt"
RESUME_KEYS = ("steps", "lr", "warmup_ratio", "weight_decay", "grad_clip", "grad_accum", "seed")
"""Config fields a resumed run must share with the checkpointed one."""


@dataclass
class TrainConfig:
    """Optimizer-loop hyper-parameters (each field's docstring is its ``--help``)."""

    steps: int = 200
    """Optimizer steps (the schedule decays to 0 at the last one)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    warmup_ratio: float = 0.1
    """Share of the steps with a linear warmup (then cosine decay to 0)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (their losses are averaged)."""
    seed: int = 0
    """torch.manual_seed at the start (dropout and any sampling inside the loss)."""
    log_every: int = 10
    """Log every this many steps (and the last step)."""
    checkpoint_every: int = 0
    """Write the training state every this many steps into the state dir (0: never)."""

    def __post_init__(self) -> None:
        for name in ("steps", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expect {name} >= 1, actually: {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"Expect warmup_ratio in [0, 1), actually: {self.warmup_ratio}")
        if self.lr <= 0:
            raise ValueError(f"Expect lr > 0, actually: {self.lr}")
        if not self.grad_clip > 0:
            raise ValueError(f"Expect grad_clip > 0, actually: {self.grad_clip}")
        if self.checkpoint_every < 0:
            raise ValueError(f"Expect checkpoint_every >= 0, actually: {self.checkpoint_every}")


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """AdamW + schedule + clipping around a ``loss_fn`` (module docstring).

    Args:
        model: a torch module; its parameters with ``requires_grad`` are trained in place.
        loss_fn: ``loss_fn(model, batch) -> (loss, metrics)``; batches with a ``to(device)``
            method (:class:`~earlyexp.agents.train.batch.TrainBatch`) are moved to the
            model's device first.
        config: the loop's hyper-parameters.
        state_dir: folder of the checkpoints; the latest one there is resumed at once.
        desc: label of the progress bar.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: LossFn,
        config: TrainConfig,
        state_dir: str | Path | None = None,
        desc: str = "train",
    ) -> None:
        import torch

        torch.manual_seed(config.seed)
        self.model, self.loss_fn, self.config, self.desc = model, loss_fn, config, desc
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("Expect a model with trainable parameters, actually: none")
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        warmup = int(config.warmup_ratio * config.steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, config.steps, warmup)
        )
        self.done = 0
        """Optimizer steps done."""
        self.log: list[dict[str, float]] = []
        """One entry every ``log_every`` steps: step, loss, the loss_fn metrics, grad_norm, lr."""
        if self.state_dir is not None:
            self.resume()

    def step(self, batches: Sequence[Any]) -> dict[str, float]:
        """One optimizer step on the micro-batches ``batches``; return the step's metrics.

        Any number of micro-batches (:meth:`fit` passes ``grad_accum``); their losses are
        averaged. Metrics: step, loss, the loss_fn metrics (averaged), grad_norm, lr.
        """
        import torch

        if not batches:
            raise ValueError("Expect at least one micro-batch per step, actually: none")
        if self.done >= self.config.steps:
            raise ValueError(
                f"Expect at most {self.config.steps} optimizer steps (config.steps), "
                f"actually: step {self.done}"
            )
        was_training = self.model.training
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        losses: list[float] = []
        sums: dict[str, float] = {}
        for batch in batches:
            loss, value, metrics = self._forward(batch)
            (loss if len(batches) == 1 else loss / len(batches)).backward()
            losses.append(value)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.opt.step()
        self.sched.step()
        self.model.train(was_training)
        out = {"step": self.done, "loss": sum(losses) / len(losses)}
        out |= {k: v / len(batches) for k, v in sums.items() if k not in out}
        out |= {"grad_norm": norm.item(), "lr": float(self.sched.get_last_lr()[0])}
        self.done += 1
        last = self.done == self.config.steps
        if (self.done - 1) % self.config.log_every == 0 or last:
            self.log.append(out)
        every = self.config.checkpoint_every
        if self.state_dir is not None and every and (self.done % every == 0 or last):
            self.save()
        return out

    def _forward(self, batch: Any) -> tuple[Any, float, dict[str, float]]:
        """Loss (tensor and value) and metrics of one micro-batch; raise on a NaN/inf loss."""
        import torch

        if hasattr(batch, "to"):
            batch = batch.to(self.device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        with autocast:
            loss, metrics = self.loss_fn(self.model, batch)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Expect a finite loss, actually: {value} at step {self.done} "
                f"(metrics {metrics}); no update was made at this step"
            )
        return loss, value, metrics

    def fit(
        self, batch_at: Callable[[int], Any], on_step: Callable[[int], None] | None = None
    ) -> list[dict[str, float]]:
        """Run the steps not done yet; ``batch_at(k)`` builds micro-batch k. Return the log.

        ``on_step(done)`` runs after each optimizer step (an evaluation, say); the model is
        put back in training mode before the next.
        """
        A, total = self.config.grad_accum, self.config.steps
        self.model.train()
        shown = bar(range(self.done, total), initial=self.done, total=total, desc=self.desc,
                    unit="step")  # fmt: skip
        for step in shown:
            self.step([batch_at(step * A + j) for j in range(A)])
            if on_step is not None:
                on_step(self.done)
                self.model.train()
            if self.log and self.log[-1]["step"] == step:
                shown.set_postfix(loss=f"{self.log[-1]['loss']:.3f}", refresh=False)
        self.model.eval()
        return self.log

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (plain containers and tensors)."""
        import torch

        legacy: Any = np.random.get_state()  # (name, keys, pos, has_gauss, cached_gaussian)
        name, keys, pos, has_gauss, gauss = legacy
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "python": random.getstate(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "done": self.done,
            "rng": rng,
            "log": self.log,
            "config": dataclasses.asdict(self.config),
        }

    def save(self) -> Path:
        """Write :meth:`state` to ``state_dir/step-<done>`` atomically; drop older ones."""
        import torch

        if self.state_dir is None:
            raise ValueError("Expect a state_dir to save the training state in, actually: None")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".tmp-{self.done}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(self.state(), tmp / STATE_FILE)
        with open(tmp / STATE_FILE, "rb") as f:
            os.fsync(f.fileno())
        target = self.state_dir / f"step-{self.done:08d}"
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        for old in self.state_dir.glob("step-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def resume(self) -> bool:
        """Load the latest checkpoint of ``state_dir``, if any; True when one was loaded."""
        import torch

        path = latest_checkpoint(self.state_dir) if self.state_dir is not None else None
        if path is None:
            return False
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        saved = {k: state["config"][k] for k in RESUME_KEYS}
        now = {k: getattr(self.config, k) for k in RESUME_KEYS}
        if saved != now:
            raise ValueError(
                f"Expect the config of the run checkpointed in {path} to resume it, "
                f"actually: {saved} there, {now} here"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.done, self.log = state["done"], list(state["log"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        name, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(rng["python"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        return True


def latest_checkpoint(state_dir: Path) -> Path | None:
    """The ``step-*`` folder of ``state_dir`` with the most steps, or None."""
    found = sorted(p for p in state_dir.glob("step-*") if (p / STATE_FILE).exists())
    return found[-1] if found else None
