"""What a person typed after /breakglass, as a command. Pure parsing: no policy, no database."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

EMERGENCY_FLAG = "--emergency"
# Phones turn a typed "--" into a dash; the flag still counts, rather than becoming part of the reason.
_EMERGENCY_SPELLINGS = frozenset({EMERGENCY_FLAG, "\u2014emergency", "\u2013emergency", "\u2013-emergency"})
MAX_TEXT = 3000  # Slack caps slash command text well below this; anything longer is not a person typing
MAX_SHOWN = 40  # characters of a typed word quoted back in a message
# A word after the resource is its duration only when it is unmistakably one. Words in durations.py's grammar
# (digits, each followed by d, h, m or s) are durations. So is anything a person plainly meant as one but wrote
# otherwise (2hrs, 1.5h, 90min, 1x, "2 hours"): it is taken as the duration so that the rules refuse it with the
# forms they read, instead of quietly making it the start of the reason. A bare number (500) or a word like 5xx
# or 100ms is prose, so the reason starts there and the resource's default duration applies.
_DURATION_WORD = re.compile(r"(?:[0-9]+[dhms])+", re.IGNORECASE | re.ASCII)
_UNIT = r"(?:s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?|mo|mths?|months?|y|yrs?|years?)"
_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
# Numbers each followed by letters (1h30m, 1.5h, 2hrs, 1x), 1h30 too. Possessive, so a word that almost matches
# fails in one pass: typed text reaches this before the ack, and a regex that backtracks would stall every thread.
_NUMBERS_AND_LETTERS = re.compile(r"(?:[0-9]++(?:[.,][0-9]++)?+[a-z]++)++[0-9]*+[.,;:]?+", re.IGNORECASE | re.ASCII)
_LETTERS = re.compile(r"[a-z]+", re.IGNORECASE | re.ASCII)
_UNIT_NAME = re.compile(_UNIT, re.IGNORECASE | re.ASCII)
_UNIT_WORD = re.compile(rf"{_UNIT}[.,;:]?", re.IGNORECASE | re.ASCII)
_BARE_NUMBER = re.compile(_NUMBER)
_ID = re.compile(r"#?([0-9]{1,10})")
MAX_REQUEST_ID = 2**31 - 1  # the database's INTEGER: a larger number is no request, and PostgreSQL refuses it
RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # as the policy requires of resource names
LEVEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # as the policy requires of level names
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone|group)\b)", re.IGNORECASE)

USAGE = (
    "`/breakglass` alone opens a form that asks for access step by step\n"
    "`/breakglass <resource>[:level] [duration] <reason…>` asks for access (add `--emergency` to break the glass)\n"
    "`/breakglass list` shows what you may request · `/breakglass mine` shows your requests and grants\n"
    "`/breakglass revoke <id>` ends access early · `/breakglass extend <id> <duration>` gives active access more time\n"
    "`/breakglass review <id> <notes…>` writes your review, or signs off someone else's · "
    "`/breakglass review <id>` shows a review · "
    "`/breakglass drill <resource>` runs its drill now (approvers) · "
    "`/breakglass help` shows this"
)


# Bidirectional overrides make stored text read differently from what it is; control characters (NUL among them)
# are refused by PostgreSQL and mean nothing in a reason. Other invisible format characters (zero-width spaces,
# byte-order marks, tag characters) can hide text or make two equal-looking words differ; only the joiners that
# emoji sequences and some scripts need are kept.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_JOINERS = frozenset("\u200c\u200d")


def _cleaned(ch: str) -> str:
    category = unicodedata.category(ch)
    if ch in _BIDI_CONTROLS or (category in ("Cc", "Cs") and ch not in "\t\n"):
        return " "
    return "" if category == "Cf" and ch not in _JOINERS else ch


def clean(text: str) -> str:
    """Typed text without control characters, surrogates or bidi overrides (each becomes a space), and without
    other invisible format characters."""
    return "".join(_cleaned(ch) for ch in text)


def shown(word: str) -> str:
    """A word someone typed, fit to quote back in a message: one line, at most MAX_SHOWN characters, and inert.

    Messages are Slack mrkdwn: & < > are its control characters (entities here, so no mention or link can be
    formed), a backtick would end the message's own code spans, and a bare @here gets an invisible word joiner.
    """
    one_line = "".join(" " if ch.isspace() else ch for ch in clean(word)).replace("`", "'")
    if len(one_line) > MAX_SHOWN:
        one_line = one_line[: MAX_SHOWN - 1] + "…"
    inert = one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060", inert)


def _usage(line: str) -> str:
    """A usage line as inline code; its <placeholders> as entities, which Slack would otherwise read as links."""
    return "`" + line.replace("<", "&lt;").replace(">", "&gt;") + "`"


class CommandError(ValueError):
    """The text is not a command; the message says what is allowed."""


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class ListResources:
    pass


@dataclass(frozen=True)
class Mine:
    pass


@dataclass(frozen=True)
class Revoke:
    request_id: int


@dataclass(frozen=True)
class Extend:
    request_id: int
    duration: str  # as typed, its words joined by one space; checked against the resource's limits by the rules


@dataclass(frozen=True)
class RecordReview:
    """The holder's account, or someone else's sign-off: who types it decides which."""

    request_id: int
    notes: str


@dataclass(frozen=True)
class ShowReview:
    """`/breakglass review <id>` with nothing after it: the review packet."""

    request_id: int


@dataclass(frozen=True)
class Ask:
    resource: str
    duration: str | None  # as typed, its words joined by one space; None means the resource's default
    reason: str
    emergency: bool
    level: str | None = None  # `orders-db:write`; None asks for the resource's first (least privileged) level


@dataclass(frozen=True)
class Drill:
    """`/breakglass drill <resource>[:level]`: an approver runs the resource's drill now."""

    resource: str
    level: str | None = None


