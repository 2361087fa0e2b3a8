"""Each profile's prompts show the policy enough to act as the expert did.

IL learns a map from the prompt to the expert's reply. Where two decisions of one episode
have the same prompt and different expert actions, a greedy policy cannot take both: it
loops or skips a step. WebShop's ``text`` pages do not mark the chosen options, so with no
history (``window`` 0) the item page reads the same before and after each option click.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.agents.methods import get_method
from earlyexp.agents.methods.common import prompt_config
from earlyexp.agents.prompting import conversation, format_action, system_prompt, user_message
from earlyexp.harness.profiles import SINGLE_PARTY_ENVS, get_profile

BROWSER_ENVS = ("EarlyExp/FlightBooking-v0",)


def conflicting_prompts(env_id: str, window: int, episodes: int) -> list[tuple[str, str]]:
    """Expert action pairs that one prompt of an episode asks for (``[]``: none)."""
    prompt = prompt_config(get_method("il").config(window=window), "tiny")
    env, conflicts = gym.make(env_id), []
    try:
        for task in range(episodes):
            obs, info = env.reset(options={"split": "train", "task": task})
            system, turns, seen, done = system_prompt(info["task"]), [], {}, False
            while not done:
                action = env.unwrapped.expert_action()
                user = user_message(obs, info, prompt)
                key = repr(conversation(system, turns, user, window))
                if seen.setdefault(key, action) != action:
                    conflicts.append((seen[key], action))
                turns.append((user, format_action(action)))
                obs, _, term, trunc, info = env.step(action)
                done = term or trunc
    finally:
        env.close()
    return conflicts


def cases():
    for name in ("quick", "standard"):
        # every env, not only where the profile runs il by default: `--methods il --envs ...`
        # runs it anywhere with the profile's settings
        for env_id in SINGLE_PARTY_ENVS:
            marks = [pytest.mark.browser] if env_id in BROWSER_ENVS else []
            yield pytest.param(name, env_id, id=f"{name}-{env_id}", marks=marks)


@pytest.mark.parametrize(("profile", "env_id"), list(cases()))
def test_the_prompt_determines_the_expert_action(profile, env_id):
    window = get_profile(profile).config_for(get_method("il"), env_id).window
    episodes = 2 if env_id in BROWSER_ENVS else 20
    assert conflicting_prompts(env_id, window, episodes) == []


def test_webshop_text_pages_need_history():
    assert conflicting_prompts("EarlyExp/WebShop-v0", 0, 3)  # the item page hides the options
