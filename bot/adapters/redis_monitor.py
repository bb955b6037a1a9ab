"""The text of a MONITOR stream: its lines parsed, their passwords blanked, and commands written for people.

Invariant: what leaves ``shown`` never holds an argument that is a password by its position in the command, whatever
Redis itself already hid, and is at most ``MAX_ACTION`` characters.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from bot.adapters.base import MAX_ACTION

HIDDEN = "(redacted)"
_LINE = re.compile(r"(\d+)\.(\d+) \[(\d+) ([^\]]*)\] ?(.*)", re.DOTALL)
_BARE = re.compile(r"[^\s\"'\\]+")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}
SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


def parse_line(line: str) -> tuple[datetime, int, str, list[str]] | None:
    """A MONITOR line (``<seconds>.<micros> [<db> <addr>] "arg" "arg"…``) as its time, database, address and the
    arguments unescaped; None for anything else."""
    match = _LINE.fullmatch(line)
    if not match:
        return None
    seconds, micros, db, addr, rest = match.groups()
    at = datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=int(micros.ljust(6, "0")[:6]))
    return at, int(db), addr, _arguments(rest)


def _arguments(text: str) -> list[str]:
    """The quoted arguments Redis writes with ``sdscatrepr``: ``\\n``, ``\\"``, ``\\xHH`` and friends."""
    args: list[str] = []
    index, length = 0, len(text)
    while index < length:
        if text[index] != '"':
            index += 1
            continue
        raw = bytearray()
        index += 1
        while index < length and text[index] != '"':
            char = text[index]
            if char == "\\" and index + 1 < length:
                code = text[index + 1]
                if code == "x" and index + 3 < length:
                    try:
                        raw.append(int(text[index + 2 : index + 4], 16))
                        index += 4
                        continue
                    except ValueError:
                        pass
                raw.extend(_ESCAPES.get(code, code).encode())
                index += 2
                continue
            raw.extend(char.encode())
            index += 1
        args.append(raw.decode("utf-8", errors="backslashreplace"))
        index += 1
    return args


def hide_secrets(args: list[str]) -> list[str]:
    """``args`` with every argument that is a password by its position blanked, whatever Redis already hid."""
    if not args:
        return args
    name = args[0].upper()
    shown = list(args)

    def hide(start: int, count: int) -> None:
        for index in range(start, min(start + count, len(shown))):
            shown[index] = HIDDEN

    if name == "AUTH":
        hide(1, len(shown))
    elif name == "HELLO":
        for index, arg in enumerate(args):
            if arg.upper() == "AUTH":
                hide(index + 1, 2)
    elif name == "MIGRATE":
        for index, arg in enumerate(args):
            if arg.upper() == "AUTH":
                hide(index + 1, 1)
            elif arg.upper() == "AUTH2":
                hide(index + 2, 1)
    elif name == "ACL" and len(args) > 1 and args[1].upper() == "SETUSER":
        shown = [HIDDEN if index > 2 and arg[:1] and arg[0] in "><#!" else arg for index, arg in enumerate(shown)]
    elif name == "CONFIG" and len(args) > 1 and args[1].upper() == "SET":
        for index in range(2, len(args) - 1):
            if "pass" in args[index].lower() or "auth" in args[index].lower():
                hide(index + 1, 1)
    return shown


def render(args: list[str]) -> str:
    """One line a person can read: the command in capitals, plain arguments bare, others JSON-quoted."""
    if not args:
        return ""
    words = [args[0].upper()]
    words += [
        arg if _BARE.fullmatch(arg) and arg.isprintable() else json.dumps(arg, ensure_ascii=False) for arg in args[1:]
    ]
    return " ".join(words)


def cut(action: str) -> str:
    return action if len(action) <= MAX_ACTION else action[: MAX_ACTION - 1] + "…"


def named_login(args: list[str]) -> bool | None:
    """True for a login with a user name, False for a password-only ``AUTH`` (the ``default`` user), None if
    ``args`` is no login at all."""
    name = args[0].upper() if args else ""
    if name == "AUTH":
        return len(args) > 2
    if name == "HELLO" and any(arg.upper() == "AUTH" for arg in args[1:]):
        return True
    return None


def clients(listing: str) -> dict[str, str]:
    """``CLIENT LIST`` as address -> user."""
    found: dict[str, str] = {}
    for line in listing.splitlines():
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        if "addr" in fields:
            found[fields["addr"]] = fields.get("user", "default")
    return found


def shown(args: list[str]) -> str:
    """The command as the bot keeps it: passwords blanked, written for people, cut to ``MAX_ACTION``."""
    return cut(render(hide_secrets(args)))
