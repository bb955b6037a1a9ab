"""What people type: every mistake gets a clear private answer in time, and nothing half-written."""

from __future__ import annotations

import pytest

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.slack.ids import ActionId
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions

BAD_REQUESTS = [
    (
        "ledger 1h INC-1 fix",
        "There is no resource 'ledger' you may request. Resources you may request: orders-db, payments",
    ),
    ("orders-db 1x INC-1 fix", "'1x' is not a duration like 90s, 45m, 2h, 1h30m or 1d. orders-db allows 5m to 2h"),
    ("orders-db 3h INC-1 fix", "3h is outside what orders-db allows: 5m to 2h"),
    ("orders-db 1m INC-1 fix", "1m is outside what orders-db allows: 5m to 2h"),
    ("orders-db 30m", "A reason is missing"),
    ("orders-db 30m checkout broken", "must mention a reference matching `(INC|CHG)-[0-9]+`"),
    ("revoke", "A request id is missing"),
    ("revoke abc", "'abc' is not a request id"),
    ("--force orders-db", "Unknown option '--force'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_REQUESTS)
def test_bad_input_is_answered_at_once_and_changes_nothing(bot: LocalBot, text: str, expected: str) -> None:
    reply = bot.command(BOB, text)

    assert reply.status == 200
    # orders-db is limited to a user group: what Bob may request is known once his membership is looked up, after
    # the ack, and answered privately at once; everything else is answered in the acknowledgement itself.
    assert expected in reply.text
    assert bot.slack.calls("chat.postMessage") == []
    assert audit_actions(bot) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("payments-admin 1x fix", "'1x' is not a duration"),
        ("payments-admin 9h fix", "9h is outside what payments-admin allows"),
        ("payments-admin 30m", "A reason is missing"),
    ],
)
def test_bad_input_on_a_resource_open_to_everyone_is_answered_in_the_ack(
    bot: LocalBot, text: str, expected: str
) -> None:
    reply = bot.command(DAVE, text)

    assert expected in reply.ack and reply.answer is None
    assert audit_actions(bot) == []


def test_requester_not_in_requesters_is_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    reply = bot.command(DAVE, "orders-db 30m INC-1 fix")

    assert "There is no resource 'orders-db' you may request. Resources you may request: payments-admin" in reply.text
    assert bot.slack.calls("chat.postMessage") == []
    assert audit_actions(bot) == [("request_refused", DAVE)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("revoke 42", "There is no request #42"),
        ("review 42 notes", "There is no request #42"),
        ("review 42", "There is no request #42"),
    ],
)
def test_ids_that_do_not_exist(bot: LocalBot, text: str, expected: str) -> None:
    assert expected in bot.command(BOB, text).text


def test_ids_that_are_not_yours(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)

    assert "Only the holder or an approver" in bot.command(DAVE, "revoke 1").text
    assert "Only the holder of request #1 writes its review" in bot.command(DAVE, "review 1 x").text
    assert [a for a in audit_actions(bot, 1) if a[0].endswith("_refused")] == [
        ("revoke_refused", DAVE),
        ("review_refused", DAVE),
    ]


def test_help_list_and_mine(bot: LocalBot) -> None:
    assert (
        "/breakglass &lt;resource&gt;[:level] [duration] &lt;reason…&gt;" in bot.command(BOB, "help").ack
    )  # Slack shows <…>
    assert bot.command(BOB, "", wait=False).ack == ""  # nothing typed opens the request form (test_request_form.py)

    listed = bot.command(BOB, "list").text
    assert "`orders-db`" in listed and "5m to 2h" in listed and "emergency allowed" in listed
    assert "`orders-db`" not in bot.command(DAVE, "list").text  # dave is not a requester of orders-db
    assert "`payments-admin`" in bot.command(DAVE, "list").text

    assert "no open requests" in bot.command(BOB, "mine").text
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.command(BOB, "payments-admin 30m refunds")
    bot.click(ALICE, ActionId.APPROVE, 1)
    mine = bot.command(BOB, "mine").text
    assert "#1 `orders-db`" in mine and "Active until" in mine and "#2 `payments-admin`" in mine
    assert "no open requests" in bot.command(DAVE, "mine").text


def test_very_long_and_strange_text_is_handled(bot: LocalBot) -> None:
    assert "too long" in bot.command(BOB, "orders-db 30m INC-1 " + "x" * 5000).text
    assert "too long" in bot.command(BOB, "orders-db 30m INC-1 " + "y" * 600).text
    weird = bot.command(BOB, "orders-db 30m INC-1 \u202e\u0000 ünïcödé 🧯 `code` *bold*")
    assert "is with the approvers" in weird.text
