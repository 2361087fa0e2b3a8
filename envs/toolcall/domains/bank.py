"""A simulated bank and brokerage: accounts, transfers, bill payments, transactions, stocks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from earlyexp.envs.toolcall.calls import Param, ToolError, ToolSpec, call_str
from earlyexp.envs.toolcall.domain import (
    REFUSAL,
    Domain,
    Draft,
    TemplateEntry,
    Turn,
    ask_first,
    pick,
    respond,
)
from earlyexp.envs.toolcall.domains.filesystem import VOCAB

State = dict[str, Any]
MAX_CENTS = 10**11
MAX_LIMIT = 1000


def money(cents: int) -> str:
    """``$1,234.56`` (``-$49.19`` for negative amounts)."""
    return f"{'-' if cents < 0 else ''}${abs(cents) / 100:,.2f}"


def _account(st: State, name: str) -> str:
    if name not in st["accounts"]:
        raise ToolError(f"No such account {name[:40]!r}. Accounts: {', '.join(st['accounts'])}.")
    return name


def _cents(amount: float) -> int:
    if not math.isfinite(amount) or abs(amount) * 100 >= MAX_CENTS:
        raise ToolError(
            f"Invalid amount {amount!r}: expected a positive amount, at most 2 decimals."
        )
    cents = round(amount * 100)
    if not 0 < cents < MAX_CENTS or abs(cents - amount * 100) > 1e-6:
        raise ToolError(
            f"Invalid amount {amount!r}: expected a positive amount with at most 2 decimals."
        )
    return cents


def _record(st: State, account: str, description: str, cents: int) -> None:
    st["transactions"].append(
        [len(st["transactions"]) + 1, st["today"], account, description, cents]
    )


def list_accounts(st: State) -> str:
    """Accounts with balances."""
    return "\n".join(f"{name}: {money(c)}" for name, c in st["accounts"].items())


def get_balance(st: State, account: str) -> str:
    """Balance of one account."""
    return f"{_account(st, account)} balance: {money(st['accounts'][account])}"


def transfer(st: State, from_account: str, to_account: str, amount: float) -> str:
    """Move money between two of the user's accounts."""
    src, dst, cents = _account(st, from_account), _account(st, to_account), _cents(amount)
    if src == dst:
        raise ToolError("The two accounts must differ.")
    if st["accounts"][src] < cents:
        raise ToolError(f"Insufficient funds in {src} ({money(st['accounts'][src])}).")
    st["accounts"][src] -= cents
    st["accounts"][dst] += cents
    _record(st, src, f"Transfer to {dst}", -cents)
    _record(st, dst, f"Transfer from {src}", cents)
    return f"Transferred {money(cents)} from {src} to {dst}."


def pay_bill(st: State, payee: str, amount: float, account: str = "checking") -> str:
    """Pay a registered payee."""
    if payee not in st["payees"]:
        raise ToolError(f"Unknown payee {payee[:40]!r}. Payees: {', '.join(st['payees'])}.")
    src, cents = _account(st, account), _cents(amount)
    if st["accounts"][src] < cents:
        raise ToolError(f"Insufficient funds in {src} ({money(st['accounts'][src])}).")
    st["accounts"][src] -= cents
    _record(st, src, f"Bill payment {payee}", -cents)
    return f"Paid {money(cents)} to {payee} from {src}."


def list_transactions(st: State, account: str, limit: int = 10) -> str:
    """The most recent transactions of an account, newest first."""
    _account(st, account)
    if not 1 <= limit <= MAX_LIMIT:
        raise ToolError(f"Invalid limit {limit}: expected 1 to {MAX_LIMIT}.")
    rows = [t for t in st["transactions"] if t[2] == account][::-1][:limit]
    return "\n".join(f"#{i} {d} {desc}: {money(c)}" for i, d, _, desc, c in rows) or "(none)"


def _symbol(st: State, symbol: str) -> str:
    if symbol not in st["prices"]:
        raise ToolError(f"Unknown symbol {symbol[:20]!r}.")
    return symbol


def get_stock_price(st: State, symbol: str) -> str:
    """Current price of one share."""
    return f"{_symbol(st, symbol)}: {money(st['prices'][symbol])} per share"


def _quantity(quantity: int) -> int:
    if not 1 <= quantity <= 10**6:
        raise ToolError(f"Invalid quantity {quantity}: expected 1 to 1000000.")
    return quantity


def buy_stock(st: State, symbol: str, quantity: int) -> str:
    """Buy shares with the brokerage account's cash."""
    cost = st["prices"][_symbol(st, symbol)] * _quantity(quantity)
    if st["accounts"]["brokerage"] < cost:
        raise ToolError(f"Insufficient funds in brokerage ({money(st['accounts']['brokerage'])}).")
    st["accounts"]["brokerage"] -= cost
    st["holdings"][symbol] = st["holdings"].get(symbol, 0) + quantity
    _record(st, "brokerage", f"Buy {quantity} {symbol}", -cost)
    return f"Bought {quantity} {symbol} for {money(cost)}."


