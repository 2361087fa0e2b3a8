"""Reflection providers: grounded texts carry the env's facts, model texts are checked, HTTP fails soft."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from earlyexp.agents.policy import Completion, SamplingParams
from earlyexp.agents.reflect import (
    GroundedReflector,
    HTTPReflector,
    PolicyReflector,
    Reflection,
    ReflectionProvider,
    ReflectionRequest,
    Step,
    dedupe_sentences,
    finish_reflection,
    make_reflector,
    reflection_messages,
    validate_reflection,
)

TASK = "Move the agent to the goal within 8 steps. Valid actions: Up, Down, Left, Right."
JUMP = "Unknown action 'Jump'. Expected one of: Up, Down, Left, Right."
WALL = "The agent did not move."
HOLE = "The agent fell into the hole."
LEAKS = ("expert", "action 1", "action 2", "option", "alternative 1")


def sr_request(k: int = 4) -> ReflectionRequest:
    alternatives = [
        Step("Up", WALL, valid=False),
        Step("Left", WALL, valid=False),
        Step("Jump", JUMP, valid=False),
        Step("Right", "The agent moved Right."),
        Step("Down", "The agent moved Down."),  # the expert action itself: never an alternative
    ]
    return ReflectionRequest(
        "alternatives",
        TASK,
        observation="DADD\nDDDC\nCDDD\nCCDB",
        action="Down",
        outcome="The agent moved Down.",
        alternatives=alternatives[:k] + alternatives[4:] if k else [],
    )


STEPS = [
    Step("Up", WALL, valid=False),
    Step("Up", WALL, valid=False),
    Step("Jump", JUMP, valid=False),
    Step("Down", "The agent moved Down."),
    Step("Right", "The agent moved Right."),
    Step("Right", HOLE),
]
RUBRIC = [
    {"criterion": "avoid the holes", "met": False},
    {"criterion": "reach the goal", "met": False},
]


def attempt_request(memory: str = "") -> ReflectionRequest:
    return ReflectionRequest("attempt", TASK, steps=STEPS, score=0.0, rubric=RUBRIC, memory=memory)


def revision_request() -> ReflectionRequest:
    rubric = [
        {"criterion": "avoid the holes", "met": True},
        {"criterion": "reach the goal", "met": False},
    ]
    return ReflectionRequest("revision", TASK, steps=STEPS[2:5], score=0.5, rubric=rubric)


def assert_no_leak(text: str) -> None:
    low = text.lower()
    assert not [w for w in LEAKS if w in low], text


def test_grounded_sr_text_quotes_the_outcomes_without_leaks_or_repeats():
    request = sr_request()
    (r,) = GroundedReflector().reflect([request])
    assert r.ok and r.provider == "grounded" and r.action == "Down" and not r.error
    assert r.text.startswith('I choose "Down", which I expect to give "The agent moved Down"')
    assert '"Up" and "Left" were rejected ("The agent did not move")' in r.text  # merged
    assert "Unknown action 'Jump'" in r.text and '"Right" gave "The agent moved Right"' in r.text
    assert "When tried," in r.text and r.text.count('"Down"') == 2  # not listed as its own rival
    assert r.text.count(WALL.rstrip(".")) == 1
    assert_no_leak(r.text)
    assert validate_reflection(r.text, request) == []
    assert len(r.text) <= 900


def test_grounded_sr_with_no_alternatives_grounds_in_the_task_and_is_capped():
    (k0,) = GroundedReflector().reflect([sr_request(0)])
    assert k0.text == (
        'I choose "Down", which I expect to give "The agent moved Down". '
        "It is a step toward the task: Move the agent to the goal within 8 steps."
    )
    many = ReflectionRequest(
        "alternatives",
        TASK,
        action="a",
        alternatives=[Step(f"b{i}", f"message {i} " * 10) for i in range(20)],
    )
    (short,) = GroundedReflector(max_alternatives=20, max_chars=300).reflect([many])
    assert len(short.text) <= 300 and short.text.endswith('So "a" is the better choice here.')
    assert validate_reflection(short.text, many) == []


def test_grounded_attempt_text_lists_unmet_items_rejections_last_feedback_and_memory():
    request = attempt_request(memory="Go Down first, then Right along the bottom row.")
    (r,) = GroundedReflector().reflect([request])
    assert r.ok and r.provider == "grounded" and r.action is None
    lines = r.text.splitlines()
    assert lines[0] == "My last attempt scored 0.00 after 6 steps:"
    assert '- "Up": "The agent did not move" (rejected, 2 times)' in lines  # runs merged
    assert f'- "Jump": "{JUMP.rstrip(".")}" (rejected)' in lines
    assert "Not met: avoid the holes; reach the goal." in lines
    strategy = next(line for line in lines if line.startswith("Strategy: "))
    assert "reach the goal" in strategy and '"Jump"' in strategy and HOLE.rstrip(".") in strategy
    assert (
        lines[-1]
        == "What worked in an earlier success: Go Down first, then Right along the bottom row."
    )
    assert_no_leak(r.text)
    assert validate_reflection(r.text, request) == []


def test_grounded_revision_is_a_checklist_of_unmet_items_to_fix_and_met_ones_to_keep():
    request = revision_request()
    (r,) = GroundedReflector().reflect([request])
    lines = r.text.splitlines()
    assert lines[0] == "Revise the previous attempt (score 0.50)."
    assert "- [ ] reach the goal" in lines and "- [x] avoid the holes" in lines
    assert "- [ ] avoid the holes" not in lines
    assert lines.index("- [ ] reach the goal") < lines.index("- [x] avoid the holes")
    assert f'Avoid "Jump": the env answered "{JUMP.rstrip(".")}".' in lines
    assert lines[-1] == 'The attempt ended with "The agent moved Right".'
    assert_no_leak(r.text)
    assert validate_reflection(r.text, request) == []


def test_providers_keep_batch_order():
    requests = [sr_request(k) for k in (0, 4, 2)] + [attempt_request(), revision_request()]
    grounded = GroundedReflector()
    assert grounded.reflect(requests) == [grounded.reflect([r])[0] for r in requests]
    assert grounded.reflect([]) == []

    class Echo:
        """A policy that answers with the first line of each prompt."""

        tokenizer = None

        def complete(self, prompts, sampling):
            return [
                Completion(p.messages[-1]["content"].split("\n")[0] + " is hard.") for p in prompts
            ]

    tasks = [ReflectionRequest("attempt", f"task number {i}.") for i in range(5)]
    out = PolicyReflector(Echo()).reflect(tasks)
    assert [r.text for r in out] == [f"Task: task number {i}. is hard." for i in range(5)]
    assert {r.provider for r in out} == {"policy"}
    assert all(isinstance(p, ReflectionProvider) for p in (grounded, PolicyReflector(Echo())))


def test_finish_reflection_splits_the_action_strips_repeats_and_fails_leaks():
    request = sr_request()
    raw = (
        "Moving Down gets me closer to the goal. Up would not move me. "
        "Moving Down gets me closer to the goal. <action>Down</action> trailing junk <action>Up"
    )
    r = finish_reflection(raw, request, "policy")
    assert r.ok and r.action == "Down" and r.provider == "policy"
    assert r.text == "Moving Down gets me closer to the goal. Up would not move me."
    leak = finish_reflection("The expert action is better than Action 2.", request, "policy")
    assert not leak.ok and "'expert'" in leak.error and "'Action 2'" in leak.error
    assert leak.text  # kept for inspection
    empty = finish_reflection("   ", attempt_request(), "policy")
    assert not empty.ok and empty.error == "empty reflection" and empty.action is None


def test_validate_reflection_flags_label_leaks_and_repeated_sentences():
    request = sr_request()
    assert validate_reflection('Down reaches the goal. "Up" was rejected.', request) == []
    problems = validate_reflection("I pick Action 1 like the expert's choice.", request)
    assert problems == ['label leak: "expert\'s"', "label leak: 'Action 1'"]
    text = "Up does nothing here.\nRight is fine. Up does nothing here!"
    assert validate_reflection(text, request) == ["repeated sentence: 'Up does nothing here!'"]
    assert dedupe_sentences(text) == "Up does nothing here.\nRight is fine."
    assert validate_reflection("Ok. Ok. Ok.", request) == []  # too short to count as a repeat
    # a label the env itself uses is not a leak
    shop = ReflectionRequest("alternatives", "Buy it.", action="click Option 2")
    assert validate_reflection("I should click Option 2 to buy it.", shop) == []


def test_prompts_forbid_the_pitfalls_and_number_the_alternatives_with_their_outcomes():
    (system, user) = reflection_messages(sr_request(), max_words=50)
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert "at most 50 words" in text and '"Down" is the better choice' in text
    assert 'Never write "expert", "Action 1"' in text and "did when tried" in text
    assert "1. Up: The agent did not move (rejected)" in text and ". Down:" not in text
    assert text.endswith("<action>Down</action>")
    k0 = reflection_messages(sr_request(0))[1]["content"]
    assert "Other actions" not in k0 and "right step toward the task" in k0
    erl = reflection_messages(attempt_request("Rule: holes end the game."))[1]["content"]
    assert "- not met: reach the goal" in erl and "Strategy:" in erl and "holes end the game" in erl
    herl = reflection_messages(revision_request())[1]["content"]
    assert "- met: avoid the holes" in herl and "revision guide" in herl


def test_requests_and_make_reflector_validate_their_arguments():
    with pytest.raises(ValueError, match="Expect kind in"):
        ReflectionRequest("plan", TASK)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expect the expert action"):
        ReflectionRequest("alternatives", TASK)
    assert Step.from_info("Up", {"feedback": WALL, "action_valid": False}) == Step(
        "Up", WALL, False
    )
    assert isinstance(make_reflector("grounded", max_chars=100), GroundedReflector)
    with pytest.raises(ValueError, match="Expect a reflector in .*actually: 'gpt'"):
        make_reflector("gpt")
    with pytest.raises(ValueError, match="Expect a policy"):
        make_reflector("policy")
    with pytest.raises(ValueError, match="Expect a server URL"):
        make_reflector("http")
    http = make_reflector("http", url="http://127.0.0.1:9/v1#judge")
    assert isinstance(http, HTTPReflector) and http.model == "judge" and http.name == "http"
    assert http.client.url == "http://127.0.0.1:9/v1/chat/completions"
    http.close()


def test_module_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import earlyexp.agents.reflect"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_policy_reflector_on_the_tiny_policy(policy):
    requests = [sr_request(), attempt_request(), revision_request()]
    sampling = SamplingParams(max_new_tokens=6, temperature=1.0, seed=0, stop=())
    out = make_reflector("policy", policy=policy, sampling=sampling).reflect(requests)
    assert len(out) == 3 and all(isinstance(r, Reflection) for r in out)
    assert {r.provider for r in out} == {"policy"}
    assert all(r.ok or r.error for r in out)


def test_http_reflector_against_our_server_matches_the_policy(policy):
    from earlyexp.agents.serve import ChatServer

    requests = [sr_request(), attempt_request(), revision_request()]
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0, stop=())
    direct = PolicyReflector(policy, greedy).reflect(requests)
    with ChatServer(policy, name="tiny-test") as server:
        reflector = HTTPReflector(server.url, "tiny-test", sampling=greedy, max_concurrency=2)
        try:
            over_http = reflector.reflect(requests)
        finally:
            reflector.close()
    assert [r.provider for r in over_http] == ["http"] * 3
    assert [(r.text, r.ok, r.action) for r in over_http] == [
        (r.text, r.ok, r.action) for r in direct
    ]
    assert not any(r.error.startswith("POST") for r in over_http)


def test_http_reflector_records_a_dead_server_after_retries_without_raising():
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reflector = HTTPReflector(
        f"http://127.0.0.1:{port}/v1", "x", retries=2, backoff=0.01, timeout=2
    )
    start = time.perf_counter()
    out = reflector.reflect([attempt_request(), sr_request()])
    reflector.close()
    assert time.perf_counter() - start < 10
    assert [(r.ok, r.text, r.provider) for r in out] == [(False, "", "http")] * 2
    assert all("after 3 attempts" in r.error for r in out)


def test_retry_prompt_leaves_out_the_oldest_attempts_to_fit():
    """ERL's no-reflection prompt is capped like a written one; the latest attempt stays."""
    from earlyexp.agents.reflect import RETRY_INSTRUCTION, Attempt, retry_prompt

    attempts = [Attempt(steps=STEPS, score=0.0, task=f"{TASK} (try {k})") for k in range(8)]
    request = ReflectionRequest("rulebook", TASK, system="Task: reach the goal.", attempts=attempts)
    whole = retry_prompt(request)
    capped = retry_prompt(request, max_chars=len(whole) // 3)
    assert len(capped) <= len(whole) // 3 < len(whole)
    assert capped.startswith("Task: reach the goal.") and RETRY_INSTRUCTION in capped
    assert "(try 7)" in capped and "(try 0)" not in capped
    lone = retry_prompt(request, max_chars=10)  # too small for one attempt: the latest is kept
    assert "(try 7)" in lone and "(try 6)" not in lone
