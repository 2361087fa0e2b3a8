"""The action rule, prompts and the chat encoder's loss mask."""

from __future__ import annotations

import pytest

from earlyexp.agents.prompting import (
    FORMAT_ERROR,
    PromptConfig,
    conversation,
    format_action,
    parse_action,
    user_message,
)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("<action>Up</action>", "Up"),
        ("think <action>Up</action> no, <action> Left </action> done", "Left"),
        ("<action>search[red shoes]</action><|end|>", "search[red shoes]"),
        ("<action>Down", "Down"),  # a server cut the closing tag as a stop string
        ("<action></action>", ""),
        ("Up", None),
        ("", None),
        ("</action>Up", None),
    ],
)
def test_parse_action_reads_the_last_action_tag(text, action):
    assert parse_action(text) == action


def test_format_action_round_trips():
    for a in ["Up", "click[e12]", "type[3][Ana Ruiz]", ""]:
        assert parse_action(format_action(a)) == a


def test_user_message_shows_actions_format_error_and_cuts_long_observations():
    info = {"available_actions": [f"a{i}" for i in range(40)]}
    cfg = PromptConfig(max_observation_chars=10, max_actions_shown=3)
    msg = user_message("x" * 50, info, cfg, format_error=True)
    assert msg.startswith(FORMAT_ERROR)
    assert "x" * 10 in msg and "x" * 11 not in msg
    assert "Available actions: a0, a1, a2 (+37 more)" in msg


def test_conversation_keeps_the_window():
    turns = [(f"u{i}", f"a{i}") for i in range(5)]
    msgs = conversation("sys", turns, "now", window=2)
    assert [m["content"] for m in msgs] == ["sys", "u3", "a3", "u4", "a4", "now"]
    assert [m["content"] for m in conversation("sys", turns, "now", window=0)] == ["sys", "now"]


def test_prompt_config_rejects_bad_values():
    with pytest.raises(ValueError, match="Expect window"):
        PromptConfig(window=-1)
