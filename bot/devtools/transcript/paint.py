"""Runs of text to terminal text: ANSI styles on a terminal, plain text anywhere else.

Colour is used only when it is asked for, and ``use_colour`` asks for it only on a terminal and never when
``NO_COLOR`` is set to anything (https://no-color.org). Without colour no markup is left: bold and italic are the
words alone, code keeps its backticks (the one mark a reader expects to see around code), struck text is overlaid
with a stroke. Both forms are the same width, so a layout made for one holds for the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TextIO

from rich.cells import cell_len

from bot.devtools.transcript.mrkdwn import Line, Mark, Run

_SGR = {
    Mark.BOLD: "1",
    Mark.MENTION: "1",
    Mark.DIM: "2",
    Mark.URL: "2",
    Mark.GUTTER: "2",
    Mark.ITALIC: "3",
    Mark.LINK: "4",
    Mark.CODE: "7",
    Mark.STRIKE: "9",
}
_STROKE = "\u0336"  # COMBINING LONG STROKE OVERLAY
_ANSI = re.compile(r"\033\[[0-9;]*m")


def use_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether to colour what goes to ``stream``: a terminal, and no ``NO_COLOR`` (any non-empty value)."""
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def merged(runs: Iterable[Run]) -> Line:
    """Neighbouring runs shown the same way as one, so a code span cut into words is painted as one span."""
    out: Line = []
    for run in runs:
        if out and out[-1].marks == run.marks:
            out[-1] = Run(out[-1].text + run.text, run.marks)
        elif run.text:
            out.append(run)
    return out


def paint(runs: Iterable[Run], colour: bool) -> str:
    return "".join(_one(run, colour) for run in merged(runs))


def _one(run: Run, colour: bool) -> str:
    text = run.text
    if Mark.CODE in run.marks:
        text = f" {text} " if colour else f"`{text}`"
    if not colour:
        if Mark.STRIKE in run.marks:
            text = "".join(char + _STROKE if not char.isspace() else char for char in text)
        return text
    codes = sorted({_SGR[mark] for mark in run.marks if mark in _SGR})
    return f"\033[{';'.join(codes)}m{text}\033[0m" if codes else text


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide emoji count two; escapes and combining marks none)."""
    return cell_len(_ANSI.sub("", text).replace(_STROKE, ""))


def line_width(runs: Iterable[Run]) -> int:
    return width(paint(runs, colour=False))


def wrap(line: Line, columns: int) -> list[Line]:
    """``line`` cut at spaces into lines of at most ``columns`` (a word longer than that is cut where it must be). A
    leading quote or code bar, and a leading indent, are repeated on each line it becomes."""
    gutter: Line = []
    for run in line:  # a bar, or an indent: what every line it wraps into starts with
        if Mark.GUTTER not in run.marks and (run.text.strip() or not run.text):
            break
        gutter.append(run)
    body = line[len(gutter) :]
    room = max(columns - line_width(gutter), 8)
    words = [Run(piece, run.marks) for run in body for piece in re.findall(r"\s+|\S+", run.text)]
    rows: list[Line] = []
    row: Line = []
    for word in words:
        if word.text.isspace() and not row and rows:
            continue  # a wrapped line starts with its first word; the first keeps its indent
        if line_width([*row, word]) <= room:
            row.append(word)
            continue
        if row:
            rows.append(row)
            row = []
        if word.text.isspace():
            continue
        while line_width([word]) > room:
            head, word = _cut(word, room)
            rows.append([head])
        row = [word]
    if row or not rows:
        rows.append(row)
    return [[*gutter, *_trimmed(r)] for r in rows]


def _cut(word: Run, room: int) -> tuple[Run, Run]:
    """The most of ``word`` that fits ``room`` columns, and the rest."""
    for at in range(len(word.text) - 1, 0, -1):
        if line_width([Run(word.text[:at], word.marks)]) <= room:
            return Run(word.text[:at], word.marks), Run(word.text[at:], word.marks)
    return Run(word.text[:1], word.marks), Run(word.text[1:], word.marks)


def _trimmed(row: Line) -> Line:
    while row and row[-1].text.isspace():
        row = row[:-1]
    return row
