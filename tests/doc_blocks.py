"""The code blocks of Markdown pages: Python blocks and shell command lines.

Used by ``tests/test_readme.py``. A fenced block whose info string is ``python`` is a
Python block; one with no info string or ``bash``, ``sh``, ``shell`` or ``console`` is
a shell block, cut into command lines (``\\`` continues a line, ``#`` starts a comment,
a ``$`` prompt is dropped). Any other block (``mermaid``, ``text``, ``json`` ...) is
not code to run.

A block whose first line is a comment ``# not run in tests: REASON`` is collected with
that reason, and the test reports it as skipped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL_INFO = {"", "bash", "sh", "shell", "console"}
SKIP_MARK = re.compile(r"^#\s*not run in tests:\s*(?P<reason>.+?)\s*$")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page.

    Attributes
    ----------
    page : str
        The page, relative to the repository root.
    line : int
        Line number (from 1) of the block's first code line.
    kind : {"python", "shell"}
    code : str
        The block's text.
    skip : str or None
        The reason of a ``# not run in tests:`` mark.
    """

    page: str
    line: int
    kind: str
    code: str
    skip: str | None = None


@dataclass(frozen=True)
class Command:
    """One command line of a shell block.

    Attributes
    ----------
    block : Block
    line : int
        Line number of the command's first line in the page.
    text : str
        The command as written, continuation lines joined.
    argv : list of str
        The words, comments dropped.
    """

    block: Block
    line: int
    text: str
    argv: list[str]

    @property
    def where(self) -> str:
        return f"{self.block.page}:{self.line}"


def blocks(path: Path, root: Path) -> list[Block]:
    """The Python and shell blocks of a Markdown page, in page order.

    Parameters
    ----------
    path : Path
        The page.
    root : Path
        The repository root (pages are named relative to it).

    Returns
    -------
    list of Block
    """
    page = path.relative_to(root).as_posix()
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, indent = m["fence"], m["info"].lower(), len(m["indent"])
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        body = [s[indent:] if s[:indent].isspace() else s for s in lines[start:i]]
        i += 1
        kind = "python" if info in ("python", "py") else "shell" if info in SHELL_INFO else None
        if kind is None:
            continue
        first = next((s.strip() for s in body if s.strip()), "")
        mark = SKIP_MARK.match(first)
        out.append(Block(page, start + 1, kind, "\n".join(body) + "\n",
                         mark["reason"] if mark else None))
    return out


def commands(block: Block) -> list[Command]:
    """The command lines of a shell block.

    Parameters
    ----------
    block : Block
        A shell block.

    Returns
    -------
    list of Command
        Blank and comment-only lines left out.
    """
    out: list[Command] = []
    text, first = "", 0
    for n, raw in enumerate(block.code.splitlines(), start=block.line):
        if not text:
            first = n
            raw = raw.strip().removeprefix("$ ")
        if raw.rstrip().endswith("\\"):
            text += raw.rstrip()[:-1] + " "
            continue
        text += raw
        argv = shlex.split(text, comments=True)
        if argv:
            out.append(Command(block, first, " ".join(text.split()), argv))
        text = ""
    if text.strip():
        raise ValueError(f"{block.page}:{first}: the block ends inside a continued line")
    return out
