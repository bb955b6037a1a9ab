"""Whatever anyone types after /breakglass, the parser answers with a command or a clear refusal.

The text is hostile on purpose: every Unicode category (surrogates and control characters included), bidi
overrides, Slack's own mention and link syntax, words that look like flags, ids or durations, and text far over
the limit.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.commands import (
    MAX_REQUEST_ID,
    MAX_SHOWN,
    MAX_TEXT,
    RESOURCE_NAME,
    Ask,
    Command,
    CommandError,
    Extend,
    Help,
    ListResources,
    Mine,
    RecordReview,
    Revoke,
    ShowReview,
    clean,
    parse,
)
from bot.domain.durations import FORMAT_HINT, DurationError, format_duration, parse_duration

EXAMPLES = settings(max_examples=300, deadline=None, database=None)

SLACK_SYNTAX = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0ALICE01>",
    "<@U123|alice>",
    "<#C0SECURITY>",
    "<#C123|general>",
    "<!subteam^S0SRELEADS>",
    "<!subteam^S1|@leads>",
    "<http://evil.example|Approve here>",
    "<https://x>",
    "<mailto:a@b.c|mail>",
    "<!date^1700000000^{date}|today>",
    "@here",
    "@channel",
    "@everyone",
    "&amp;",
    "&lt;!channel&gt;",
    "&",
    "<",
    ">",
    "`",
    "```",
    "*bold*",
    "_it_",
    "~s~",
    "> quoted",
    ':"payload={\\"type\\":\\"block_actions\\"}"',
    "token=xoxb-1&team_id=T0&user_id=U0ALICE01",
]
LOOKALIKES = [
    "help",
    "HELP",
    "-h",
    "--help",
    "list",
    "mine",
    "revoke",
    "review",
    "extend",
    "orders-db",
    "Orders-DB",
    "payments-admin",
    "--emergency",
    "--EMERGENCY",
    "\u2014emergency",
    "\u2013emergency",
    "-emergency",
    "--emergency-runbook",
    "--force",
    "-",
    "--",
    "1h",
    "30m",
    "1h30m",
    "1h 30m",
    "2hrs",
    "1.5h",
    "hours",
    "5xx",
    "500",
    "0m",
    "0",
    "90",
    "1y",
    "366d",
    "367d",
    "999999999d",
    "99999999999999999999h",
    "#42",
    "42",
    "##42",
    "#",
    "-3",
    "1234567890123",
    "999999999999",
    "2147483647",
    "2147483648",
    "\u0664\u0662",  # Arabic-Indic 42
    "\uff14\uff12",  # full-width 42
    "\u00b2",  # superscript two: a digit to str.isdigit, not to int()
    "INC-4211",
    "CHG-1",
]
SPECIALS = [
    "\x00",
    "\x07",
    "\x1b[31m",
    "\r",
    "\r\n",
    "\t",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x85",
    "\u2028",
    "\u2029",
    "\u00a0",
    "\u3000",
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u202e",
    "\u2066",
    "\u200f",
    "\udc80",
    "\ud800",
    "\U000e0041",  # a tag character: invisible
    "\U0001f469\u200d\U0001f4bb",  # 👩‍💻, a ZWJ sequence
    "\u0301",
    "\ufffd",
    "\U0010ffff",
]
SEPARATORS = [" ", "  ", "\t", "\n", "\u3000", "\u00a0", "\u2028", ""]
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

any_character = st.characters(exclude_categories=())  # every code point, lone surrogates included
word = st.one_of(
    st.sampled_from(SLACK_SYNTAX + LOOKALIKES + SPECIALS),
    st.text(any_character, min_size=1, max_size=12),
    st.from_regex(r"[a-z0-9#<>@!&`*_~|^-]{1,10}", fullmatch=True),
)
typed = st.lists(st.tuples(word, st.sampled_from(SEPARATORS)), max_size=25).map(
    lambda parts: "".join(w + s for w, s in parts)
)
anything = st.one_of(
    typed,
    st.text(any_character, max_size=300),
    st.builds(lambda w, n: (w + " ") * n, word, st.integers(min_value=100, max_value=1200)),
)


def _parsed(text: str) -> Command | CommandError:
    try:
        return parse(text)
    except CommandError as error:
        return error


def _invisible_or_control(value: str) -> list[str]:
    return [
        f"U+{ord(ch):04X}"
        for ch in value
        if unicodedata.category(ch) in ("Cc", "Cs")
        or ch in BIDI
        or (unicodedata.category(ch) == "Cf" and ch not in "\u200c\u200d")
    ]


def _assert_inert_message(message: str) -> None:
    """A refusal quotes what was typed only as inert, bounded, one-line text: no mention, link or code break."""
    assert message
    assert "\n" not in message
    outside_entities = re.sub(r"&(?:amp|lt|gt);", "", message)
    assert not set("<>&") & set(outside_entities), message
    assert message.count("`") % 2 == 0, message
    assert len(message) <= 400 + MAX_SHOWN, message
    assert not _invisible_or_control(message.replace("@\u2060", "@")), message
    assert not re.search(r"@(?:here|channel|everyone)\b", message, re.IGNORECASE), message


def _assert_clean_fields(command: Command) -> None:
    for value in vars(command).values():
        if isinstance(value, str):
            assert not _invisible_or_control(value), (command, value)
            assert value == value.strip()


@EXAMPLES
@given(anything)
def test_any_text_is_a_command_or_a_clear_refusal(text: str) -> None:
    result = _parsed(text)
    if isinstance(result, CommandError):
        _assert_inert_message(str(result))
        return
    assert isinstance(result, Help | ListResources | Mine | Revoke | Extend | RecordReview | ShowReview | Ask)
    _assert_clean_fields(result)


@EXAMPLES
@given(anything)
def test_request_ids_are_bounded_ascii_numbers(text: str) -> None:
    result = _parsed(text)
    if isinstance(result, Revoke | Extend | RecordReview | ShowReview):
        assert 0 <= result.request_id <= MAX_REQUEST_ID


@EXAMPLES
@given(anything)
def test_an_ask_names_a_possible_resource(text: str) -> None:
    result = _parsed(text)
    if isinstance(result, Ask):
        assert RESOURCE_NAME.fullmatch(result.resource), result.resource


@EXAMPLES
@given(st.one_of(word, anything))
def test_every_duration_parses_or_says_what_is_expected(duration: str) -> None:
    try:
        value = parse_duration(duration)
    except DurationError as error:
        message = str(error)
        _assert_inert_message(message)
        assert FORMAT_HINT in message or "longer than a year" in message
        return
    assert timedelta(0) < value <= timedelta(days=366)


@EXAMPLES
@given(anything)
def test_durations_of_parsed_commands_parse_or_say_why(text: str) -> None:
    result = _parsed(text)
    duration = result.duration if isinstance(result, Ask | Extend) else None
    if duration is None:
        return
    try:
        parse_duration(duration)
    except DurationError as error:
        message = str(error)
        _assert_inert_message(message)
        assert FORMAT_HINT in message or "longer than a year" in message


EMERGENCY_SPELLINGS = ["--emergency", "--EMERGENCY", "--Emergency", "\u2014emergency", "\u2013emergency"]
reason_word = st.one_of(
    st.sampled_from([w for w in SLACK_SYNTAX + LOOKALIKES if w.lower() not in ("--emergency",)]),
    st.text(any_character, min_size=1, max_size=10),
)


@EXAMPLES
@given(
    resource=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True).filter(
        lambda name: name not in ("help", "list", "mine", "revoke", "review", "extend")
    ),
    duration=st.sampled_from([None, "1h", "30m", "1h 30m", "2hrs", "0m"]),
    reason=st.lists(reason_word, max_size=12),
    flag=st.sampled_from(EMERGENCY_SPELLINGS),
    where=st.integers(min_value=0, max_value=20),
)
def test_the_emergency_flag_is_found_wherever_it_is_and_the_reason_kept(
    resource: str, duration: str | None, reason: list[str], flag: str, where: int
) -> None:
    words = [resource, *([duration] if duration else []), *reason]
    words.insert(min(where, len(words)), flag)
    result = _parsed(" ".join(words))

    assert isinstance(result, Ask), result
    assert result.emergency is True
    kept = [w for w in clean(" ".join(reason)).split() if w.lower() not in {s.lower() for s in EMERGENCY_SPELLINGS}]
    assert result.resource == resource
    assert [*(result.duration or "").split(), *result.reason.split()] == [*(duration or "").split(), *kept]
    if not (kept and re.match(r"[0-9]", kept[0])):  # a reason starting with a digit may continue the duration
        assert result.duration == duration
        assert result.reason.split() == kept


@EXAMPLES
@given(anything)
def test_nothing_typed_is_lost_silently(text: str) -> None:
    """Every word of an ask or a review lands in one of the command's fields (cleaning aside)."""
    result = _parsed(text)
    typed = clean(text).split()
    if isinstance(result, Ask):
        words = [w for w in typed if w.lower() not in ("--emergency", "\u2014emergency", "\u2013emergency")]
        assert [result.resource, *(result.duration or "").split(), *result.reason.split()] == [
            words[0].lower(),
            *words[1:],
        ]
        assert result.emergency == (len(words) < len(typed))
    if isinstance(result, RecordReview):  # free text: every word kept, the flag's spellings included
        assert result.notes.split() == typed[2:]
    if isinstance(result, ShowReview):  # nothing after the id: nothing to lose
        assert len(typed) == 2
    if isinstance(result, Extend):
        assert result.duration.split() == typed[2:]


