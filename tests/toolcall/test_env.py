from collections import Counter

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.envs.toolcall.tasks import mentions, refuses


@pytest.fixture(scope="module")
def env():
    e = gym.make("EarlyExp/ToolCall-v0")
    yield e.unwrapped
    e.close()


def find(env, split, **want):
    for i in range(500):
        env.reset(options={"split": split, "task": i})
        if all(getattr(env.task, k) == v for k, v in want.items()):
            return i
    raise AssertionError(f"no task with {want}")


def run_expert(env):
    while True:
        obs, reward, term, trunc, info = env.step(env.expert_action())
        if term or trunc:
            return obs, reward, info


def test_panels_cover_domains_and_bfcl_categories(env):
    test_panel, ood_panel = env.panel("test"), env.panel("ood")
    test = Counter((t.domain, t.category) for t in test_panel)
    assert {d for d, _ in test} == {"filesystem", "bank", "travel"} and {c for _, c in test} == {
        "base"
    }
    ood = Counter(t.category for t in ood_panel)
    assert set(ood) == {"long_context", "missing_function", "missing_parameter"}
    assert min(ood.values()) > 120
    assert any(len(t.turns) == 2 for t in test_panel)


def test_second_user_turn_after_the_first_goal(env):
    find(env, "test", template="backup")
    obs, *_ = env.step(env.expert_action())
    obs, *_ = env.step(env.expert_action())
    obs, reward, term, _, info = env.step(env.expert_action())  # respond ends turn 1
    assert not term and "[Turn 2/2] User: Thanks. Now delete" in obs
    obs, reward, info = run_expert(env)
    assert reward == 1.0 and info["success"]


def test_missing_parameter_guessing_fails_asking_succeeds(env):
    find(env, "ood", category="missing_parameter", template="move_money")
    snap = env.snapshot()
    src = "checking" if "from my checking" in env.task.turns[0].user else "savings"
    dst = "savings" if src == "checking" else "checking"
    env.step(f'transfer(from_account="{src}", to_account="{dst}", amount=1.0)')
    env.step('respond(message="Done, I moved $1.")')
    obs, reward, info = run_expert(env)
    assert not info["success"]
    items = {i["criterion"]: i["met"] for i in info["rubric"]}
    assert items["turn 1: asked for the amount before acting"] is False
    env.restore(snap)
    obs, reward, info = run_expert(env)
    assert info["success"] and reward == 1.0


def test_missing_function_is_hidden_and_refusal_is_the_right_move(env):
    find(env, "ood", category="missing_function", template="pay")
    assert "pay_bill" not in env.instruction()
    snap = env.snapshot()
    obs, _, _, _, info = env.step('pay_bill(payee="x", amount=1.0)')
    assert info["action_valid"] is False and "No such function 'pay_bill'" in obs
    obs, reward, term, _, info = env.step('respond(message="Sure, it is paid.")')
    assert term and not info["success"] and reward < 1.0
    env.restore(snap)
    obs, reward, info = run_expert(env)
    assert info["success"]


def test_long_context_outputs_are_large(env):
    for template in ("archive", "lookup", "cheapest"):
        find(env, "ood", category="long_context", template=template)
        obs, *_ = env.step(env.expert_action())
        assert len(obs) > 3000, template


def test_wrong_answer_is_not_a_success(env):
    find(env, "test", template="balance")
    obs, reward, term, _, info = env.step('respond(message="Your balance is $0.01.")')
    assert term and not info["success"] and 0 < reward < 1


def test_answer_matching():
    assert mentions("You have $1,234.50 left.", "$1,234.50")
    assert not mentions("You have $11,234.50 left.", "$1,234.50")
    assert mentions("The file has 7 lines.", "7 lines") and not mentions("17 lines", "7 lines")
    assert refuses("Sorry, I can’t do that.") and not refuses("Done!")


def test_available_actions_are_call_templates(env):
    env.reset(options={"split": "test", "task": 0})
    acts = env.available_actions()
    assert 'respond(message="<message>")' in acts
    assert all(a.endswith(")") for a in acts)


def test_action_help_is_the_episode_function_table(env):
    find(env, "ood", category="missing_function", template="cancel")
    text = env.action_help()
    assert "search_flights(origin: str, destination: str, date: str)" in text
    assert "cancel_booking" not in text and "respond(message: str)" in text


@pytest.mark.parametrize(
    "action",
    [
        'respond(message="\\ud800")',
        'respond(message="ok \\udfff")',
        'write_file(path="/home/user/x.txt", content="\\ud83d\\ude00")',
        'respond(message=["\\ud800"])',
        'respond(message={"k": "\\ud800"})',
    ],
)
def test_lone_surrogate_arguments_are_invalid_with_a_message(env, action):
    env.reset(options={"split": "test", "task": 0})
    before = env.state_fingerprint()
    obs, reward, term, trunc, info = env.step(action)
    assert info["action_valid"] is False and not term and reward == 0.0
    assert "not valid Unicode text" in obs and "surrogate" in obs
    obs.encode("utf-8")
    assert env.state_fingerprint() == before
    obs, _, _, _, info = env.step('respond(message="\\U0001F600 done")')  # a real character
    assert info["action_valid"] is True and "😀 done" in obs
