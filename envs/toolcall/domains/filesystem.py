"""A simulated Unix-like file system: folders, text files and a current directory."""

from __future__ import annotations

import json
import posixpath
from typing import Any

import numpy as np

from earlyexp import assets
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

State = dict[str, Any]  # {"cwd": str, "dirs": {path: 1}, "files": {path: text}}
MAX_PATH = 300
VOCAB = json.loads(assets.read_text("toolcall", "vocab.json"))


def _abs(st: State, path: str) -> str:
    if not path or len(path) > MAX_PATH or "\x00" in path:
        raise ToolError(f"Invalid path {path[:40]!r}.")
    full = posixpath.normpath(posixpath.join(st["cwd"], path))
    return "/" + full.lstrip("/")


def _parent_exists(st: State, path: str) -> None:
    parent = posixpath.dirname(path)
    if parent not in st["dirs"]:
        raise ToolError(f"No such directory: {parent}")


def _children(st: State, folder: str) -> list[str]:
    prefix = folder.rstrip("/") + "/"
    out = [
        p[len(prefix) :] + "/" for p in st["dirs"] if posixpath.dirname(p) == folder and p != "/"
    ]
    out += [p[len(prefix) :] for p in st["files"] if posixpath.dirname(p) == folder]
    return sorted(out)


def pwd(st: State) -> str:
    """Print the current directory."""
    return st["cwd"]


def ls(st: State, path: str = ".") -> str:
    """List a directory."""
    folder = _abs(st, path)
    if folder not in st["dirs"]:
        raise ToolError(f"No such directory: {folder}")
    names = _children(st, folder)
    return "\n".join(names) if names else "(empty directory)"


def cd(st: State, path: str) -> str:
    """Change the current directory."""
    folder = _abs(st, path)
    if folder not in st["dirs"]:
        raise ToolError(f"No such directory: {folder}")
    st["cwd"] = folder
    return f"Current directory: {folder}"


def mkdir(st: State, path: str) -> str:
    """Create a directory."""
    folder = _abs(st, path)
    if folder in st["dirs"] or folder in st["files"]:
        raise ToolError(f"Already exists: {folder}")
    _parent_exists(st, folder)
    st["dirs"][folder] = 1
    return f"Created directory {folder}"


def write_file(st: State, path: str, content: str) -> str:
    """Create or overwrite a text file."""
    target = _abs(st, path)
    if target in st["dirs"]:
        raise ToolError(f"Is a directory: {target}")
    _parent_exists(st, target)
    st["files"][target] = content
    return f"Wrote {len(content)} characters to {target}"


def cat(st: State, path: str) -> str:
    """Print a file."""
    target = _abs(st, path)
    if target not in st["files"]:
        raise ToolError(f"No such file: {target}")
    return st["files"][target]


def _destination(st: State, source: str, destination: str) -> tuple[str, str]:
    src, dst = _abs(st, source), _abs(st, destination)
    if src not in st["files"]:
        raise ToolError(f"No such file: {src}")
    if dst in st["dirs"]:
        dst = posixpath.join(dst, posixpath.basename(src))
    _parent_exists(st, dst)
    if dst in st["files"] or dst in st["dirs"]:
        raise ToolError(f"Already exists: {dst}")
    return src, dst


def mv(st: State, source: str, destination: str) -> str:
    """Move or rename a file."""
    src, dst = _destination(st, source, destination)
    st["files"][dst] = st["files"].pop(src)
    return f"Moved {src} to {dst}"


def cp(st: State, source: str, destination: str) -> str:
    """Copy a file."""
    src, dst = _destination(st, source, destination)
    st["files"][dst] = st["files"][src]
    return f"Copied {src} to {dst}"


def rm(st: State, path: str) -> str:
    """Remove a file or an empty directory."""
    target = _abs(st, path)
    if target in st["files"]:
        del st["files"][target]
    elif target in st["dirs"] and target != "/":
        if _children(st, target):
            raise ToolError(f"Directory not empty: {target}")
        del st["dirs"][target]
    else:
        raise ToolError(f"No such file or directory: {target}")
    return f"Removed {target}"


