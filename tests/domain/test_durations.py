"""Durations as people type them: parsing, formatting and the round trip between them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.durations import FORMAT_HINT, DurationError, format_duration, parse_duration

A_YEAR_AND_A_DAY = 366 * 86400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        ("2H", timedelta(hours=2)),
        (" 45m ", timedelta(minutes=45)),
        ("366d", timedelta(days=366)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1d 2h 3m 4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1H  30M", timedelta(hours=1, minutes=30)),
    ],
)
def test_parses_the_forms_people_write(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=45), "45m"),
        (timedelta(hours=2), "2h"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=1), "1d"),
        (timedelta(days=1, seconds=1), "1d1s"),
    ],
)
def test_formats_the_shortest_form(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


def test_formats_nothing_as_zero_seconds() -> None:
    assert format_duration(timedelta(0)) == "0s"


@given(st.integers(min_value=1, max_value=A_YEAR_AND_A_DAY))
def test_format_then_parse_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "-5m",
        "5",
        "1.5h",
        "30m1h",
        "1w",
        "h",
        "1hh",
        "+5m",
        "30m 1h",  # parts run from the largest unit down, as when written together
        "1h30m 15m",  # each unit at most once: no adding up
        "1h 1h",
        "1 h",  # a space may separate parts, not a number from its unit
        "2hrs",
        "2 hours",
        "1h30",
    ],
)
def test_rejects_what_is_not_a_duration_and_says_what_is(text: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert FORMAT_HINT in str(caught.value)
    assert f"'{text}'" in str(caught.value)


@pytest.mark.parametrize("text", ["0m", "0s", "0d0h0m0s"])
def test_rejects_zero_and_says_what_is_allowed(text: str) -> None:
    with pytest.raises(DurationError, match="zero") as caught:
        parse_duration(text)
    assert FORMAT_HINT in str(caught.value)


@pytest.mark.parametrize("text", ["367d", f"{A_YEAR_AND_A_DAY + 1}s", "9000h", "1000000d"])
def test_rejects_longer_than_a_year(text: str) -> None:
    with pytest.raises(DurationError, match="longer than a year"):
        parse_duration(text)


def test_an_absurdly_long_number_is_a_duration_error_too() -> None:
    # Python refuses int() on more than 4300 digits with a plain ValueError; callers only catch DurationError.
    with pytest.raises(DurationError):
        parse_duration("9" * 5000 + "s")


@given(st.text(max_size=40))
def test_parse_only_ever_raises_duration_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except DurationError:
        return
    assert timedelta(0) < value <= timedelta(days=366)
