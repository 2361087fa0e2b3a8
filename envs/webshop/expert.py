"""The WebShop oracle: knows the goal, searches, pages, opens a winning product, buys.

A *winner* is a product that scores R = 1 under both reward modes when bought with the goal's
option values (the target always is one; other products of the same type often are too).
The expert searches the goal's keyword query; when no winner is among its 50 results it
searches the target's title instead. It is stateless: from any page it returns the next step
of that plan, so it also recovers after other policies' actions (for early-experience data).
"""

from __future__ import annotations

from typing import Any

from earlyexp.envs.webshop.catalog import Catalog, search_terms
from earlyexp.envs.webshop.goals import Goal
from earlyexp.envs.webshop.pages import BACK, BUY, NEXT, PAGE_SIZE, PREV, View
from earlyexp.envs.webshop.reward import REWARD_MODES, score_purchase


def is_winner(catalog: Catalog, index: int, goal: Goal) -> bool:
    """Does buying product ``index`` with the goal's options score 1 in every reward mode?"""
    if catalog.price[index] > goal.price_bound:
        return False
    p = catalog.product(index)
    if p.type_name != goal.type_name:
        return False
    if any(value not in p.option_values(name) for name, value in goal.options):
        return False
    chosen = dict(goal.options)
    return all(score_purchase(p, chosen, goal, catalog.vocab, m).score >= 1.0 for m in REWARD_MODES)


class ExpertPlanner:
    """Chooses the query and the winner; caches both per goal (cheap to call every step)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._plans: dict[Goal, tuple[str, int | None]] = {}

    def plan(self, goal: Goal) -> tuple[str, int | None]:
        """Return ``(query, rank of the first winner in its results or None)``."""
        if goal not in self._plans:
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[goal] = self._make_plan(goal)
        return self._plans[goal]

    def _make_plan(self, goal: Goal) -> tuple[str, int | None]:
        for query in (goal.query, goal.title.lower()):
            for rank, idx in enumerate(self.catalog.search(query)):
                if is_winner(self.catalog, idx, goal):
                    return query, rank
        return goal.query, None

    def action(self, goal: Goal, view: View) -> str:
        """The next expert action from ``view``."""
        query, rank = self.plan(goal)
        if view.page == "search":
            return f"search[{query}]"
        if view.page == "done":
            return f"click[{BACK}]"
        if view.query != query and search_terms(view.query) != search_terms(query):
            return f"click[{BACK}]"
        hits = self.catalog.search(query)
        target = hits[rank] if rank is not None else goal.product
        if view.page == "sub" or (view.page == "item" and view.product != target):
            return f"click[{PREV}]"
        if view.page == "item":
            chosen = dict(view.options)
            for name, value in goal.options:
                if chosen.get(name) != value:
                    return f"click[{value}]"
            return f"click[{BUY}]"
        return self._results_action(view, hits, rank)

    def _results_action(self, view: View, hits: tuple[int, ...], rank: int | None) -> str:
        if rank is None:  # no winner anywhere: open the best-ranked result
            return f"click[{self.catalog.asin(hits[0])}]" if hits else f"click[{BACK}]"
        want_page = rank // PAGE_SIZE + 1
        if view.page_no < want_page:
            return f"click[{NEXT}]"
        if view.page_no > want_page:
            return f"click[{PREV}]"
        return f"click[{self.catalog.asin(hits[rank])}]"


def record_demonstration(env: Any, split: str, task: int) -> list[dict[str, Any]]:
    """Run the expert on panel goal ``task`` of ``split``; return every step it took.

    Each step is ``{"observation", "available_actions", "action", "reward", "valid"}``:
    the observation the action was chosen from, and the action itself (the original
    WebShop's human demonstrations did not record actions).
    """
    obs, info = env.reset(options={"split": split, "task": task})
    steps, done = [], False
    while not done:
        action = env.unwrapped.expert_action()
        record = {
            "observation": obs,
            "available_actions": info["available_actions"],
            "action": action,
        }
        obs, reward, term, trunc, info = env.step(action)
        steps.append({**record, "reward": reward, "valid": info["action_valid"]})
        done = term or trunc
    return steps
