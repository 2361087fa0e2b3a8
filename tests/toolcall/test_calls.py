import builtins

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.envs.toolcall.calls import CallError, parse_calls
from earlyexp.envs.toolcall.domains import filesystem
from earlyexp.envs.toolcall.tasks import RESPOND, bind_all, table_for

FS = table_for(filesystem.DOMAIN, ())

ATTACKS = [
    '__import__("os").system("echo hacked")',
    'os.system("echo hacked")',
    "a.b.c()",
    "ls.__class__()",
    "ls().x",
    'getattr(os, "system")("ls")',
    '(lambda: __import__("os"))()',
    "ls(path=lambda: 1)",
    "ls(path=[x for x in range(3)])",
    "ls(path={x: 1 for x in y})",
    "ls(path=(x for x in y))",
    "ls(*['/'])",
    "ls(**{'path': '/'})",
    "ls(path=f\"{__import__('os')}\")",
    'ls(path=open("/etc/passwd").read())',
    'ls(path=cat(path="/x"))',
    "ls(path=__file__)",
    "ls(path=x)",
    'ls(path="a" + "b")',
    "[ls() for _ in range(3)]",
    "import os",
    "x = ls()",
    "del ls",
    "globals()",
    'eval("1+1")',
    'exec("import os")',
    "breakpoint()",
    "__builtins__",
    "ls(path=...)",
    "ls(path=b'/')",
    "ls(path=1j)",
    "None",
    "()",
    "[]",
    "respond",
    'respond(message="hi"); ls()',
    "ls(" * 5000,
    "[" * 5000 + "]" * 5000,
]


def test_accepted_forms():
    assert [c.name for c in parse_calls('mkdir(path="/docs"); cd(path="docs")')] == ["mkdir", "cd"]
    assert [c.name for c in parse_calls('mkdir(path="/docs")\ncd(path="docs")')] == ["mkdir", "cd"]
    assert [c.name for c in parse_calls('[mkdir(path="/docs"), cd(path="docs")]')] == [
        "mkdir",
        "cd",
    ]
    (call,) = parse_calls('f("a", -2, x=[1, {"k": None}], y=True, z=+1.5)')
    assert call.args == ("a", -2) and dict(call.kwargs) == {
        "x": [1, {"k": None}],
        "y": True,
        "z": 1.5,
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ('foo(path="/")', "No such function 'foo'"),
        ("mkdir()", "missing required argument 'path'"),
        ("mkdir(path=3)", "argument 'path' must be str, got int"),
        ('mkdir(path="/a", mode=7)', "unexpected argument 'mode'"),
        ('mkdir("/a", path="/b")', "multiple values for argument 'path'"),
        ('mkdir("/a", "/b")', "takes 1 arguments, got 2"),
        ('respond(message="x"); ls()', "must be the last call"),
        ("a.b.c()", "attribute access is not allowed"),
        ('ls(path=f"{x}")', "f-strings are not allowed"),
        ('ls(path=cat(path="/x"))', "nested calls are not allowed"),
        ("ls(path=lambda: 1)", "lambdas are not allowed"),
        ("ls(*a)", "starred arguments are not allowed"),
        ("ls(path=[x for x in y])", "comprehensions are not allowed"),
    ],
)
def test_errors_teach(text, message):
    with pytest.raises(CallError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bind_all(FS, text)


def test_bool_is_not_a_number_and_ints_are_floats():
    from earlyexp.envs.toolcall.domains import bank

    table = table_for(bank.DOMAIN, ())
    with pytest.raises(CallError, match="must be float, got bool"):
        bind_all(table, 'transfer(from_account="a", to_account="b", amount=True)')
    (b,) = bind_all(table, 'transfer(from_account="a", to_account="b", amount=5)')
    assert b.kwargs["amount"] == 5


def test_docs_come_from_the_validating_table():
    text = FS.describe()
    for spec in FS.specs:
        assert spec.signature() in text
        for p in spec.params:
            assert f"{p.name} ({p.type}" in text
    assert RESPOND.signature() in text


@pytest.fixture()
def env(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must never run on agent input")

    e = gym.make("EarlyExp/ToolCall-v0")  # imports first: the import system itself uses exec
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    yield e.unwrapped
    e.close()


def fs_task(env, template="organize"):
    for i in range(500):
        env.reset(options={"split": "test", "task": i})
        if env.task.domain == "filesystem" and env.task.template == template:
            return i
    raise AssertionError("no such task")


def test_calls_reaching_python_internals_are_invalid_and_change_nothing(env):
    fs_task(env)
    for text in ATTACKS:
        before = env.state_fingerprint()
        obs, reward, term, trunc, info = env.step(text)
        assert info["action_valid"] is False, text
        assert env.state_fingerprint() == before, text
        assert info["feedback"] in obs and not term
        env._steps = 0  # keep the budget from running out


def test_an_action_is_applied_whole_or_not_at_all(env):
    fs_task(env)
    before = env.state_fingerprint()
    obs, _, _, _, info = env.step('mkdir(path="/fresh"); cd(path="/nowhere")')
    assert info["action_valid"] is False and "No such directory: /nowhere" in obs
    assert "No call of this action was applied" in obs
    assert env.state_fingerprint() == before
    obs, _, _, _, info = env.step('mkdir(path="/fresh"); cd(path="/fresh"); pwd()')
    assert info["action_valid"] and obs.count("> ") == 3 and "\n/fresh" in obs
    assert "/fresh" in env.state["sim"]["dirs"]
