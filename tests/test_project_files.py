"""The project's own files: the license pyproject declares, the citation, doc references."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = dict(
    re.findall(r'^(name|version|license) = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
)  # tomllib is Python 3.11+
TOP = ("envs", "agents", "harness", "benchmarks", "docs", "examples", "scripts", "tests", "assets")
# a path into the project (``harness/report.py``, ``docs/tutorial.md``) or a capitalised doc
# (``STYLE.md``); lower-case bare names (``table.md``, ``curve.json``) are run outputs
REFERENCE = re.compile(
    rf"(?<![\w/.])((?:{'|'.join(TOP)}|shared)/[\w/.-]*\w\.(?:py|md|sh|cff)|[A-Z]+\.(?:md|cff))\b"
)
SOURCES = sorted(
    p.relative_to(ROOT).as_posix()
    for top in ("envs", "agents", "harness", "src", "benchmarks", "examples", "docs", "tests")
    for p in (ROOT / top).rglob("*")
    if p.suffix in (".py", ".md") and "__pycache__" not in p.parts
) + ["README.md", "Makefile", "setup.py", "pyproject.toml"]
TO_CREATE = {"agents/methods/mine.py"}  # the README tells the reader to write it
PENDING: dict[str, str] = {}  # source -> why its reference is not fixed yet (xfail)


def test_license_is_the_mit_text_pyproject_declares():
    assert PYPROJECT["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_citation_names_this_version_and_license():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == PYPROJECT["version"]
    assert cff["license"] == PYPROJECT["license"]
    assert cff["authors"] and cff["title"].startswith(PYPROJECT["name"])
    assert all(ref["title"] and ref["authors"] for ref in cff["references"])


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(s, marks=pytest.mark.xfail(reason=PENDING[s], strict=False))
        if s in PENDING
        else s
        for s in SOURCES
    ],
)
def test_doc_references_name_files_that_exist(source):
    if source == "tests/test_project_files.py":
        return  # this file names the pattern, not a file
    text = (ROOT / source).read_text()
    missing = {ref for ref in REFERENCE.findall(text) if not (ROOT / ref).exists()} - TO_CREATE
    assert not missing, f"{source} refers to files not in the project: {sorted(missing)}"
