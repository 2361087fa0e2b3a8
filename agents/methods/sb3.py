"""stable-baselines3 PPO and DQN on the numeric views of the control envs (non-LLM baselines).

They act on one-hot grids (``earlyexp.envs.control.numeric``), not on text, so they are
evaluated on the numeric view of the same panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyexp.agents.methods import register
from earlyexp.agents.methods.common import MethodConfig
from earlyexp.agents.records import EpisodeRecord


@dataclass
class SB3Config(MethodConfig):
    """``ppo`` and ``dqn``."""

    steps: int = 50_000
    """Environment steps of training."""


def _train(algo: str, env_id: str, seed: int, steps: int, device: str, run_dir: Path) -> Any:
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    from earlyexp.envs.control.numeric import make_numeric

    if algo == "ppo":
        venv = make_vec_env(lambda: make_numeric(env_id), n_envs=8, seed=seed)
        # short horizons and sparse reward: a low discount and a high learning rate
        model: Any = PPO("MlpPolicy", venv, n_steps=128, batch_size=256, n_epochs=4, gamma=0.9,
                         learning_rate=1e-3, ent_coef=0.01, seed=seed, device=device, verbose=0)  # fmt: skip
    else:
        venv = make_vec_env(lambda: make_numeric(env_id), n_envs=1, seed=seed)
        model = DQN("MlpPolicy", venv, learning_starts=500, buffer_size=50_000,
                    exploration_fraction=0.5, target_update_interval=500, seed=seed,
                    device=device, verbose=0)  # fmt: skip
    model.learn(total_timesteps=steps)
    model.save(run_dir / f"{algo}.zip")
    venv.close()
    return model


def _evaluate(model: Any, env_id: str, n_tasks: int) -> list[EpisodeRecord]:
    from earlyexp.envs.control.numeric import make_numeric

    records = []
    for split in ("test", "ood"):
        view = make_numeric(env_id, split=split)
        for t in range(min(n_tasks, view.env.unwrapped.panel_sizes[split])):
            obs, info = view.reset(options={"task": t})
            done, steps = False, 0
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, _, term, trunc, info = view.step(int(action))
                steps, done = steps + 1, term or trunc
            records.append(EpisodeRecord(split, t, info["score"], info["success"], steps, 0))
        view.close()
    return records


@register("ppo", config=SB3Config, kind="sb3", requires=("control",))
def run_ppo(
    *, env_id: str, seed: int, config: SB3Config, run_dir: Path, device: str, **kwargs: Any
) -> list[EpisodeRecord]:
    """stable-baselines3 PPO (MlpPolicy, 8 envs, gamma 0.9) on the numeric view."""
    model = _train("ppo", env_id, seed, config.steps, device, run_dir)
    return _evaluate(model, env_id, config.eval_tasks)


@register("dqn", config=SB3Config, kind="sb3", requires=("control",))
def run_dqn(
    *, env_id: str, seed: int, config: SB3Config, run_dir: Path, device: str, **kwargs: Any
) -> list[EpisodeRecord]:
    """stable-baselines3 DQN (MlpPolicy) on the numeric view."""
    model = _train("dqn", env_id, seed, config.steps, device, run_dir)
    return _evaluate(model, env_id, config.eval_tasks)
