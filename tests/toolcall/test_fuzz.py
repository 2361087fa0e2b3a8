"""Every simulator function, fed hostile but well-typed arguments, fails only with ToolError."""

import numpy as np
import pytest

from earlyexp.envs.toolcall.calls import BoundCall, ToolError
from earlyexp.envs.toolcall.tasks import DOMAINS, clone, generate_task, run_calls

VALUES = {
    "str": [
        "",
        " ",
        "/",
        "..",
        "../../..",
        "a" * 5000,
        "\x00",
        "🙂",
        "checking",
        "ACME",
        "2024-02-30",
        "2024-07-01",
        "25:00",
        "09:00",
        "/home/user",
        "B1001",
        "E1",
        "-1",
        "nan",
    ],
    "int": [0, -1, 1, 7, 10**18, -(10**18), 999, 1001],
    "float": [0.0, -1.0, 0.001, 1e308, 1e999, -1e999, 12.5, 10**30, 3],
    "bool": [True, False],
}


def strings_in(value, out):
    """Every string in a JSON-like state (keys and values): valid ids, names and paths."""
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            strings_in(v, out)
    elif isinstance(value, list):
        for v in value:
            strings_in(v, out)
    elif isinstance(value, str):
        out.add(value)
    return out


def draw(rng, kind, known):
    if kind == "str" and rng.random() < 0.7:
        return known[int(rng.integers(len(known)))]
    return VALUES[kind][int(rng.integers(len(VALUES[kind])))]


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_functions_raise_only_tool_errors(domain):
    rng = np.random.default_rng(0)
    states = []
    for i in range(200):
        task = generate_task(np.random.default_rng(i), "test")
        if task.domain == domain:
            states.append(task.initial)
        if len(states) == 3:
            break
    for st in states:
        known = sorted(strings_in(st, set()))
        for spec in DOMAINS[domain].functions:
            for _ in range(150):
                values = tuple((p.name, draw(rng, p.type, known)) for p in spec.params)
                before = clone(st)
                try:
                    run_calls(st, [BoundCall(spec, values)])
                except ToolError:
                    pass
                assert st == before  # the caller's state is never touched
