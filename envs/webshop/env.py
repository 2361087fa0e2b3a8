"""EarlyExp/WebShop-v0: find and buy the product an instruction describes, in a generated shop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from earlyexp.envs.core.actions import ActionGrammar, ActionSpec, ParseError, echo
from earlyexp.envs.core.base import Evaluation, Outcome, TextEnv, clip, fit_lines
from earlyexp.envs.core.search import query_terms
from earlyexp.envs.webshop.catalog import Catalog, load_catalog
from earlyexp.envs.webshop.expert import ExpertPlanner
from earlyexp.envs.webshop.goals import Goal, make_goal
from earlyexp.envs.webshop.pages import (
    BACK,
    NEXT,
    OBSERVATION_MODES,
    PAGE_SIZE,
    Click,
    Node,
    Page,
    View,
    page_model,
    render,
)
from earlyexp.envs.webshop.reward import check_reward_mode, score_purchase

BUDGET = 15
MAX_QUERY_CHARS = 500
"""Longest search query accepted (as SearchQA); a longer one is an invalid action."""
SEARCH_TEMPLATE = "search[<query>]"
MAX_LISTED = 20
PROGRESS_FROM = 100_000
"""Catalogs this large show a progress bar (stderr) while they are built the first time."""
TOP_HITS, HIT_CHARS, TITLE_CHARS, LINE_CHARS = 3, 50, 100, 160
"""Summaries: the top hits of a results page (titles cut to 50 characters), other lines cut."""

GRAMMAR = ActionGrammar(
    (
        ActionSpec(
            "search", ("query",), "search the catalog (only on the search page)",
            ("search[gluten free party mix 2 pound]", "search[red running shoes size 9]"),
        ),
        ActionSpec(
            "click", ("label",),
            "click a button, product id or option by its label (case-insensitive)",
            ("click[Back to Search]", "click[Next >]", "click[B09QKP7XQL]", "click[2 pound]",
             "click[Buy Now]"),
        ),
    )
)  # fmt: skip


def _option_lines(nodes: tuple[Node, ...]) -> list[str]:
    """``Options: size (s | m | l) = m; color (...) = none`` from an item page's nodes."""
    options: list[tuple[str, list[str], str]] = []
    for kind, text in nodes:
        if kind == "heading":
            options.append((text, [], "none"))
        elif kind in ("option", "selected") and options:
            options[-1][1].append(text)
            if kind == "selected":
                options[-1] = (*options[-1][:2], text)
    parts = [f"{name} ({' | '.join(values)}) = {chosen}" for name, values, chosen in options]
    return ["Options: " + "; ".join(parts) + "."] if parts else ["No options."]