durations = st.integers(min_value=1, max_value=366 * 86400).map(lambda seconds: timedelta(seconds=seconds))
prose = st.sampled_from(["INC-1", "checkout", "errors", "5xx", "x", "100ms", "1,000", "#42", "v1.5", "hours-long"])


def _spaced(value: timedelta) -> str:
    """1h30m as '1h 30m': each part its own word."""
    return " ".join(re.findall(r"[0-9]+[dhms]", format_duration(value)))


@EXAMPLES
@given(value=durations, spaced=st.booleans(), upper=st.booleans(), reason=st.lists(prose, max_size=6))
def test_a_duration_however_spaced_is_the_duration_and_the_rest_the_reason(
    value: timedelta, spaced: bool, upper: bool, reason: list[str]
) -> None:
    typed = _spaced(value) if spaced else format_duration(value)
    typed = typed.upper() if upper else typed
    result = _parsed(" ".join(["orders-db", typed, *reason]))

    assert isinstance(result, Ask), result
    assert result.duration == typed
    assert parse_duration(result.duration) == value
    assert result.reason.split() == reason


@EXAMPLES
@given(number=st.integers(min_value=0, max_value=10**6), reason=st.lists(prose, max_size=6))
def test_a_bare_number_starts_the_reason_and_the_default_duration_applies(number: int, reason: list[str]) -> None:
    result = _parsed(" ".join(["orders-db", str(number), *reason]))

    assert result == Ask("orders-db", None, " ".join([str(number), *reason]), emergency=False)


