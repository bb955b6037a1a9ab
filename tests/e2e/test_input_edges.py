"""Where a duration ends and the reason begins, and free text that mentions the flag, through the real Slack path."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.devtools.local_bot import LocalBot
from bot.slack.ids import ActionId
from tests.e2e.helpers import ALICE, BOB, audit_actions, view


def test_a_duration_in_two_words_is_one_duration(bot: LocalBot) -> None:
    reply = bot.command(BOB, "orders-db 1h 30m INC-1 fix")

    assert "(1h30m) is with the approvers" in reply.text
    request = view(bot, 1)
    assert request.duration == timedelta(minutes=90)
    assert request.reason == "INC-1 fix"


def test_a_reason_that_starts_with_a_number_gets_the_default_duration(bot: LocalBot) -> None:
    reply = bot.command(BOB, "orders-db 500 errors on checkout INC-12")

    assert "(1h) is with the approvers" in reply.text  # the policy's default_duration
    request = view(bot, 1)
    assert request.duration == timedelta(hours=1)
    assert request.reason == "500 errors on checkout INC-12"


def test_a_review_note_keeps_the_word_emergency(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-7 migration locked orders --emergency")
    assert view(bot, 1).emergency is True
    notes = "broke the glass with --emergency because INC-7 paged; \u2014emergency was right"

    reply = bot.command(BOB, f"review 1 {notes}")

    assert "Your review of request #1 is written" in reply.text
    review = view(bot, 1).review
    assert review is not None and review.account == notes


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("orders-db 2hrs INC-1 fix", "'2hrs' is not a duration like"),
        ("orders-db 1.5h INC-1 fix", "'1.5h' is not a duration like"),
        ("orders-db 2 hours INC-1 fix", "'2 hours' is not a duration like"),
        ("orders-db 1h30m 15m INC-1 fix", "'1h30m 15m' is not a duration like"),
    ],
)
def test_what_looks_like_a_duration_is_refused_not_taken_as_the_reason(bot: LocalBot, text: str, quoted: str) -> None:
    reply = bot.command(BOB, text)

    assert quoted in reply.text and "orders-db allows 5m to 2h" in reply.text
    assert bot.slack.calls("chat.postMessage") == []
    assert [action for action, _ in audit_actions(bot)] in ([], ["request_refused"])


def test_an_extension_in_two_words(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    before = view(bot, 1).expires_at
    assert before is not None

    reply = bot.command(ALICE, "extend 1 1h 15m")

    assert "now lasts until" in reply.text, reply.text
    assert view(bot, 1).expires_at == before + timedelta(hours=1, minutes=15)