class WebShopEnv(TextEnv[Goal]):
    """A WebShop clone (Yao et al., 2022) over a generated catalog, with BM25 search.

    ## Description
    The agent reads a shopping instruction ("i need a gluten free party mix in 2 pound size,
    and price lower than 40.00 dollars"), searches a catalog of generated products (1k to 1M,
    10k by default; built once and cached under ``$EARLYEXP_CACHE`` or ``~/.cache/earlyexp``),
    pages through results, opens products, chooses options and buys one. Pages: search,
    results (top 50 BM25 hits over title, description, features and option text, with
    Lucene's English stopwords dropped and words stemmed as in the original's pyserini index;
    10 a page),
    item (options, ``Description``, ``Features``, ``Reviews``, ``Buy Now``, ``< Prev``,
    ``Back to Search``), the three sub-pages, and the done page.

    ## Observation
    The current page, rendered from one page model, in ``observation_mode``:
    ``text`` (WebShop's simple mode: text nodes joined by `` [SEP] ``; as there, chosen options
    are not marked), ``text_rich`` (one node a line, ``[button] X [button_]`` and
    ``[clicked button] X [clicked button_]``) or ``html``.
    Every page but the done page starts with the instruction. A product with a price range
    shows the range on results pages and, on its item page, the price it sells for (a fixed
    point of the range, the one the reward checks against the bound). After an invalid action
    the page is unchanged and starts with the error (``No such button 'Next >' on this page``).
    ``summarize`` (the IWM next-state text, at most 400 characters, the same in every mode)
    gives the feedback line and the page: ``search``; ``results page N of M`` with the query
    and the top 3 hits (id, title, price); ``item`` with its id, title, price, rating and
    options (the chosen ones named); a sub-page with its first lines; ``done`` with the
    purchase and the score.

    ## Action
    ``search[query]`` on the search page; ``click[label]`` for any button, product id (ASIN),
    option value or sub-page on the current page; names and labels are case-insensitive.
    ``info["available_actions"]`` lists ``search[<query>]`` on the search page and every
    ``click[...]`` elsewhere. ``< Prev`` and ``Next >`` appear only when they lead somewhere.
    Examples: ``search[gluten free party mix 2 pound]``, ``click[Next >]``,
    ``click[B0A1B2C3D4]``, ``click[2 pound]``, ``click[Description]``, ``click[Buy Now]``.
    A query has at most 500 characters. Anything else, a longer query or a search off the
    search page is invalid: state unchanged, ``info["action_valid"]`` False, the step counts
    toward the budget.

    ## Reward
    Sparse: 0 until the purchase, then WebShop's R = r_type x (N_att + N_opt + 1[price <=
    bound]) / (|attributes| + |options| + 1) (see :mod:`earlyexp.envs.webshop.reward`).
    ``reward_mode="strict"`` counts an option only when the exact value was chosen and caps
    r_type at 0.5 for another product type, so a wrong size is never a success.
    ``info["score_details"]``: ``r_type``, ``title_score``, ``query_match``,
    ``category_match``, ``attributes`` and ``options`` (each wanted item: matched or not),
    ``n_att``, ``n_opt``, ``r_att``, ``r_option``, ``r_price``, ``price``, ``price_bound``,
    ``denominator``, ``purchased_asin``, ``target_asin``, ``chosen_options``, ``reward``.
    Rubric: ``buy a product``, ``product type``, one item per attribute and per option,
    ``price``. Success is R = 1; the benchmark score is mean R x 100.

    ## Episode end
    Terminated by ``click[Buy Now]``. Truncated after 15 steps (valid or not) without a
    purchase; the score is then 0.

    ## Splits
    ``train``: a procedural stream of goals over the 166 in-distribution product types (in
    WebShop's five top categories: beauty, electronics, fashion, furniture, grocery) phrased
    with 6 templates. ``test``: 500 fixed goals from the same distribution. ``ood``: 500 fixed
    goals over 69 held-out types (all of two held-out top categories, pet supplies and sports
    & outdoors, plus two held-out type families in each of the five others, e.g. fragrance and
    men's grooming in beauty) phrased with 4 held-out templates. Goals depend on the catalog,
    hence on ``num_products`` and ``catalog_seed``; the catalog holds products of every type.

    ## Arguments
    ``gym.make("EarlyExp/WebShop-v0", num_products=10_000, catalog_seed=0,
    observation_mode="text", reward_mode="webshop", max_steps=None)``;
    ``reset(options={"split": "test", "task": 3})`` picks panel goal 3.
    ``num_products`` takes any size in [1000, 2000000] (1k, 10k, 100k and 1M are the
    benchmarked ones); the first use of a size builds its catalog once (10k: under two seconds;
    1M: under two minutes, with a progress bar), later uses load it from the cache in under a
    second.

    ## Version history
    * v0: initial version.
    * v0 (same tasks and pages): ``summarize``, the next-state text of IWM.
    * v0 (same tasks and pages): a snapshot keeps whether the last action was valid, so a
      restored page shows (or hides) its error line as it did.
    * v0 (same tasks and pages): a search query longer than 500 characters is invalid.
    * v0 (same tasks and pages), reward fidelity: ``sparkling water``, ``dog bed`` and
      ``cat bed`` have a noun (a same-type product of another brand was given r_type 0), and
      fuzzy scores are rounded to integers before the ``> 85`` test, as the original does.
    """

    grammar = GRAMMAR

    def __init__(
        self,
        num_products: int = 10_000,
        catalog_seed: int = 0,
        observation_mode: str = "text",
        reward_mode: str = "webshop",
        render_mode: str | None = None,
        max_steps: int | None = None,
    ) -> None:
        if observation_mode not in OBSERVATION_MODES:
            raise ValueError(
                f"Expect observation_mode in {OBSERVATION_MODES}, actually: {observation_mode!r}"
            )
        self.reward_mode = check_reward_mode(reward_mode)
        self.observation_mode = observation_mode
        super().__init__(render_mode=render_mode, max_steps=max_steps)
        big = isinstance(num_products, int) and num_products >= PROGRESS_FROM
        self.catalog: Catalog = load_catalog(num_products, catalog_seed, progress=big)
        self.num_products, self.catalog_seed = self.catalog.size, self.catalog.seed
        self._setup_caches()

    def _setup_caches(self) -> None:
        self.expert = ExpertPlanner(self.catalog)
        self._pages: dict[View, Page] = {}
        self._actions: dict[View, list[str]] = {}
        self._pages_task: Goal | None = None
        self._last_valid = True

    # ------------------------------------------------------------------ task
    @property
    def family(self) -> str:
        """Goals depend on the catalog: its size and seed are part of the family."""
        return f"WebShop-v0/{self.num_products}/{self.catalog_seed}"

    def make_task(self, rng: np.random.Generator, split: str) -> Goal:
        """See :func:`earlyexp.envs.webshop.goals.make_goal`."""
        return make_goal(self.catalog, rng, split)

    def _budget(self, task: Goal) -> int:
        return BUDGET

    def _begin(self, task: Goal) -> str:
        self.state = View()
        self._last_valid = True
        return "The shop is open: search for the product."

    def instruction(self) -> str:
        """The goal's instruction."""
        assert self.task is not None
        return self.task.instruction

    def _evaluate(self) -> Evaluation:
        assert self.task is not None
        view: View = self.state
        bought = self.catalog.product(view.product) if view.page == "done" else None
        return score_purchase(
            bought, dict(view.options), self.task, self.catalog.vocab, self.reward_mode
        )

    def expert_action(self) -> str:
        """The oracle's next action (see :mod:`earlyexp.envs.webshop.expert`)."""
        assert self.task is not None
        return self.expert.action(self.task, self.state)

    # ------------------------------------------------------------------ pages
    def page(self) -> Page:
        """The page model of the current view (cached per view within a task)."""
        if self._pages_task is not self.task or len(self._pages) > 512:
            self._pages, self._actions, self._pages_task = {}, {}, self.task
        view: View = self.state
        page = self._pages.get(view)
        if page is None:
            score = self._evaluate().score if view.page == "done" else 0.0
            page = page_model(self.catalog, view, self.instruction(), score)
            self._pages[view] = page
        return page

    def available_actions(self) -> list[str]:
        """``search[<query>]`` on the search page, else ``click[label]`` of every clickable."""
        view: View = self.state
        if view.page == "search":
            return [SEARCH_TEMPLATE]
        page = self.page()  # (also resets the caches when the task changed)
        actions = self._actions.get(view)
        if actions is None:
            actions = self._actions[view] = [f"click[{c.label}]" for c in page.clicks.values()]
        return list(actions)

    def _observation(self, feedback: str) -> str:
        page = self.page()
        if not self._last_valid:
            page = Page((Node("error", f"Invalid action: {feedback}"), *page.nodes), page.clicks)
        return render(page, self.observation_mode)

    def summarize(self, obs: str, info: Mapping[str, Any], *, previous: str | None = None) -> str:
        """The feedback line, then which page this is and what it shows (see the env card).

        Read from the page model of the current view, so it is the same in every observation
        mode and names the chosen options even where ``text`` mode does not mark them. An
        ``obs`` other than the env's current observation gets the base class's cut text.
        """
        if self.task is None or obs != self._obs:
            return super().summarize(obs, info)
        feedback = str(info.get("feedback", ""))
        if not info.get("action_valid", True):
            feedback = f"Invalid action: {feedback}"
        lines = [clip(feedback, LINE_CHARS), *self._page_lines(self.state)]
        return fit_lines(lines, self.SUMMARY_CHARS)

    def _page_lines(self, view: View) -> list[str]:
        """The summary's lines about the page of ``view`` (below the feedback line)."""
        nodes = self.page().nodes
        if view.page == "results":
            n = len(self.catalog.search(view.query))
            texts = [t for k, t in nodes if k in ("asin", "title", "price")]
            hits = list(zip(texts[0::3], texts[1::3], texts[2::3], strict=True))[:TOP_HITS]
            return [
                f"Page: results page {view.page_no} of {max(1, -(-n // PAGE_SIZE))} "
                f"({n} results) for {echo(view.query, 40)}.",
                *(f"{a}: {clip(t, HIT_CHARS)} ({p})" for a, t, p in hits),
            ]
        if view.page == "search":
            return ["Page: search."]
        p = self.catalog.product(view.product)
        product = f"{p.asin}: {clip(p.title, TITLE_CHARS)}, ${p.price:.2f}"
        if view.page == "item":
            return [f"Page: item {product}, rating {p.rating:.1f}.", *_option_lines(nodes)]
        if view.page == "sub":
            return [f"Page: {view.sub} of {product}.", *(t for k, t in nodes if k == "text")]
        chosen = "".join(f", {name}: {value}" for name, value in view.options)
        return [f"Page: done. Purchased {product}{chosen}. Score: {nodes[-1].text}."]

    def _finish_step(self, outcome: Outcome):
        self._last_valid = outcome.valid
        return super()._finish_step(outcome)

    # ------------------------------------------------------------------ actions
    def _apply(self, action: str) -> Outcome:
        parsed = self.grammar.parse(action)
        if isinstance(parsed, ParseError):
            return Outcome(False, parsed.message)
        view: View = self.state
        if parsed.name == "search":
            return self._search(view, parsed.args[0])
        click = self.page().clicks.get(" ".join(parsed.args[0].split()).lower())
        if click is None:
            return self._no_such_button(parsed.args[0])
        return self._click(view, click)

    def _search(self, view: View, query: str) -> Outcome:
        if view.page != "search":
            return Outcome(False, f"There is no search box on this page; click[{BACK}] first.")
        if len(query) > MAX_QUERY_CHARS:
            return self.invalid(
                f"The search query is too long ({len(query)} characters; at most "
                f"{MAX_QUERY_CHARS})",
                query,
            )
        if not query_terms(query):
            return self.invalid("The search query has no words", query)
        self.state = View("results", query)
        return Outcome(
            True, f"Searched for {echo(query)}: {len(self.catalog.search(query))} results."
        )

    def _no_such_button(self, label: str) -> Outcome:
        labels = [c.label for c in self.page().clicks.values()]
        if not labels:
            return Outcome(
                False,
                f"No such button {echo(label)}: this page has nothing to click; use search[...].",
            )
        shown = ", ".join(labels[:MAX_LISTED]) + (", ..." if len(labels) > MAX_LISTED else "")
        return Outcome(False, f"No such button {echo(label)} on this page. Clickable: {shown}.")

    def _click(self, view: View, click: Click) -> Outcome:
        if click.kind == "nav":
            if click.arg == BACK:
                self.state = View()
            elif view.page == "results":
                step = 1 if click.arg == NEXT else -1
                self.state = View("results", view.query, view.page_no + step)
            elif view.page == "item":
                self.state = View("results", view.query, view.page_no)
            else:  # a sub-page's < Prev returns to the item page with its options
                self.state = View("item", view.query, view.page_no, view.product, view.options)
            return Outcome(True, f"Clicked {click.label}.")
        if click.kind == "asin":
            self.state = View("item", view.query, view.page_no, int(click.arg))
            return Outcome(True, f"Opened {click.label}.")
        if click.kind == "option":
            self.state = view.with_option(str(click.arg), click.label)
            return Outcome(True, f"Chose {click.arg}: {click.label}.")
        if click.kind == "sub":
            self.state = View(
                "sub", view.query, view.page_no, view.product, view.options, str(click.arg)
            )
            return Outcome(True, f"Opened {click.label}.")
        self.state = View("done", view.query, view.page_no, view.product, view.options)
        return Outcome(True, "Bought the product.", terminated=True)

    # ------------------------------------------------------------------ state, pickling
    def _get_state(self) -> Any:
        # the View is immutable; whether the last action was valid decides the error line
        # of the page, so a snapshot keeps it too
        return self.state, self._last_valid

    def _set_state(self, state: Any) -> None:
        self.state, self._last_valid = state

    def state_fingerprint(self) -> Any:
        """The page view, task and split (an invalid action changes none of them)."""
        return (self.state, self.task_index, self.split)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("catalog", "expert", "_pages", "_actions", "_pages_task"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.catalog = load_catalog(self.num_products, self.catalog_seed)
        last_valid = self._last_valid
        self._setup_caches()
        self._last_valid = last_valid
