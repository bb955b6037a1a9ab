"""Making text safe and readable in Slack mrkdwn.

Text the bot did not write (reasons, notes, names, principals, adapter instructions, backend errors) is rendered
only through these functions:

- it is inert: control and invisible format characters go, and & < > (Slack's only control characters) become
  entities, so it can never form a mention, a link, a date or a broadcast; a bare @here, @channel or @everyone is
  defused as well;
- it is bounded: cut with "…" so that the escaped text fits its limit, counted in UTF-16 units (the strictest way
  Slack may count), and never in the middle of an entity;
- ``escape``: one line. Line breaks and runs of spaces become one space, and backticks survive only when they
  pair up inside the text, so it cannot open a code span or a ``` block that swallows the bot's own text. Place
  it last on its line (or alone in its element), so that a stray * _ ~ has nothing of the bot's to pair with;
- ``code``: one line inside a code span the bot opens, with no backtick at all;
- ``quote``: several lines, as a block quote line by line, each line as ``escape`` makes it; put it last in its
  message.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

ELLIPSIS = "…"
GRAVE = "\u02cb"  # MODIFIER LETTER GRAVE ACCENT: looks like a backtick, opens no code span
_KEPT_FORMAT = frozenset("\u200c\u200d")  # zero-width (non-)joiners: emoji sequences and scripts need them
_LINE_BREAKS = re.compile(r"\r\n|[\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone|group)\b)", re.IGNORECASE)
_WORD_JOINER = "\u2060"  # invisible; keeps "@here" from being read as a broadcast
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def units(text: str) -> int:
    """Length in UTF-16 code units: a character outside the Basic Multilingual Plane counts twice."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2  # in C: every block of every message is measured


def _visible(text: str) -> str:
    """Line breaks as \\n; other control characters and surrogates as spaces; invisible format characters (bidi
    overrides, zero-width spaces, tags) gone."""
    kept = []
    for char in _LINE_BREAKS.sub("\n", text):
        category = unicodedata.category(char)
        if char != "\n" and category in ("Cc", "Cs"):
            kept.append(" ")
        elif category != "Cf" or char in _KEPT_FORMAT:
            kept.append(char)
    return "".join(kept)


def _balanced_backticks(line: str) -> str:
    """Backticks that pair up within the line stay (inline code); any other, and every fence, become U+02CB."""
    if "```" in line or line.count("`") % 2:
        return line.replace("`", GRAVE)
    return line


def _fit(text: str, limit: int) -> tuple[str, bool]:
    """``text`` made inert (entities, defused broadcasts) and cut to at most ``limit`` UTF-16 units; True if cut."""
    pieces = [_ENTITIES.get(char, char) for char in _BROADCAST.sub("@" + _WORD_JOINER, text)]
    if sum(units(piece) for piece in pieces) <= limit:
        return "".join(pieces), False
    kept, used = [], 0
    for piece in pieces:
        used += units(piece)
        if used > limit - 1:
            break
        kept.append(piece)
    return "".join(kept).rstrip() + ELLIPSIS, True


def escape(text: str, limit: int = 1000) -> str:
    """Text someone else wrote, inert and on one line: no pings, no forged <links|…>, no mentions, no layout."""
    shown, cut = _fit(_balanced_backticks(" ".join(_visible(text).split())), limit)
    return _balanced_backticks(shown) if cut else shown  # a cut can leave half a pair


def code(text: str, limit: int = 200) -> str:
    """Text someone else wrote, as inline code: one line, with no backtick that could end the span early."""
    inner = _fit(" ".join(_visible(text).split()).replace("`", GRAVE), limit - 2)[0]
    return f"`{inner or '?'}`"


def quote(text: str, limit: int = 2000) -> str:
    """Several lines someone else wrote, as a block quote: every line quoted, so none can leave the quote."""
    lines = [" ".join(line.split()) for line in _visible(text).split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    quoted: list[str] = []
    used = -1  # the first line has no line break before it
    for line in lines:
        room = limit - used - 1 - len("> ")
        if room < 2:
            break
        shown, cut = _fit(_balanced_backticks(line), room)
        shown = _balanced_backticks(shown) if cut else shown
        quoted.append(f"> {shown}")
        used += 1 + len("> ") + units(shown)
        if cut:
            break
    return "\n".join(quoted) or "> " + ELLIPSIS


def placeholders(text: str) -> str:
    """The bot's own text with & < > as entities, for usage lines such as `/breakglass revoke <id>`.

    Slack reads < even inside code spans, so a placeholder left raw would be taken for a link.
    """
    return "".join(_ENTITIES.get(char, char) for char in text)


def secret(value: str) -> str:
    """A one-time secret exactly as issued, so that copying it gives it back, yet inert: only entities change."""
    shown = placeholders(value)
    if "`" not in value and "\n" not in value:
        return f"`{shown}`"
    if "```" not in value:
        return f"\n```{shown}```\n"  # single backticks are plain characters inside a code block
    return f"\n{shown}\n"


def who(user_id: str | None) -> str:
    """A mention of a Slack user id; anything that is not shaped like one is shown as inert text."""
    if not user_id:
        return "someone"
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id, 40)


def when(moment: datetime | None) -> str:
    """A time every reader sees in their own time zone, with a UTC fallback for clients that cannot."""
    if moment is None:
        return "an unknown time"
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def code_block(lines: list[str], limit: int = 200) -> str:
    """Lines someone else wrote, in a ``` block the bot opens: each line cut to ``limit``, inert, with no backtick
    (so none can close the block early) and no line break of its own."""
    inner = [_fit(" ".join(_visible(line).split()).replace("`", GRAVE), limit)[0] for line in lines]
    return "```\n" + "\n".join(inner or [ELLIPSIS]) + "\n```"
