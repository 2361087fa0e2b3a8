"""Non-LLM baselines for ``earlyexp bench``: random, expert, and stable-baselines3 PPO/DQN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from earlyexp.harness.evaluate import evaluate
from earlyexp.harness.methods import Budget, register_method
from earlyexp.harness.records import EpisodeRecord


@register_method("random", kind="scripted", description="uniform over info['available_actions']")
def run_random(*, env_id: str, seed: int, budget: Budget, **kwargs: Any) -> list[EpisodeRecord]:
    """Pick uniformly among the available actions at every step."""
    rng = np.random.default_rng(seed)

    def act(env: Any, obs: str, info: dict) -> str:
        acts = info["available_actions"]
        return acts[int(rng.integers(len(acts)))] if acts else env.action_space.sample()

    return evaluate(env_id, act, budget.eval_tasks, desc=f"random {env_id}")


@register_method("expert", kind="scripted", description="the env's scripted oracle")
def run_expert(*, env_id: str, budget: Budget, **kwargs: Any) -> list[EpisodeRecord]:
    """Follow ``env.unwrapped.expert_action()`` (an upper bound, not a learner)."""
    return evaluate(
        env_id, lambda env, obs, info: env.unwrapped.expert_action(), budget.eval_tasks,
        desc=f"expert {env_id}",
    )  # fmt: skip


def _train_sb3(algo: str, env_id: str, seed: int, steps: int, device: str, run_dir: Path) -> Any:
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    from earlyexp.envs.control.numeric import make_numeric

    if algo == "ppo":
        venv = make_vec_env(lambda: make_numeric(env_id), n_envs=8, seed=seed)
        model: Any = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, n_epochs=4,
                         ent_coef=0.01, seed=seed, device=device, verbose=0)  # fmt: skip
    else:
        venv = make_vec_env(lambda: make_numeric(env_id), n_envs=1, seed=seed)
        model = DQN("MlpPolicy", venv, learning_starts=500, buffer_size=50_000,
                    exploration_fraction=0.5, target_update_interval=500, seed=seed,
                    device=device, verbose=0)  # fmt: skip
    model.learn(total_timesteps=steps)
    model.save(run_dir / f"{algo}.zip")
    venv.close()
    return model


def _evaluate_sb3(model: Any, env_id: str, n_tasks: int) -> list[EpisodeRecord]:
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


def _sb3(
    algo: str, env_id: str, seed: int, budget: Budget, run_dir: Path, device: str
) -> list[EpisodeRecord]:
    model = _train_sb3(algo, env_id, seed, budget.train_steps, device, run_dir)
    return _evaluate_sb3(model, env_id, budget.eval_tasks)


@register_method("ppo", kind="sb3", description="stable-baselines3 PPO on the numeric view")
def run_ppo(
    *, env_id: str, seed: int, budget: Budget, run_dir: Path, device: str, **kwargs: Any
) -> list[EpisodeRecord]:
    """Train PPO (MlpPolicy, 8 envs) on the train stream's numeric view, then evaluate."""
    return _sb3("ppo", env_id, seed, budget, run_dir, device)


@register_method("dqn", kind="sb3", description="stable-baselines3 DQN on the numeric view")
def run_dqn(
    *, env_id: str, seed: int, budget: Budget, run_dir: Path, device: str, **kwargs: Any
) -> list[EpisodeRecord]:
    """Train DQN (MlpPolicy) on the train stream's numeric view, then evaluate."""
    return _sb3("dqn", env_id, seed, budget, run_dir, device)
