import os
import pickle
import subprocess
import sys

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.envs.searchqa.corpus import FORMAT, get_corpus
from earlyexp.envs.searchqa.questions import resolve
from earlyexp.envs.searchqa.schema import HELD_OUT
from earlyexp.envs.searchqa.text import answer_reward, f1_score, normalize_answer


@pytest.fixture(scope="module")
def env():
    e = gym.make("EarlyExp/SearchQA-v0")
    yield e.unwrapped
    e.close()


def pairs(task):
    return set(zip(task.relations, task.relations[1:], strict=False))


def test_squad_normalization_and_reward():
    assert normalize_answer("  The Glass-Harbor! ") == "glassharbor"
    assert normalize_answer("An Apple, a day") == "apple day"
    assert answer_reward("the Port Ardin.", "Port Ardin") == (1.0, True, 1.0)
    reward, exact, f1 = answer_reward("Ardin", "Port Ardin")
    assert not exact and f1 == pytest.approx(2 / 3) and reward == pytest.approx(2 / 3)
    assert answer_reward("Velm River basin area", "Velm River")[0] == pytest.approx(
        f1_score("Velm River basin area", "Velm River")
    )
    assert (
        answer_reward("Port of somewhere else entirely here", "Port Ardin")[0] == 0.0
    )  # F1 0.25 < 0.3
    assert answer_reward("Oslo", "Port Ardin") == (0.0, False, 0.0)


def test_names_are_unique_and_every_question_resolves_to_its_answer(env):
    world = env.corpus.world
    assert all(len(ids) == 1 for ids in world.by_name.values())
    for split in ("test", "ood"):
        for task in env.panel(split)[:200]:
            if task.kind == "comparison":
                continue
            assert resolve(world, task.hops[0].subject, task.relations) == {task.answer}


def test_splits_follow_the_card(env):
    test, ood = env.panel("test"), env.panel("ood")
    assert all(t.kind == "chain2" and len(t.hops) == 2 and not pairs(t) & HELD_OUT for t in test)
    kinds = {t.kind for t in ood}
    assert kinds == {"chain3", "chain4", "comparison", "held_out"}
    for t in ood:
        if t.kind == "held_out":
            assert len(t.hops) == 2 and pairs(t) & HELD_OUT
        if t.kind.startswith("chain"):
            assert len(t.hops) == int(t.kind[-1])
    seen_ood = {p for t in ood for p in pairs(t)}
    assert HELD_OUT <= seen_ood


def test_comparisons_pick_the_right_side(env):
    world = env.corpus.world
    comps = [t for t in env.panel("ood") if t.kind == "comparison"][:30]
    assert comps
    for t in comps:
        assert t.answer in {world.entities[h.subject_id].name for h in t.hops} | {
            h.value for h in t.hops
        }


def test_search_budget_and_sixth_search(env):
    env.reset(options={"split": "test", "task": 0})
    assert env.max_steps == 5 + 3
    for i in range(5):
        obs, _, term, trunc, info = env.step(f"search[query number {i}]")
        assert info["action_valid"] and not term
    before = env.state_fingerprint()
    obs, reward, term, trunc, info = env.step("search[one more]")
    assert info["action_valid"] is False and "budget spent" in info["feedback"]
    assert env.state_fingerprint() == before
    assert info["available_actions"] == ["answer[<text>]"]
    assert env.expert_action() == f"answer[{env.task.answer}]"
    obs, reward, term, trunc, info = env.step(env.expert_action())
    assert term and reward == 1.0 and info["success"]


def test_malformed_actions(env):
    env.reset(options={"split": "test", "task": 1})
    for bad in [
        "search[]",
        "answer[]",
        "search[???]",
        "search]",
        "answer",
        "find[x]",
        "search[a" + "b" * 600 + "]",
    ]:
        obs, reward, term, trunc, info = env.step(bad)
        assert info["action_valid"] is False and not term, bad


