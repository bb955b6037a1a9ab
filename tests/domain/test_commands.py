"""What people type after /breakglass, parsed into commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.commands import (
    MAX_TEXT,
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
    parse,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("HELP", Help()),
        ("-h", Help()),
        ("--help", Help()),
        ("list", ListResources()),
        ("List", ListResources()),
        ("mine", Mine()),
        ("  mine  ", Mine()),
        ("revoke 42", Revoke(42)),
        ("revoke #42", Revoke(42)),
        ("REVOKE #7", Revoke(7)),
        (
            "review 42 rotated the keys, wrote the postmortem",
            RecordReview(42, "rotated the keys, wrote the postmortem"),
        ),
        ("review #9 done", RecordReview(9, "done")),
        ("review 42", ShowReview(42)),
        ("review #42   ", ShowReview(42)),
    ],
)
def test_parses_every_non_ask_command(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "orders-db 1h INC-4211 checkout is failing",
            Ask("orders-db", "1h", "INC-4211 checkout is failing", emergency=False),
        ),
        (
            "orders-db INC-4211 checkout is failing",
            Ask("orders-db", None, "INC-4211 checkout is failing", emergency=False),
        ),
        ("orders-db 1h30m INC-1", Ask("orders-db", "1h30m", "INC-1", emergency=False)),
        ("Orders-DB 2h INC-1", Ask("orders-db", "2h", "INC-1", emergency=False)),
        ("orders-db", Ask("orders-db", None, "", emergency=False)),
        ("orders-db 2h", Ask("orders-db", "2h", "", emergency=False)),
        ("orders-db   2h   INC-1    spaced   out", Ask("orders-db", "2h", "INC-1 spaced out", emergency=False)),
    ],
)
def test_parses_an_ask_with_and_without_duration(text: str, expected: Ask) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "duration", "reason"),
    [
        # Consecutive duration words are one duration, then the reason.
        ("orders-db 1h 30m INC-1 fix", "1h 30m", "INC-1 fix"),
        ("orders-db 1d 2h 3m 4s INC-1", "1d 2h 3m 4s", "INC-1"),
        ("orders-db 1H 30M INC-1", "1H 30M", "INC-1"),
        ("orders-db 1h30m 15m INC-1", "1h30m 15m", "INC-1"),  # one duration, which the rules refuse
        ("orders-db 30m 1h INC-1", "30m 1h", "INC-1"),  # likewise: out of order
        # A bare number, or a number with what is no time unit, is prose: the default duration applies.
        ("orders-db 500 errors on checkout INC-12", None, "500 errors on checkout INC-12"),
        ("orders-db 90 INC-1", None, "90 INC-1"),
        ("orders-db 5xx from checkout INC-1", None, "5xx from checkout INC-1"),
        ("orders-db 100ms latency INC-1", None, "100ms latency INC-1"),
        ("orders-db 1,000 failed payments INC-1", None, "1,000 failed payments INC-1"),
        ("orders-db 1h 30 replicas down INC-1", "1h", "30 replicas down INC-1"),
        # Meant as a duration but not written as one: taken as the duration, so that the rules refuse it.
        ("orders-db 2hrs INC-1", "2hrs", "INC-1"),
        ("orders-db 1.5h INC-1", "1.5h", "INC-1"),
        ("orders-db 90min INC-1", "90min", "INC-1"),
        ("orders-db 1h30 INC-1", "1h30", "INC-1"),
        ("orders-db 1w INC-1", "1w", "INC-1"),
        ("orders-db 1x INC-1", "1x", "INC-1"),  # the grammar's shape, a number and one letter, with no known unit
        ("orders-db 2X faster INC-1", "2X", "faster INC-1"),
        ("orders-db 1h, INC-1", "1h,", "INC-1"),
        ("orders-db 2 hours INC-1", "2 hours", "INC-1"),
        ("orders-db 1.5 h INC-1", "1.5 h", "INC-1"),
        ("orders-db 1h 30 min INC-1", "1h 30 min", "INC-1"),
    ],
)
def test_what_counts_as_the_duration(text: str, duration: str | None, reason: str) -> None:
    assert parse(text) == Ask("orders-db", duration, reason, emergency=False)


def test_the_flag_does_not_split_a_duration() -> None:
    assert parse("orders-db 1h --emergency 30m INC-1") == Ask("orders-db", "1h 30m", "INC-1", emergency=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("extend 42 30m", Extend(42, "30m")),
        ("extend 42 1h 30m", Extend(42, "1h 30m")),
        ("extend 42 2 hours", Extend(42, "2 hours")),  # refused by the rules, quoting it whole
        ("extend 42 soon", Extend(42, "soon")),
    ],
)
def test_extend_takes_one_duration_however_many_words(text: str, expected: Extend) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        ("review 42 broke the glass with --emergency as designed", "broke the glass with --emergency as designed"),
        ("review 42 --emergency", "--emergency"),
        ("review 42 \u2014emergency was right", "\u2014emergency was right"),
        ("review 42 --EMERGENCY 1h 30m", "--EMERGENCY 1h 30m"),
    ],
)
def test_review_notes_keep_every_word_the_flag_included(text: str, notes: str) -> None:
    assert parse(text) == RecordReview(42, notes)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("--emergency review 42 notes", ["`--emergency` goes only with an access request"]),
        ("--emergency revoke 42", ["`--emergency` goes only with an access request"]),
        ("--emergency extend 42 1h", ["`--emergency` goes only with an access request"]),
        ("extend 42 1h --emergency", ["Say by how long, and nothing else"]),
        ("extend 42 1h please", ["Say by how long, and nothing else"]),
        ("extend 42", ["Say by how long, and nothing else"]),
    ],
)
def test_the_flag_is_refused_where_it_means_nothing(text: str, words: list[str]) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "--emergency orders-db 1h INC-4211 down",
        "orders-db --emergency 1h INC-4211 down",
        "orders-db 1h --emergency INC-4211 down",
        "orders-db 1h INC-4211 down --emergency",
        "orders-db 1h INC-4211 --EMERGENCY down",
        "orders-db 1h INC-4211 --Emergency down",
    ],
)
def test_emergency_flag_is_found_anywhere_in_any_case(text: str) -> None:
    assert parse(text) == Ask("orders-db", "1h", "INC-4211 down", emergency=True)


def test_emergency_flag_only_counts_as_a_whole_word() -> None:
    command = parse("orders-db 1h INC-1 see--emergency-runbook")
    assert isinstance(command, Ask)
    assert command.emergency is False
    assert command.reason == "INC-1 see--emergency-runbook"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("revoke", ["request id is missing", "/breakglass revoke &lt;id&gt;", "/breakglass mine"]),
        ("revoke abc", ["'abc' is not a request id", "/breakglass revoke &lt;id&gt;"]),
        ("revoke 12a", ["'12a' is not a request id"]),
        ("revoke -3", ["'-3' is not a request id"]),
        ("revoke ##3", ["'##3' is not a request id"]),
        ("revoke 1234567890123", ["'1234567890123' is not a request id"]),
        ("review", ["request id is missing", "/breakglass review &lt;id&gt; &lt;notes…&gt;"]),
        ("review x notes here", ["'x' is not a request id", "/breakglass review &lt;id&gt; &lt;notes…&gt;"]),
        ("--force orders-db 1h INC-1", ["Unknown option '--force'", "--emergency"]),
        ("-x", ["Unknown option '-x'"]),
    ],
)
def test_errors_say_what_is_wrong_and_what_is_allowed(text: str, words: list[str]) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    for word in words:
        assert word in str(caught.value)


def test_over_long_text_is_refused_before_anything_else() -> None:
    with pytest.raises(CommandError, match=f"at most {MAX_TEXT}"):
        parse("orders-db 1h " + "x" * MAX_TEXT)


def test_text_at_the_limit_is_accepted() -> None:
    text = "orders-db 1h " + "x" * (MAX_TEXT - len("orders-db 1h "))
    command = parse(text)
    assert isinstance(command, Ask)
    assert len(text) == MAX_TEXT


@given(st.text(max_size=200))
def test_parse_only_ever_raises_command_error(text: str) -> None:
    try:
        command = parse(text)
    except CommandError as error:
        assert str(error)
        return
    assert isinstance(command, Help | ListResources | Mine | Revoke | Extend | RecordReview | ShowReview | Ask)
    if isinstance(command, Ask):
        assert command.resource
        assert command.resource == command.resource.lower()
        assert "--emergency" not in command.reason.lower().split()


@given(st.lists(st.sampled_from(["revoke", "review", "#1", "1", "--emergency", "-", "x", "1h", " ", "\t"]), max_size=8))
def test_parse_only_ever_raises_command_error_on_command_like_words(words: list[str]) -> None:
    text = " ".join(words)
    try:
        command = parse(text)
    except CommandError as error:
        head = next(word for word in text.split() if word.lower() != "--emergency")
        assert head in ("revoke", "review", "-", "#1")  # '#1' cannot be a resource name
        assert str(error)
        return
    if isinstance(command, Ask):
        assert command.emergency == ("--emergency" in text.split())
    if isinstance(command, RecordReview):  # notes are free text: the flag is one of their words
        assert command.notes.split() == text.split()[2:]


HOSTILE = {
    "letters": 'parse("orders-db " + "1m" * 60 + "! x")',  # each m a unit or "any letter": 2^60 ways to fail
    "long-run": 'parse("orders-db " + "1h" * 500 + "1,")',
    "spaces": 'parse("orders-db 1d" + " " * 2900 + "x")',
    "extend-words": 'parse("extend 1 " + "1d " * 900 + "x")',
    "duration-spaces": 'parse_duration("1d" + " " * 3000 + "1h" + " " * 3000 + "x")',
}


@pytest.mark.parametrize("name", HOSTILE)
def test_text_made_to_stall_the_parser_is_answered_at_once(name: str) -> None:
    # Parsing runs before the ack, and a regex holds the GIL: a backtracking pattern would stall every thread of the
    # bot. Run in a process of its own, so a regression fails here instead of hanging the suite. The bound only
    # tells a finished parse (well under a millisecond) from a hang.
    program = (
        "import contextlib\n"
        "from bot.domain.commands import CommandError, parse\n"
        "from bot.domain.durations import DurationError, parse_duration\n"
        f"with contextlib.suppress(CommandError, DurationError):\n    {HOSTILE[name]}\n"
    )
    try:
        subprocess.run([sys.executable, "-c", program], check=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"parsing the {name} text did not finish")


@pytest.mark.parametrize(
    ("text", "resource", "level"),
    [
        ("orders-db:write 30m INC-1 fix", "orders-db", "write"),
        ("orders-db 30m INC-1 fix", "orders-db", None),
        ("Orders-DB:Read INC-1 look", "orders-db", "read"),
    ],
)
def test_a_level_is_named_after_a_colon(text: str, resource: str, level: str | None) -> None:
    parsed = parse(text)
    assert isinstance(parsed, Ask) and (parsed.resource, parsed.level) == (resource, level)


@pytest.mark.parametrize("head", ["orders-db:", "orders-db:1x", "orders-db:wr!te", "orders-db:a:b"])
def test_a_colon_without_a_level_name_is_refused_saying_how_to_name_one(head: str) -> None:
    with pytest.raises(CommandError, match="does not name a level"):
        parse(f"{head} 30m INC-1 x")
