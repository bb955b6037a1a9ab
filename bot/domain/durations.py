"""Durations as people write them: 90s, 45m, 2h, 1h30m (or 1h 30m), 1d."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.domain.commands import shown

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Largest unit first, each at most once; spaces may separate the parts, as in "1h 30m", but not a number
# from its unit.
# One optional space between parts, after spaces were folded: runs of `[ ]*` between optional groups made a long
# string of spaces take polynomial time to refuse, and durations are typed by people.
_PATTERN = re.compile(
    r"(?:([0-9]{1,9})d)?+ ?+(?:([0-9]{1,9})h)?+ ?+(?:([0-9]{1,9})m)?+ ?+(?:([0-9]{1,9})s)?+", re.ASCII
)
FORMAT_HINT = "a duration like 90s, 45m, 2h, 1h30m or 1d"
_LONGEST = timedelta(days=366)


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    cleaned = " ".join(text.split()).lower()
    match = _PATTERN.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise DurationError(f"'{shown(text)}' is not {FORMAT_HINT}")
    seconds = sum(int(part) * factor for part, factor in zip(match.groups(), _UNITS.values(), strict=True) if part)
    if seconds <= 0:
        raise DurationError(f"'{shown(text)}' is zero; give {FORMAT_HINT}")
    if seconds > _LONGEST.total_seconds():
        raise DurationError(f"'{shown(text)}' is longer than a year")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest form that parse_duration reads back: 5400s -> '1h30m'."""
    remaining = int(value.total_seconds())
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, factor in _UNITS.items():
        amount, remaining = divmod(remaining, factor)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
