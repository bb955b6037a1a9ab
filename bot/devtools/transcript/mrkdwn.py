"""Slack mrkdwn read as a person reads it in Slack: runs of text with the formatting Slack would show.

Parsing follows Slack's own rules, so that text the bot escaped reads back exactly as it was typed:

- ``<…>`` is a token wherever it is (mentions, groups, channels, broadcasts, links, dates), even inside code;
- a code span or a ``` block is shown as written, with no emphasis inside it;
- ``*bold*``, ``_italic_`` and ``~strike~`` only at word boundaries: the marker opens after a space, punctuation or the
  start of the line and before a non-space, and closes the other way round, so ``2*3``, ``a * b`` and
  ``orders_stuck_tmp`` stay as typed;
- entities (``&lt;`` ``&gt;`` ``&amp;``) are decoded last, so escaped text never turns into a token or a marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Mark(StrEnum):
    BOLD = "bold"
    ITALIC = "italic"
    STRIKE = "strike"
    CODE = "code"  # an inline code span
    PRE = "pre"  # a line of a ``` block
    LINK = "link"  # a link's label
    URL = "url"  # a link's address, shown after its label
    MENTION = "mention"  # a person, a group, a channel or a broadcast
    GUTTER = "gutter"  # the bar before a quoted or preformatted line: repeated when the line wraps
    DIM = "dim"  # context blocks, hints, placeholders


@dataclass(frozen=True)
class Run:
    """Text shown one way."""

    text: str
    marks: frozenset[Mark] = frozenset()

    def plus(self, *marks: Mark) -> Run:
        return Run(self.text, self.marks | set(marks))


Line = list[Run]

QUOTE_BAR = "▎ "
PRE_BAR = "┆ "

_ENTITY = re.compile(r"&(lt|gt|amp);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}
_TOKEN = re.compile(r"<([^<>\n]+)>")
_SLOT = re.compile(r"\ue000(\d+)\ue001")  # a token set aside while the text around it is parsed
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_EMPHASIS = re.compile(r"(?<![\w*_~])([*_~])(?=[^\s*_~])(.+?)(?<=[^\s])\1(?![\w*_~])")
_MARKERS = {"*": Mark.BOLD, "_": Mark.ITALIC, "~": Mark.STRIKE}
_QUOTE = re.compile(r"^(?:>|&gt;) ?")


def decode(text: str) -> str:
    """Slack's three entities, in one pass, so ``&amp;lt;`` reads back as ``&lt;``."""
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def token(inner: str, names: Mapping[str, str]) -> list[Run]:
    """What Slack shows for ``<inner>``: a name for an id (as ``names`` spells it), a link's label, a date's
    fallback."""
    head, _, label = inner.partition("|")
    if head.startswith("@"):
        uid = head[1:]
        return [Run("@" + names.get(uid, decode(label) or uid), frozenset({Mark.MENTION}))]
    if head.startswith("#"):
        cid = head[1:]
        shown = names.get(cid) or "#" + (decode(label) or cid)
        return [Run(shown, frozenset({Mark.MENTION}))]
    if head.startswith("!subteam^"):
        gid = head.removeprefix("!subteam^")
        return [Run(names.get(gid) or decode(label) or "@" + gid, frozenset({Mark.MENTION}))]
    if head.startswith("!date^"):
        return [Run(decode(label) or head)]
    if head.startswith("!"):
        return [Run("@" + (decode(label).lstrip("@") or head[1:]), frozenset({Mark.MENTION}))]
    if re.match(r"(?:https?|mailto):", head):
        url = decode(head)
        if not label or decode(label) == url:
            return [Run(url, frozenset({Mark.LINK}))]
        return [Run(decode(label), frozenset({Mark.LINK})), Run(f" ({url})", frozenset({Mark.URL}))]
    return [Run(decode(f"<{inner}>"))]