def find(st: State, name: str, path: str = "/") -> str:
    """Find files whose name contains a string."""
    root = _abs(st, path).rstrip("/") + "/"
    hits = sorted(p for p in st["files"] if p.startswith(root) and name in posixpath.basename(p))
    return "\n".join(hits) if hits else f"No files matching {name!r} under {root}"


def wc(st: State, path: str) -> str:
    """Count lines, words and characters of a file."""
    text = cat(st, path)
    lines = len(text.split("\n")) if text else 0
    return f"{lines} lines, {len(text.split())} words, {len(text)} characters in {_abs(st, path)}"


def _p(name: str, doc: str, required: bool = True, default: Any = None, type: str = "str") -> Param:
    return Param(name, type, doc, required, default)


PATH = _p("path", "an absolute path or one relative to the current directory")
FUNCTIONS: tuple[ToolSpec, ...] = (
    ToolSpec("pwd", "Return the current directory.", (), pwd),
    ToolSpec(
        "ls",
        "List a directory (folders end with /).",
        (_p("path", "directory to list", False, "."),),
        ls,
    ),
    ToolSpec("cd", "Change the current directory.", (PATH,), cd),
    ToolSpec("mkdir", "Create a directory (its parent must exist).", (PATH,), mkdir, mutates=True),
    ToolSpec(
        "write_file",
        "Create or overwrite a text file.",
        (PATH, _p("content", "the full text")),
        write_file,
        mutates=True,
    ),
    ToolSpec("cat", "Return the text of a file.", (PATH,), cat),
    ToolSpec(
        "mv",
        "Move or rename a file; into a folder when the destination is one.",
        (_p("source", "file to move"), _p("destination", "new path or existing folder")),
        mv,
        mutates=True,
    ),
    ToolSpec(
        "cp",
        "Copy a file; into a folder when the destination is one.",
        (_p("source", "file to copy"), _p("destination", "new path or existing folder")),
        cp,
        mutates=True,
    ),
    ToolSpec("rm", "Remove a file or an empty directory.", (PATH,), rm, mutates=True),
    ToolSpec(
        "find",
        "Find files whose name contains a string.",
        (_p("name", "part of the file name"), _p("path", "folder to search", False, "/")),
        find,
    ),
    ToolSpec("wc", "Count the lines, words and characters of a file.", (PATH,), wc),
)


def flatten(st: State) -> dict[str, Any]:
    """Scored view: every folder and file with its content (the current directory is not scored)."""
    out: dict[str, Any] = {f"folder {p}": True for p in st["dirs"]}
    out.update({f"file {p}": text for p, text in st["files"].items()})
    return out


def describe(key: str, value: Any) -> str:
    """Rubric line for one scored key."""
    if value is None:
        return f"{key} does not exist"
    return f"{key} exists" if value is True else f"{key} exists with the expected content"


# ---------------------------------------------------------------------- task templates
def _text(rng: np.random.Generator, lines: int) -> str:
    words = VOCAB["words"]
    return "\n".join(
        " ".join(pick(rng, words) for _ in range(int(rng.integers(3, 8)))) for _ in range(lines)
    )


def _tree(rng: np.random.Generator, n_files: int) -> State:
    folders = [str(f) for f in rng.choice(VOCAB["folders"], size=3, replace=False)]
    dirs = {"/": 1, "/home": 1, "/home/user": 1, **{f"/home/user/{f}": 1 for f in folders}}
    files: dict[str, str] = {}
    while len(files) < n_files:
        name = f"{pick(rng, VOCAB['file_stems'])}.{pick(rng, VOCAB['extensions'])}"
        files[f"/home/user/{pick(rng, folders)}/{name}"] = _text(rng, int(rng.integers(2, 12)))
    return {"cwd": "/home/user", "dirs": dirs, "files": files}


def _some_file(rng: np.random.Generator, st: State) -> str:
    return pick(rng, sorted(st["files"]))


def organize(rng: np.random.Generator, variant: str) -> Draft:
    """Make a folder and move a file into it (missing function: nothing can move files)."""
    st = _tree(rng, int(rng.integers(4, 9)))
    src = _some_file(rng, st)
    folder = "/home/user/" + pick(
        rng, [f for f in VOCAB["folders"] if f"/home/user/{f}" not in st["dirs"]]
    )
    user = f"Create a folder {folder} and move {src} into it."
    if variant == "missing_function":
        refusal = (respond(REFUSAL.format(what="move files")),)
        return Draft(st, [Turn(user, refusal, refuse=True)], hidden=("mv", "cp", "write_file"))
    plan = (
        call_str("mkdir", path=folder),
        call_str("mv", source=src, destination=folder),
        respond(f"Done: {posixpath.basename(src)} is now in {folder}."),
    )
    return Draft(st, [Turn(user, plan)])


