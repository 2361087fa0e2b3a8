import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

from earlyexp.envs import env_ids  # noqa: E402
from earlyexp.envs.control.numeric import make_numeric  # noqa: E402

CONTROL = env_ids("control")


@pytest.mark.parametrize("env_id", CONTROL)
def test_sb3_check_env_accepts_numeric_view(env_id):
    view = make_numeric(env_id)
    check_env(view, warn=True)
    view.close()


@pytest.mark.parametrize("env_id", CONTROL)
def test_numeric_view_matches_text_env(env_id):
    view = make_numeric(env_id, split="ood")
    obs, info = view.reset(options={"task": 4})
    raw = view.env.unwrapped
    assert obs.shape == view.observation_space.shape and obs.dtype == np.float32
    planes = obs.reshape(view.planes, view.canvas, view.canvas)
    n = raw.task.size
    assert planes[-1, :n, :n].sum() == 0 and planes[-1].sum() == view.canvas**2 - n * n
    assert planes[0].sum() == 1  # exactly one agent
    done = False
    while not done:  # the expert's moves, through the numeric actions, solve the task
        action = ["Up", "Down", "Left", "Right"].index(raw.expert_action())
        obs, reward, term, trunc, info = view.step(action)
        done = term or trunc
    assert info["success"] and reward == 1.0
    with pytest.raises(ValueError, match="Discrete"):
        view.step(7)


def test_short_ppo_run_changes_the_policy_parameters():
    view = make_numeric("EarlyExp/FrozenLake-v0")
    model = PPO("MlpPolicy", view, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=128)
    after = model.policy.state_dict()
    changed = [k for k in before if not np.allclose(before[k].numpy(), after[k].numpy())]
    trainable = [k for k, p in model.policy.named_parameters() if p.requires_grad]
    assert set(trainable) <= set(changed)
    view.close()


def test_numeric_view_rejects_text_only_envs():
    import gymnasium as gym

    from earlyexp.envs.control.numeric import NumericView

    class Fake(gym.Env):
        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(ValueError, match="control env"):
        NumericView(Fake())