def sell_stock(st: State, symbol: str, quantity: int) -> str:
    """Sell shares into the brokerage account."""
    held = st["holdings"].get(_symbol(st, symbol), 0)
    if _quantity(quantity) > held:
        raise ToolError(f"You hold only {held} shares of {symbol}.")
    gain = st["prices"][symbol] * quantity
    st["holdings"][symbol] = held - quantity
    st["accounts"]["brokerage"] += gain
    _record(st, "brokerage", f"Sell {quantity} {symbol}", gain)
    return f"Sold {quantity} {symbol} for {money(gain)}."


def get_portfolio(st: State) -> str:
    """Shares held."""
    rows = [f"{s}: {q} shares" for s, q in sorted(st["holdings"].items()) if q]
    return "\n".join(rows) or "(no shares)"


ACCOUNT = Param("account", "str", "account name: checking, savings or brokerage")
AMOUNT = Param("amount", "float", "amount in dollars, e.g. 120.5")
SYMBOL = Param("symbol", "str", "ticker symbol, e.g. ACME")
QUANTITY = Param("quantity", "int", "number of shares")
FUNCTIONS: tuple[ToolSpec, ...] = (
    ToolSpec("list_accounts", "List the accounts and their balances.", (), list_accounts),
    ToolSpec("get_balance", "Return the balance of one account.", (ACCOUNT,), get_balance),
    ToolSpec(
        "transfer",
        "Move money between two of your accounts.",
        (
            Param("from_account", "str", "account to take the money from"),
            Param("to_account", "str", "account to put the money in"),
            AMOUNT,
        ),
        transfer,
        mutates=True,
    ),
    ToolSpec(
        "pay_bill",
        "Pay a registered payee (e.g. a utility).",
        (
            Param("payee", "str", "payee name"),
            AMOUNT,
            Param("account", "str", "account to pay from", False, "checking"),
        ),
        pay_bill,
        mutates=True,
    ),
    ToolSpec(
        "list_transactions",
        "List an account's transactions, newest first.",
        (ACCOUNT, Param("limit", "int", "how many to list (1 to 1000)", False, 10)),
        list_transactions,
    ),
    ToolSpec("get_stock_price", "Return the price of one share.", (SYMBOL,), get_stock_price),
    ToolSpec(
        "buy_stock",
        "Buy shares with the brokerage account's cash.",
        (SYMBOL, QUANTITY),
        buy_stock,
        mutates=True,
    ),
    ToolSpec(
        "sell_stock",
        "Sell shares into the brokerage account.",
        (SYMBOL, QUANTITY),
        sell_stock,
        mutates=True,
    ),
    ToolSpec("get_portfolio", "List the shares you hold.", (), get_portfolio),
)


def flatten(st: State) -> dict[str, Any]:
    """Scored view: balances, share counts and every transaction."""
    out: dict[str, Any] = {f"{a} balance": c for a, c in st["accounts"].items()}
    out.update({f"shares of {s}": q for s, q in st["holdings"].items() if q})
    out.update({f"transaction #{t[0]}": list(t[1:]) for t in st["transactions"]})
    return out


def describe(key: str, value: Any) -> str:
    """Rubric line for one scored key."""
    if value is None:
        return f"no {key}"
    if key.endswith("balance"):
        return f"{key} is {money(value)}"
    if key.startswith("shares"):
        return f"holds {value} {key}"
    return f"{key} recorded: {value[2]} {money(value[3])} ({value[1]})"


# ---------------------------------------------------------------------- task templates
def _month_day(rng: np.random.Generator) -> str:
    return f"2024-{int(rng.integers(1, 7)):02d}-{int(rng.integers(1, 29)):02d}"


def _bank(rng: np.random.Generator, n_tx: int) -> State:
    accounts = {a: int(rng.integers(2000, 900000)) for a in ("checking", "savings")}
    accounts["brokerage"] = int(rng.integers(200000, 2000000))
    st: State = {
        "today": "2024-06-30",
        "accounts": accounts,
        "transactions": [],
        "payees": sorted(str(p) for p in rng.choice(VOCAB["payees"], 5, replace=False)),
        "prices": dict(VOCAB["stocks"]),
        "holdings": {"ACME": int(rng.integers(1, 40))},
    }
    rows = sorted((_month_day(rng), pick(rng, VOCAB["merchants"])) for _ in range(n_tx))
    for d, merchant in rows:
        st["transactions"].append(
            [len(st["transactions"]) + 1, d, "checking", merchant, -int(rng.integers(300, 25000))]
        )
    return st