def _emphasis(text: str, marks: frozenset[Mark]) -> list[tuple[str, frozenset[Mark]]]:
    """``text`` (no code, tokens set aside) split into pieces with the emphasis Slack would give them."""
    pieces: list[tuple[str, frozenset[Mark]]] = []
    at = 0
    for found in _EMPHASIS.finditer(text):
        if found.start() > at:
            pieces.append((text[at : found.start()], marks))
        pieces += _emphasis(found.group(2), marks | {_MARKERS[found.group(1)]})
        at = found.end()
    if at < len(text):
        pieces.append((text[at:], marks))
    return pieces


def _expand(text: str, marks: frozenset[Mark], tokens: list[list[Run]]) -> Line:
    """Put the set-aside tokens back into ``text``, which takes ``marks``; decode what is left."""
    runs: Line = []
    at = 0
    for slot in _SLOT.finditer(text):
        if slot.start() > at:
            runs.append(Run(decode(text[at : slot.start()]), marks))
        runs += [run.plus(*marks) for run in tokens[int(slot.group(1))]]
        at = slot.end()
    if at < len(text):
        runs.append(Run(decode(text[at:]), marks))
    return [run for run in runs if run.text]


def inline(text: str, names: Mapping[str, str], marks: frozenset[Mark] = frozenset()) -> Line:
    """One line of mrkdwn (no ``` block in it)."""
    text, tokens = _set_aside(text, names)
    runs: Line = []
    at = 0
    for span in _CODE_SPAN.finditer(text):
        for piece, piece_marks in _emphasis(text[at : span.start()], marks):
            runs += _expand(piece, piece_marks, tokens)
        runs += _expand(span.group(1), marks | {Mark.CODE}, tokens)
        at = span.end()
    for piece, piece_marks in _emphasis(text[at:], marks):
        runs += _expand(piece, piece_marks, tokens)
    return runs


def lines(text: str, names: Mapping[str, str], marks: frozenset[Mark] = frozenset()) -> list[Line]:
    """mrkdwn as the lines Slack shows: quotes behind a bar, ``` blocks as written behind another."""
    parts = text.split("```")
    if len(parts) % 2 == 0:  # an unpaired fence is text, as in Slack
        parts[-2:] = [parts[-2] + "```" + parts[-1]]
    shown: list[Line] = []
    for index, part in enumerate(parts):
        if index % 2:
            body = part.removeprefix("\n").removesuffix("\n")
            for row in body.split("\n"):
                gutter = Run(PRE_BAR, frozenset({Mark.GUTTER}))
                shown.append([gutter, *(run.plus(Mark.PRE) for run in _tokens_only(row, names, marks))])
            continue
        rows = part.split("\n")
        if index > 0:  # text right after a closing fence starts a new line in Slack
            rows = rows[1:] if rows and not rows[0] else rows
        if index < len(parts) - 1 and rows and not rows[-1]:
            rows = rows[:-1]
        for row in rows:
            quoted = _QUOTE.match(row)
            if quoted:
                bar = Run(QUOTE_BAR, frozenset({Mark.GUTTER}))
                shown.append([bar, *inline(row[quoted.end() :], names, marks)])
            else:
                shown.append(inline(row, names, marks))
    return shown


def _tokens_only(text: str, names: Mapping[str, str], marks: frozenset[Mark]) -> Line:
    """A preformatted line: tokens and entities as Slack shows them, and no emphasis."""
    text, tokens = _set_aside(text, names)
    return _expand(text, marks, tokens)


def _set_aside(text: str, names: Mapping[str, str]) -> tuple[str, list[list[Run]]]:
    """``text`` with each ``<…>`` token replaced by a numbered slot, and what each slot shows."""
    tokens: list[list[Run]] = []

    def aside(found: re.Match[str]) -> str:
        tokens.append(token(found.group(1), names))
        return f"\ue000{len(tokens) - 1}\ue001"

    return _TOKEN.sub(aside, text.replace("\ue000", "").replace("\ue001", "")), tokens