Command = Help | ListResources | Mine | Revoke | Extend | RecordReview | ShowReview | Ask | Drill


def _request_id(word: str | None, usage: str) -> int:
    match = _ID.fullmatch(word or "")
    if match is None or int(match.group(1)) > MAX_REQUEST_ID:
        what = f"'{shown(word)}' is not a request id" if word else "A request id is missing"
        raise CommandError(f"{what}. Use {usage}; `/breakglass mine` lists your ids.")
    return int(match.group(1))


def _meant_as_duration(word: str) -> bool:
    """A number with a time unit or with any single letter (1x, 1w: the grammar's shape with an unknown unit)."""
    if not _NUMBERS_AND_LETTERS.fullmatch(word):
        return False
    return all(len(run) == 1 or _UNIT_NAME.fullmatch(run) for run in _LETTERS.findall(word))


def duration_words(words: list[str]) -> int:
    """How many of the leading words make up a duration (0: none, so the default applies).

    Consecutive duration words join ("1h 30m" is 1h30m), as does a number followed by a unit word ("2 hours",
    which the rules then refuse, saying what durations look like). Whether the joined words are a valid duration
    is for parse_duration to say: "30m 1h" and "1h30m 15m" are refused there, not guessed at here.
    """
    taken = 0
    while taken < len(words):
        word = words[taken]
        if _DURATION_WORD.fullmatch(word) or _meant_as_duration(word):
            taken += 1
        elif taken + 1 < len(words) and _BARE_NUMBER.fullmatch(word) and _UNIT_WORD.fullmatch(words[taken + 1]):
            taken += 2
        else:
            break
    return taken


def _is_flag(word: str) -> bool:
    return word.lower() in _EMERGENCY_SPELLINGS


def parse(text: str) -> Command:
    if len(text) > MAX_TEXT:
        raise CommandError(f"That is too long ({len(text)} characters; at most {MAX_TEXT}).")
    words = clean(text).split()
    # The flag means something only in an access request; anywhere else it is a word like any other, so review
    # notes that mention it keep it. Before a subcommand it is refused rather than ignored.
    flags = 0
    while flags < len(words) and _is_flag(words[flags]):
        flags += 1
    if flags == len(words):
        return Help()
    head, rest = words[flags].lower(), words[flags + 1 :]
    if head in ("help", "-h", "--help"):
        return Help()
    if flags and head in ("list", "mine", "revoke", "extend", "review", "drill"):
        raise CommandError(
            f"`{EMERGENCY_FLAG}` goes only with an access request: "
            + _usage(f"/breakglass <resource> [duration] <reason…> {EMERGENCY_FLAG}")
            + "."
        )
    if head == "list":
        return ListResources()
    if head == "mine":
        return Mine()
    if head == "revoke":
        return Revoke(_request_id(rest[0] if rest else None, _usage("/breakglass revoke <id>")))
    if head == "extend":
        usage = _usage("/breakglass extend <id> <duration>") + ", e.g. `/breakglass extend 42 30m`"
        request_id = _request_id(rest[0] if rest else None, usage)
        typed = rest[1:]
        if len(typed) != 1 and (not typed or duration_words(typed) != len(typed)):
            raise CommandError(f"Say by how long, and nothing else. Use {usage}.")
        return Extend(request_id, " ".join(typed))
    if head == "review":
        request_id = _request_id(rest[0] if rest else None, _usage("/breakglass review <id> <notes…>"))
        notes = " ".join(rest[1:]).strip()
        return RecordReview(request_id, notes) if notes else ShowReview(request_id)
    if head == "drill":
        return _drill(rest)
    if head.startswith("-"):
        raise CommandError(f"Unknown option '{shown(words[flags])}'. The only option is `{EMERGENCY_FLAG}`.")
    head, colon, level = head.partition(":")
    if not RESOURCE_NAME.fullmatch(head):
        raise CommandError(
            f"'{shown(words[flags])}' is not a resource name: those are lower-case letters, digits, '.', '_' and '-'. "
            "`/breakglass list` shows what you may request."
        )
    if colon and not LEVEL_NAME.fullmatch(level):
        raise CommandError(
            f"'{shown(words[flags])}' does not name a level: use "
            + _usage("<resource>:<level>")
            + f", e.g. `{head}:read`; "
            "`/breakglass list` shows each resource's levels."
        )
    emergency = flags > 0 or any(_is_flag(word) for word in rest)
    rest = [word for word in rest if not _is_flag(word)]
    taken = duration_words(rest)
    duration = " ".join(rest[:taken]) or None
    reason = " ".join(rest[taken:])
    return Ask(resource=head, duration=duration, reason=reason, emergency=emergency, level=level or None)


def _drill(rest: list[str]) -> Drill:
    usage = _usage("/breakglass drill <resource>[:level]")
    if len(rest) != 1:
        raise CommandError(f"Name one resource to drill, and nothing else. Use {usage}.")
    resource, _, level = rest[0].lower().partition(":")
    if not RESOURCE_NAME.fullmatch(resource) or (level and not LEVEL_NAME.fullmatch(level)):
        raise CommandError(f"'{shown(rest[0])}' is not a resource (or resource:level). Use {usage}.")
    return Drill(resource, level or None)