def write_note(rng: np.random.Generator, variant: str) -> Draft:
    """Write a file with given text (missing parameter: the text is not given)."""
    st = _tree(rng, int(rng.integers(3, 7)))
    folder = pick(rng, sorted(d for d in st["dirs"] if d.count("/") == 3))
    path = f"{folder}/{pick(rng, VOCAB['file_stems'])}_{int(rng.integers(100))}.txt"
    text = " ".join(pick(rng, VOCAB["words"]) for _ in range(6))
    write = call_str("write_file", path=path, content=text)
    done = respond(f"Created {path}.")
    if variant == "missing_parameter":
        return ask_first(
            st, f"Create a file {path} for my notes.", f"What text should I write in {path}?",
            ("what", "text", "content", "write"), "the file's content",
            f"It should contain exactly: {text}", (write, done),
        )  # fmt: skip
    return Draft(st, [Turn(f"Create a file {path} containing exactly: {text}", (write, done))])


def count_lines(rng: np.random.Generator, variant: str) -> Draft:
    """Report the number of lines of a file."""
    st = _tree(rng, int(rng.integers(3, 8)))
    path = _some_file(rng, st)
    n = len(st["files"][path].split("\n"))
    plan = (call_str("wc", path=path), respond(f"{path} has {n} lines."))
    return Draft(st, [Turn(f"How many lines does {path} have?", plan, answers=(f"{n} lines",))])


def archive(rng: np.random.Generator, variant: str) -> Draft:
    """Move one invoice out of an archive folder (long context: hundreds of look-alike files)."""
    st = _tree(rng, 3)
    years = range(2005, 2025) if variant == "long_context" else range(2021, 2024)
    months = range(1, 13) if variant == "long_context" else rng.choice(12, 4, replace=False) + 1
    names = [
        f"{kind}_{y}_{m:02d}.pdf" for y in years for m in months for kind in ("invoice", "receipt")
    ]
    if variant == "long_context":
        names += [f"statement_{y}_q{q}.pdf" for y in years for q in range(1, 5)]
    st["dirs"].update({"/archive": 1, "/home/user/finance": 1})
    for name in names:
        st["files"][f"/archive/{name}"] = f"scanned document {name}"
    target = pick(rng, sorted(n for n in names if n.startswith("invoice")))
    _, y, m = target[:-4].split("_")
    month = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ][int(m) - 1]
    user = f"Find the invoice for {month} {y} in /archive and move it to /home/user/finance."
    plan = (
        call_str("ls", path="/archive"),
        call_str("mv", source=f"/archive/{target}", destination="/home/user/finance"),
        respond(f"Moved {target} to /home/user/finance."),
    )
    return Draft(st, [Turn(user, plan)])


def backup(rng: np.random.Generator, variant: str) -> Draft:
    """Two turns: copy a file into a new backup folder, then delete the original."""
    st = _tree(rng, int(rng.integers(4, 9)))
    src = _some_file(rng, st)
    first = (
        call_str("mkdir", path="/backup"),
        call_str("cp", source=src, destination="/backup"),
        respond(f"Copied {src} to /backup."),
    )
    second = (call_str("rm", path=src), respond(f"Deleted {src}."))
    return Draft(
        st,
        [
            Turn(f"Create a folder /backup and copy {src} into it.", first),
            Turn(f"Thanks. Now delete the original {src}.", second),
        ],
    )


DOMAIN = Domain(
    "filesystem",
    "You control a file system (paths like /home/user/docs/a.txt).",
    FUNCTIONS,
    flatten,
    describe,
    {
        "organize": TemplateEntry(organize, ("base", "missing_function")),
        "write_note": TemplateEntry(write_note, ("base", "missing_parameter")),
        "count_lines": TemplateEntry(count_lines, ("base",)),
        "archive": TemplateEntry(archive, ("base", "long_context")),
        "backup": TemplateEntry(backup, ("base",)),
    },
)
