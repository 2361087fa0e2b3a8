"""EarlyExp/SearchQA-v0: answer multi-hop questions by searching a generated encyclopedia."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec, ParseError, echo
from earlyexp.envs.core.base import Evaluation, Outcome, TextEnv, clip, fit_lines
from earlyexp.envs.core.search import query_terms
from earlyexp.envs.searchqa.corpus import Corpus, get_corpus
from earlyexp.envs.searchqa.questions import SearchQATask, generate_task
from earlyexp.envs.searchqa.schema import RELATIONS
from earlyexp.envs.searchqa.text import answer_reward

GRAMMAR = ActionGrammar(
    (
        ActionSpec(
            "search",
            ("query",),
            "search the encyclopedia (BM25); shows the top passages and uses one search",
            ("search[Port Ardin population]", "search[director of The Glass Harbor]"),
        ),
        ActionSpec(
            "answer",
            ("text",),
            "give the final answer (a name or a number); ends the episode",
            ("answer[Port Ardin]", "answer[1954]"),
        ),
    )
)
MAX_QUERY_CHARS = 500
MAX_ANSWER_CHARS = 300
EXTRA_STEPS = 3
"""Step budget = max_searches + 1 answer + 2 spare steps for malformed actions."""
ANSWERED = "You answered: "
_PASSAGE = re.compile(r"\[(\d+)\] ([^:\n]*): (.*)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class EpisodeState(NamedTuple):
    """Immutable episode state (snapshots copy nothing)."""

    searches: int = 0
    retrieved: tuple[int, ...] = ()
    last: tuple[int, ...] = ()
    last_query: str = ""
    answer: str | None = None


def _passage_lines(passages: list[re.Match[str]], room: int) -> list[str]:
    """``[i] Title: first sentence`` per passage, then later sentences in turns while they fit.

    Every passage gets its first sentence (cut to an equal share of ``room`` when needed);
    what room is left goes to second sentences, then third ones, in passage order.
    """
    sentences = [_SENTENCE_END.split(m.group(3)) for m in passages]
    share = max(40, room // len(passages) - 1)
    lines = [
        clip(f"[{m.group(1)}] {m.group(2)}: {s[0]}", share)
        for m, s in zip(passages, sentences, strict=True)
    ]
    whole = [line.endswith(s[0]) for line, s in zip(lines, sentences, strict=True)]
    room -= sum(len(line) + 1 for line in lines)
    for k in range(1, max(len(s) for s in sentences)):
        for i, s in enumerate(sentences):
            if whole[i] and k < len(s) and len(s[k]) < room:
                lines[i], room = f"{lines[i]} {s[k]}", room - len(s[k]) - 1
            else:
                whole[i] = False
    return lines


class SearchQAEnv(TextEnv[SearchQATask]):
    """Multi-hop question answering with a search tool, over a generated encyclopedia.

    ## Description
    A seeded encyclopedia of people, cities, countries, universities, companies, films, books
    and rivers (3,000 articles by default, 100k and more on request) with typed relations
    (born in, studied at, directed by, founded by, headquartered in, located in, flows through,
    rises in, capital of, ...) and numeric attributes (years, populations, lengths), written
    as short articles in varied prose and cut into passages of up to three sentences. Each
    question follows a chain of relations from a named entity ("Where was the director of
    The Glass Harbor born?") and has exactly one answer, checked at generation (see
    ``earlyexp.envs.searchqa.questions``). This is the shape of the Search-R1 / HotpotQA
    setting of Early Experience and ERL, with a world whose answers can be verified.

    ## Observation
    The question, the env's message about the last action, the passages of the last search
    (``[i] Title: text``, top ``top_k``) and the number of searches left. ``summarize`` (the
    IWM next-state text, at most 500 characters) drops the question and, after a search, keeps
    each passage's title and first sentences; after an answer or an invalid action (the
    passages are then old) it keeps the message and the searches left.

    ## Action
    ``search[query]`` runs a BM25 search (the shared tantivy index, same library as WebShop)
    over the passages and uses one search; ``answer[text]`` ends the episode. Examples:
    ``search[The Glass Harbor director]``, ``answer[Port Ardin]``, ``answer[1954]``.
    Names are case-insensitive. Malformed actions (``search]``, ``search[]``, ``answer[]``,
    unknown words, queries without a single word character) are invalid: nothing changes,
    ``info["action_valid"]`` is False, the step counts toward the budget. A search after the
    ``max_searches`` budget is spent is also invalid: the observation says the budget is spent.

    ## Reward
    Sparse. At the end: 1 when the normalized answer (SQuAD normalization: lower case, no
    punctuation, no a/an/the) equals the truth, else the token F1 when F1 >= 0.3, else 0.
    ``success`` is exact match. Rubric: one item per hop, met when some search returned a
    passage stating that hop's fact (its entity or value, e.g. "the director of X is Y"), and
    the final answer. ``score_details``: ``exact``, ``f1``, ``prediction``, ``answer``,
    ``searches``, ``kind``, ``hops``.

    ## Episode end
    Terminated by ``answer[...]``. Truncated after ``max_searches + 3`` steps (8 by default:
    five searches, the answer and two spare steps for malformed actions); an unanswered
    episode scores 0.

    ## Splits
    ``train``: a procedural stream of 2-hop questions whose relation composition is not held
    out. ``test``: 500 fixed questions from the same distribution. ``ood``: 500 fixed
    questions: 3-hop chains (30%), 4-hop chains (25%), comparisons "which was founded
    earlier / which river is longer", half of them through a bridge relation (25%), and 2-hop
    compositions held out of train and test (20%; ``schema.HELD_OUT``, e.g. the university
    the director of a film attended, the birth year of a book's author).

    ## Arguments
    ``gym.make("EarlyExp/SearchQA-v0", world_seed=0, n_articles=3000, max_searches=5,
    top_k=5, cache=True, max_steps=None)``. ``cache`` keeps the index under
    ``$EARLYEXP_CACHE/searchqa`` (default ``~/.cache/earlyexp``). The expert needs
    ``max_searches >= 4`` for the longest ood questions.

    ## Version history
    * v0: initial version.
    * v0 (same tasks and observations): ``summarize``, the next-state text of IWM.
    """

    grammar = GRAMMAR
    SUMMARY_CHARS = 500

    def __init__(
        self,
        world_seed: int = 0,
        n_articles: int = 3000,
        max_searches: int = 5,
        top_k: int = 5,
        cache: bool = True,
        render_mode: str | None = None,
        max_steps: int | None = None,
    ) -> None:
        for name, value, low in (("max_searches", max_searches, 1), ("top_k", top_k, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"Expect {name} to be an int >= {low}, actually: {value!r}")
        super().__init__(render_mode=render_mode, max_steps=max_steps)
        self.world_seed, self.n_articles = int(world_seed), int(n_articles)
        self.max_searches, self.top_k, self.cache = max_searches, top_k, cache
        self.corpus: Corpus = get_corpus(self.world_seed, self.n_articles, cache)
        self.state = EpisodeState()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("corpus")  # holds the tantivy index, which cannot be pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.corpus = get_corpus(self.world_seed, self.n_articles, self.cache)

    @property
    def family(self) -> str:
        """Task distribution name: the world and the retrieval depth shape the questions."""
        return f"SearchQA-v0/s{self.world_seed}-n{self.n_articles}-k{self.top_k}"

    def make_task(self, rng: np.random.Generator, split: str) -> SearchQATask:
        """See :func:`earlyexp.envs.searchqa.questions.generate_task`."""
        return generate_task(self.corpus, rng, split, self.top_k)

    def _budget(self, task: SearchQATask) -> int:
        return self.max_searches + EXTRA_STEPS

    def _begin(self, task: SearchQATask) -> str:
        self.state = EpisodeState()
        return "Use search[query] to look things up, then answer[text]."

    def instruction(self) -> str:
        """The question and the tools."""
        assert self.task is not None
        return (
            f"Answer the question: {self.task.question} You can search an encyclopedia "
            f"at most {self.max_searches} times with search[query]; reply with answer[text]."
        )

    def available_actions(self) -> list[str]:
        """Templates of the open action space (search only while searches are left)."""
        if self.state.searches >= self.max_searches:
            return ["answer[<text>]"]
        return ["search[<query>]", "answer[<text>]"]

    def _apply(self, action: str) -> Outcome:
        parsed = self.grammar.parse(action)
        if isinstance(parsed, ParseError):
            return Outcome(False, parsed.message)
        (arg,) = parsed.args
        if parsed.name == "answer":
            if not arg or len(arg) > MAX_ANSWER_CHARS:
                return self.invalid(
                    f"Expected answer[text] with 1 to {MAX_ANSWER_CHARS} characters", action
                )
            self.state = self.state._replace(answer=arg)
            return Outcome(True, f"{ANSWERED}{arg}", terminated=True)
        return self._search(arg, action)

    def _search(self, query: str, action: str) -> Outcome:
        s = self.state
        if s.searches >= self.max_searches:
            return Outcome(
                False,
                f"Search budget spent ({s.searches} of {self.max_searches} searches used); "
                "reply with answer[text].",
            )
        if len(query) > MAX_QUERY_CHARS or not query_terms(query):
            return self.invalid(
                f"Expected a query of words, at most {MAX_QUERY_CHARS} characters", action
            )
        hits = tuple(self.corpus.search(query, self.top_k))
        retrieved = s.retrieved + tuple(p for p in hits if p not in s.retrieved)
        self.state = EpisodeState(s.searches + 1, retrieved, hits, query, None)
        n = s.searches + 1
        return Outcome(
            True, f"Search {n} of {self.max_searches}: {len(hits)} passages for {echo(query)}."
        )

    def _observation(self, feedback: str) -> str:
        assert self.task is not None
        lines = [f"Question: {self.task.question}", feedback]
        for i, pid in enumerate(self.state.last, 1):
            p = self.corpus.passage(pid)
            lines.append(f"[{i}] {p.title}: {p.text}")
        lines.append(
            f"Searches left: {self.max_searches - self.state.searches} of {self.max_searches}."
        )
        return "\n".join(lines)

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """The message, the passages a search just retrieved, and the searches left.

        Each passage keeps its title and first sentences, as many as fit; the question is
        dropped (it never changes). After an answer or an invalid action the passages shown
        are the old ones: they are dropped too. Read from ``obs`` alone.
        """
        lines = obs.split("\n")[1:] if obs.startswith("Question: ") else obs.split("\n")
        passages = [m for m in map(_PASSAGE.fullmatch, lines) if m]
        rest = [clip(line, 160) for line in lines if not _PASSAGE.fullmatch(line)]
        answered = bool(rest) and rest[0].startswith(ANSWERED)
        if not passages or answered or not info.get("action_valid", True):
            return fit_lines(rest, self.SUMMARY_CHARS)
        kept = _passage_lines(passages, self.SUMMARY_CHARS - sum(len(x) + 1 for x in rest))
        return fit_lines([*rest[:-1], *kept, *rest[-1:]], self.SUMMARY_CHARS)

    def _fact_seen(self, subject_id: int, relation: str) -> bool:
        return any(
            (subject_id, relation) in self.corpus.passage(p).facts for p in self.state.retrieved
        )

    def _evaluate(self) -> Evaluation:
        assert self.task is not None
        t, s = self.task, self.state
        rubric = []
        for i, h in enumerate(t.hops, 1):
            what = f"the {RELATIONS[h.relation].label} of {h.subject} ({h.value})"
            rubric.append(
                {
                    "criterion": f"hop {i}: retrieved {what}",
                    "met": self._fact_seen(h.subject_id, h.relation),
                }
            )
        reward, exact, f1 = (
            answer_reward(s.answer or "", t.answer) if s.answer else (0.0, False, 0.0)
        )
        rubric.append({"criterion": f"final answer: {t.answer}", "met": exact})
        details = {
            "exact": exact, "f1": f1, "prediction": s.answer, "answer": t.answer,
            "searches": s.searches, "kind": t.kind, "hops": len(t.hops),
        }  # fmt: skip
        return Evaluation(reward, rubric, details, success=exact)

    def expert_action(self) -> str:
        """Search for the first hop not yet retrieved; answer once all are (or searches run out)."""
        assert self.task is not None
        if self.state.searches < self.max_searches:
            for hop in self.task.hops:
                if not self._fact_seen(hop.subject_id, hop.relation):
                    return f"search[{hop.query}]"
        return f"answer[{self.task.answer}]"

    def _get_state(self) -> Any:
        return self.state  # an immutable NamedTuple

    def _set_state(self, state: Any) -> None:
        self.state = state