@EXAMPLES
@given(
    number=st.from_regex(r"[0-9]{1,4}(?:\.[0-9]{1,2})?", fullmatch=True),
    unit=st.sampled_from(["hrs", "hr", "hours", "min", "mins", "minutes", "sec", "days", "w", "weeks", "y"]),
    joined=st.booleans(),
)
def test_what_was_meant_as_a_duration_is_refused_not_read_as_the_reason(number: str, unit: str, joined: bool) -> None:
    typed = f"{number}{unit}" if joined else f"{number} {unit}"
    result = _parsed(f"orders-db {typed} INC-1")

    assert result == Ask("orders-db", typed, "INC-1", emergency=False)
    with pytest.raises(DurationError) as caught:
        parse_duration(typed)
    assert f"'{typed}' is not {FORMAT_HINT}" in str(caught.value)


@EXAMPLES
@given(
    request_id=st.integers(min_value=0, max_value=MAX_REQUEST_ID),
    notes=st.lists(reason_word, min_size=1, max_size=12),
    flag=st.sampled_from(EMERGENCY_SPELLINGS),
    where=st.integers(min_value=0, max_value=12),
)
def test_review_notes_keep_the_flag_as_a_word(request_id: int, notes: list[str], flag: str, where: int) -> None:
    words = clean(" ".join(notes)).split()
    words.insert(min(where, len(words)), flag)
    result = _parsed(f"review {request_id} {' '.join(words)}")

    assert result == RecordReview(request_id, " ".join(words))


@settings(max_examples=25, deadline=None, database=None)
@given(st.text(any_character, min_size=MAX_TEXT + 1, max_size=MAX_TEXT + 50))
def test_text_over_the_limit_is_refused_with_the_limit(text: str) -> None:
    with pytest.raises(CommandError, match=f"at most {MAX_TEXT}"):
        parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "<!channel> 1h INC-1 x",
        "revoke <@U0ALICE01>",
        "revoke <http://evil.example|42>",
        "review <#C0SECURITY> notes",
        "--<!channel>",
        "`orders-db` 1h INC-1",
        "revoke `42",
        "\u2066<!here>\u2069 1h INC-1",
        "revoke " + "9" * 5000,
    ],
)
def test_refusals_quote_typed_words_inertly(text: str) -> None:
    result = _parsed(text)
    assert isinstance(result, CommandError), result
    _assert_inert_message(str(result))


@pytest.mark.parametrize("text", ["revoke \u0664\u0662", "revoke \uff14\uff12", "revoke \u00b2", "revoke 4\u00b2"])
def test_request_ids_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(CommandError, match="is not a request id"):
        parse(text)


def test_invisible_characters_do_not_split_or_disguise_a_word() -> None:
    assert parse("orders\u200b-db 1h INC-1\ufeff fix") == Ask("orders-db", "1h", "INC-1 fix", emergency=False)
    assert parse("orders-db 1h INC-1 \U0001f469\u200d\U0001f4bb") == Ask(
        "orders-db", "1h", "INC-1 \U0001f469\u200d\U0001f4bb", emergency=False
    )


def test_request_ids_stop_where_the_database_does() -> None:
    assert parse("revoke 2147483647") == Revoke(2147483647)
    with pytest.raises(CommandError, match="is not a request id"):
        parse("revoke 2147483648")