def _dollars(rng: np.random.Generator, low: int, high: int) -> float:
    return int(rng.integers(low, high)) + float(pick(rng, [0.0, 0.25, 0.5, 0.99]))


def move_money(rng: np.random.Generator, variant: str) -> Draft:
    """Transfer between accounts (missing parameter: the amount is not given)."""
    st = _bank(rng, int(rng.integers(3, 10)))
    src, dst = pick(rng, [("checking", "savings"), ("savings", "checking")])
    amount = _dollars(rng, 5, min(st["accounts"][src] // 100, 900))
    act = call_str("transfer", from_account=src, to_account=dst, amount=amount)
    done = respond(f"Transferred ${amount:,.2f} from {src} to {dst}.")
    if variant == "missing_parameter":
        return ask_first(
            st, f"Please move some money from my {src} account to {dst}.",
            "How much would you like to transfer?", ("how much", "amount"), "the amount",
            f"Transfer ${amount:,.2f}, please.", (act, done),
        )  # fmt: skip
    return Draft(st, [Turn(f"Move ${amount:,.2f} from my {src} account to {dst}.", (act, done))])


def pay(rng: np.random.Generator, variant: str) -> Draft:
    """Pay a bill (missing function: bill payment is not available)."""
    st = _bank(rng, int(rng.integers(3, 10)))
    payee = pick(rng, st["payees"])
    amount = _dollars(rng, 10, min(st["accounts"]["checking"] // 100, 300))
    user = f"Pay my {payee} bill of ${amount:,.2f} from checking."
    if variant == "missing_function":
        refusal = (respond(REFUSAL.format(what="pay bills")),)
        return Draft(st, [Turn(user, refusal, refuse=True)], hidden=("pay_bill",))
    plan = (
        call_str("pay_bill", payee=payee, amount=amount, account="checking"),
        respond(f"Paid ${amount:,.2f} to {payee}."),
    )
    return Draft(st, [Turn(user, plan)])


def balance(rng: np.random.Generator, variant: str) -> Draft:
    """Report a balance."""
    st = _bank(rng, int(rng.integers(3, 10)))
    account = pick(rng, ["checking", "savings", "brokerage"])
    value = money(st["accounts"][account])
    plan = (
        call_str("get_balance", account=account),
        respond(f"Your {account} balance is {value}."),
    )
    return Draft(st, [Turn(f"What is my {account} balance?", plan, answers=(value,))])


def stocks(rng: np.random.Generator, variant: str) -> Draft:
    """Two turns: buy shares, then report the cash left."""
    st = _bank(rng, int(rng.integers(3, 8)))
    symbol = pick(rng, sorted(st["prices"]))
    qty = int(rng.integers(1, max(2, min(50, st["accounts"]["brokerage"] // st["prices"][symbol]))))
    left = money(st["accounts"]["brokerage"] - qty * st["prices"][symbol])
    return Draft(
        st,
        [
            Turn(
                f"Buy {qty} shares of {symbol}.",
                (
                    call_str("buy_stock", symbol=symbol, quantity=qty),
                    respond(f"Bought {qty} shares of {symbol}."),
                ),
            ),
            Turn(
                "How much cash is left in my brokerage account?",
                (call_str("get_balance", account="brokerage"), respond(f"You have {left} left.")),
                answers=(left,),
            ),
        ],
    )


def lookup(rng: np.random.Generator, variant: str) -> Draft:
    """Find one payment among the transactions (long context: hundreds of them)."""
    n = int(rng.integers(250, 400)) if variant == "long_context" else int(rng.integers(6, 14))
    st = _bank(rng, n)
    counts: dict[tuple[str, str], int] = {}
    for t in st["transactions"]:
        counts[(t[1], t[3])] = counts.get((t[1], t[3]), 0) + 1
    unique = [t for t in st["transactions"] if counts[(t[1], t[3])] == 1]
    _, day, _, merchant, cents = unique[int(rng.integers(len(unique)))]
    value = money(-cents)
    plan = (
        call_str("list_transactions", account="checking", limit=n),
        respond(f"You paid {value} at {merchant} on {day}."),
    )
    return Draft(st, [Turn(f"How much did I pay at {merchant} on {day}?", plan, answers=(value,))])


DOMAIN = Domain(
    "bank",
    "You manage the user's bank accounts (checking, savings, brokerage) and shares.",
    FUNCTIONS,
    flatten,
    describe,
    {
        "move_money": TemplateEntry(move_money, ("base", "missing_parameter")),
        "pay": TemplateEntry(pay, ("base", "missing_function")),
        "balance": TemplateEntry(balance, ("base",)),
        "stocks": TemplateEntry(stocks, ("base",)),
        "lookup": TemplateEntry(lookup, ("base", "long_context")),
    },
)
