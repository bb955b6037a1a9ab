"""What a person typed after /breakglass, as a command. Pure parsing: no policy, no database."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

EMERGENCY_FLAG = "--emergency"
MAX_TEXT = 3000  # Slack caps slash command text well below this; anything longer is not a person typing
_DURATION_LIKE = re.compile(r"\d")
_ID = re.compile(r"#?(\d{1,12})")

USAGE = (
    "`/breakglass <resource> [duration] <reason…>` asks for access (add `--emergency` to break the glass)\n"
    "`/breakglass list` shows what you may request · `/breakglass mine` shows your requests and grants\n"
    "`/breakglass revoke <id>` ends access early · `/breakglass review <id> <notes…>` records a review\n"
    "`/breakglass help` shows this"
)


# Bidirectional overrides make stored text read differently from what it is; control characters (NUL among them)
# are refused by PostgreSQL and mean nothing in a reason.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean(text: str) -> str:
    """Typed text without control characters, surrogates or bidi overrides; each becomes a space."""
    return "".join(
        " " if ch in _BIDI_CONTROLS or (unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n") else ch
        for ch in text
    )


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
class RecordReview:
    request_id: int
    notes: str


@dataclass(frozen=True)
class Ask:
    resource: str
    duration: str | None  # as typed; None means the resource's default
    reason: str
    emergency: bool


Command = Help | ListResources | Mine | Revoke | RecordReview | Ask


def _request_id(word: str | None, usage: str) -> int:
    match = _ID.fullmatch(word or "")
    if match is None:
        shown = f"'{word}' is not a request id" if word else "A request id is missing"
        raise CommandError(f"{shown}. Use {usage}; `/breakglass mine` lists your ids.")
    return int(match.group(1))


def parse(text: str) -> Command:
    if len(text) > MAX_TEXT:
        raise CommandError(f"That is too long ({len(text)} characters; at most {MAX_TEXT}).")
    words = clean(text).split()
    emergency = EMERGENCY_FLAG in (word.lower() for word in words)
    words = [word for word in words if word.lower() != EMERGENCY_FLAG]
    if not words:
        return Help()
    head, rest = words[0].lower(), words[1:]
    if head in ("help", "-h", "--help"):
        return Help()
    if head == "list":
        return ListResources()
    if head == "mine":
        return Mine()
    if head == "revoke":
        return Revoke(_request_id(rest[0] if rest else None, "`/breakglass revoke <id>`"))
    if head == "review":
        request_id = _request_id(rest[0] if rest else None, "`/breakglass review <id> <notes…>`")
        notes = " ".join(rest[1:]).strip()
        if not notes:
            raise CommandError("Notes are missing. Use `/breakglass review <id> <what happened and what follows>`.")
        return RecordReview(request_id, notes)
    if head.startswith("-"):
        raise CommandError(f"Unknown option '{words[0]}'. The only option is `{EMERGENCY_FLAG}`.")
    duration = rest[0] if rest and _DURATION_LIKE.match(rest[0]) else None
    reason = " ".join(rest[1:] if duration else rest).strip()
    return Ask(resource=head, duration=duration, reason=reason, emergency=emergency)
