"""The WebShop page model: which page the shopper is on, what it shows, what it can click.

A :class:`View` is the whole navigation state (immutable, hashable). :func:`page_model` turns
a view into a list of :class:`Node` (kind, text) and the clickable labels; the three renderers
(``text``, ``text_rich``, ``html``) and the web site all read that one model, so pages are
never parsed back from HTML.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

from earlyexp.envs.core.actions import echo
from earlyexp.envs.webshop.catalog import Catalog
from earlyexp.envs.webshop.products import Product

PAGE_SIZE = 10
BACK, PREV, NEXT, BUY = "Back to Search", "< Prev", "Next >", "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")
OBSERVATION_MODES = ("text", "text_rich", "html")
SEP = " [SEP] "
SEARCH_BOX = (
    '<input type="text" name="query" id="search_input" placeholder="Search" autofocus>'
    '<button type="submit" class="btn search" name="action" value="search">Search</button>'
)


@dataclass(frozen=True)
class View:
    """Where the shopper is.

    Attributes:
        page: ``search``, ``results``, ``item``, ``sub`` (Description/Features/Reviews) or ``done``.
        query: the last search query (results, item and sub pages remember it).
        page_no: the results page (1-based).
        product: the catalog index of the open product (-1: none).
        options: the chosen ``(option name, value)`` pairs on the item page.
        sub: which sub-page is open (``Description``, ``Features``, ``Reviews``).
    """

    page: str = "search"
    query: str = ""
    page_no: int = 1
    product: int = -1
    options: tuple[tuple[str, str], ...] = ()
    sub: str = ""

    def with_option(self, name: str, value: str) -> View:
        """This view with option ``name`` set to ``value`` (replacing its previous value)."""
        kept = tuple((n, v) for n, v in self.options if n != name)
        return replace(self, options=(*kept, (name, value)))


class Node(NamedTuple):
    """One element of a page.

    ``kind`` is one of ``header``, ``instruction``, ``search``, ``button``, ``option`` (an
    option value), ``selected`` (the chosen one), ``heading``, ``text``, ``asin``, ``title``,
    ``price``, ``error``.
    """

    kind: str
    text: str


class Click(NamedTuple):
    """What a clickable label does: ``kind`` is nav/asin/option/sub/buy; ``arg`` its target."""

    kind: str
    label: str
    arg: object = None


class Page(NamedTuple):
    """A rendered page model: its nodes and its clickables by lower-cased label."""

    nodes: tuple[Node, ...]
    clicks: dict[str, Click]


def _button(nodes: list[Node], clicks: dict[str, Click], label: str, kind: str, arg=None) -> None:
    nodes.append(Node("button", label))
    clicks[label.lower()] = Click(kind, label, arg)


def _results(catalog: Catalog, view: View, nodes: list[Node], clicks: dict[str, Click]) -> None:
    hits = catalog.search(view.query)
    last = max(1, (len(hits) + PAGE_SIZE - 1) // PAGE_SIZE)
    nodes.append(Node("text", f"Page {view.page_no} (Total results: {len(hits)})"))
    if view.page_no > 1:
        _button(nodes, clicks, PREV, "nav", PREV)
    if view.page_no < last:
        _button(nodes, clicks, NEXT, "nav", NEXT)
    if not hits:
        nodes.append(Node("text", f"No products match {echo(view.query)}. Try other words."))
    start = (view.page_no - 1) * PAGE_SIZE
    for idx in hits[start : start + PAGE_SIZE]:
        code = catalog.asin(idx)
        nodes.append(Node("asin", code))
        clicks[code.lower()] = Click("asin", code, idx)
        nodes.append(Node("title", catalog.title(idx)))
        nodes.append(Node("price", catalog.price_text(idx)))


def _item(p: Product, view: View, nodes: list[Node], clicks: dict[str, Click]) -> None:
    chosen = dict(view.options)
    for name, values in p.options:
        nodes.append(Node("heading", name))
        for value in values:
            nodes.append(Node("selected" if chosen.get(name) == value else "option", value))
            clicks[value.lower()] = Click("option", value, name)
    nodes.append(Node("title", p.title))
    nodes.append(Node("price", f"Price: ${p.price:.2f}"))
    nodes.append(Node("text", f"Rating: {p.rating:.1f} out of 5"))
    for label in SUB_PAGES:
        _button(nodes, clicks, label, "sub", label)
    _button(nodes, clicks, BUY, "buy")


def _sub(p: Product, view: View, nodes: list[Node]) -> None:
    nodes.append(Node("heading", view.sub))
    if view.sub == "Description":
        nodes.append(Node("text", p.description))
    elif view.sub == "Features":
        nodes += [Node("text", f) for f in p.features]
    else:
        for stars, text in p.reviews:
            nodes += [Node("text", f"Rating: {stars} out of 5"), Node("text", text)]


def _done(p: Product, view: View, score: float, nodes: list[Node]) -> None:
    nodes += [Node("header", "Thank you for shopping with us!"), Node("heading", "Purchased")]
    nodes += [Node("asin", p.asin), Node("title", p.title), Node("price", f"${p.price:.2f}")]
    for name, value in view.options:
        nodes.append(Node("text", f"{name}: {value}"))
    nodes += [Node("heading", "Your score (min 0.0, max 1.0)"), Node("text", f"{score:.4g}")]


def page_model(catalog: Catalog, view: View, instruction: str, score: float = 0.0) -> Page:
    """Build the page of ``view`` (``score`` is shown on the done page)."""
    nodes: list[Node] = []
    if view.page == "done":
        _done(catalog.product(view.product), view, score, nodes)
        return Page(tuple(nodes), {})
    if view.page == "search":
        nodes += [Node("header", "WebShop"), Node("instruction", instruction)]
        return Page((*nodes, Node("search", "Search")), {})
    body = page_body(catalog, view)
    return Page((Node("instruction", instruction), *body.nodes), body.clicks)


@lru_cache(maxsize=8192)
def page_body(catalog: Catalog, view: View) -> Page:
    """The part of a results, item or sub page below the instruction (shared by all tasks).

    The returned clickables dict is shared: read it, never change it.
    """
    nodes: list[Node] = []
    clicks: dict[str, Click] = {}
    _button(nodes, clicks, BACK, "nav", BACK)
    if view.page == "results":
        _results(catalog, view, nodes, clicks)
    else:
        _button(nodes, clicks, PREV, "nav", PREV)
        p = catalog.product(view.product)
        if view.page == "item":
            _item(p, view, nodes, clicks)
        else:
            _sub(p, view, nodes)
    return Page(tuple(nodes), clicks)


def render_text(nodes: tuple[Node, ...]) -> str:
    """``text`` mode: the text nodes joined by `` [SEP] `` (WebShop's simple mode)."""
    parts = []
    for kind, text in nodes:
        parts.append(f"Instruction:{SEP}{text}" if kind == "instruction" else text)
    return SEP.join(parts)


def render_text_rich(nodes: tuple[Node, ...]) -> str:
    """``text_rich`` mode: one node per line, buttons marked ``[button] X [button_]``."""
    lines = []
    for kind, text in nodes:
        if kind in ("button", "option", "asin"):
            lines.append(f"[button] {text} [button_]")
        elif kind == "selected":
            lines.append(f"[clicked button] {text} [clicked button_]")
        elif kind == "instruction":
            lines.append(f"Instruction: {text}")
        elif kind == "search":
            lines.append("[search box] [button] Search [button_]")
        else:
            lines.append(text)
    return "\n".join(lines)


def _html_node(kind: str, text: str, clickable: bool) -> str:
    t = html.escape(text)
    action = html.escape(f"click[{text}]", quote=True)
    if kind in ("button", "option", "selected") or (kind == "asin" and clickable):
        cls = {"selected": "option selected", "option": "option", "asin": "asin"}.get(kind, "btn")
        return f'<button type="submit" class="{cls}" name="action" value="{action}">{t}</button>'
    if kind == "search":
        return SEARCH_BOX
    if kind == "instruction":
        return f'<div id="instruction-text"><h4>Instruction:<br>{t}</h4></div>'
    tag = {"header": "h2", "heading": "h4", "title": "h3"}.get(kind, "p")
    return f'<{tag} class="{kind}">{t}</{tag}>'


def render_html(page: Page, action_url: str = "act", head: str = "", tail: str = "") -> str:
    """``html`` mode and the web site: one form; each button posts ``action=click[label]``.

    ``head`` goes into ``<head>`` and ``tail`` after the form (the site's links).
    """
    body = "\n".join(_html_node(k, t, t.lower() in page.clicks) for k, t in page.nodes)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>WebShop</title>{head}'
        f'</head>\n<body><form method="post" action="{html.escape(action_url, quote=True)}">\n'
        f"{body}\n</form>{tail}</body></html>"
    )


def render(page: Page, mode: str) -> str:
    """Render ``page`` in observation ``mode``."""
    if mode == "text":
        return render_text(page.nodes)
    if mode == "text_rich":
        return render_text_rich(page.nodes)
    return render_html(page)