def test_rubric_tracks_retrieved_hops(env):
    env.reset(options={"split": "test", "task": 2})
    obs, reward, term, _, info = env.step(f"answer[{env.task.answer}]")
    assert term and reward == 1.0
    assert [i["met"] for i in info["rubric"]] == [False] * len(env.task.hops) + [True]
    env.reset(options={"split": "test", "task": 2})
    while True:
        obs, reward, term, trunc, info = env.step(env.expert_action())
        if term or trunc:
            break
    assert all(i["met"] for i in info["rubric"]) and info["score_details"]["exact"]
    assert env.task.question in obs


def test_partial_answer_scores_f1(env):
    for i in range(50):
        env.reset(options={"split": "test", "task": i})
        if len(env.task.answer.split()) == 2:
            break
    obs, reward, term, _, info = env.step(f"answer[{env.task.answer.split()[1]}]")
    assert term and 0.3 <= reward < 1.0 and info["success"] is False


def test_pickle_drops_the_index(env):
    env.reset(options={"split": "ood", "task": 3})
    data = pickle.dumps(env)
    clone = pickle.loads(data)
    assert clone.corpus is env.corpus  # reacquired from the process cache
    assert len(data) < 50_000


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_searches"):
        gym.make("EarlyExp/SearchQA-v0", max_searches=0)
    with pytest.raises(ValueError, match="n_articles"):
        gym.make("EarlyExp/SearchQA-v0", n_articles=10)


BUILD = """
import sys
from earlyexp.envs.searchqa.corpus import FORMAT, get_corpus
c = get_corpus(5, 400)
print(c.search("river flows", 5))
"""


def test_disk_cache_is_written_atomically_by_racing_processes(tmp_path):
    env = {**os.environ, "EARLYEXP_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", BUILD], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    folder = tmp_path / "searchqa"
    (entry,) = folder.iterdir()  # one index, no temporary folders left behind
    assert entry.name.startswith(f"{FORMAT}-s5-n400-")
    again = subprocess.run(
        [sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, check=True
    )
    assert again.stdout == outs[0]


def test_in_memory_corpus_searches_its_passages():
    memory = get_corpus(9, 300, cache=False)
    assert memory.index.num_docs == len(memory.world.passages)
    hits = memory.search("capital", 5)
    assert hits and all("capital" in memory.passage(p).text.lower() for p in hits[:1])


def test_unwritable_cache_falls_back_to_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("EARLYEXP_CACHE", str(blocker))
    corpus = get_corpus(11, 200)
    assert corpus.index.num_docs == len(corpus.world.passages) and corpus.search("born", 3)


def test_any_query_text_searches_without_error(env):
    import numpy as np

    rng = np.random.default_rng(0)
    pool = list("abcxyz019 ") + [
        "中",
        "é",
        "ß",
        "🙂",
        "AND",
        "OR",
        "NOT",
        ":",
        '"',
        "*",
        "~",
        "^",
        "(",
        ")",
        "-",
        "+",
        "\\",
    ]
    env.reset(options={"split": "test", "task": 4})
    snap = env.snapshot()
    for _ in range(300):
        query = "".join(rng.choice(pool, size=int(rng.integers(1, 30))))
        obs, reward, term, trunc, info = env.step(f"search[{query}]")
        assert not term and isinstance(obs, str)
        env.restore(snap)


@pytest.mark.slow
def test_a_larger_world_keeps_the_expert_perfect():
    e = gym.make("EarlyExp/SearchQA-v0", n_articles=20_000, cache=False)
    raw = e.unwrapped
    for split in ("test", "ood"):
        for i in range(0, 500, 10):
            e.reset(options={"split": split, "task": i})
            while True:
                obs, reward, term, trunc, info = e.step(raw.expert_action())
                if term or trunc:
                    break
            assert info["success"], (split, i, raw.task.question)
    e.close()
