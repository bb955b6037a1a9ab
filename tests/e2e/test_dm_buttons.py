"""Buttons where people are: the requester's DMs carry the buttons that fit the moment, and each click is judged at
click time exactly as the typed command is. The real bot over HTTP; clicks are signed as Slack signs them and carry
the DM message they were made on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.slack.ids import ActionId
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, view

LIVE_BUTTONS = [ActionId.ASK_MORE_TIME.value, ActionId.REVOKE.value]


def dms(bot: LocalBot, user: str) -> list[dict[str, Any]]:
    """The DMs to ``user`` as Slack holds them: text, and the buttons (action id, value) each carries."""
    shown = []
    for message in bot.slack.messages(user):
        buttons = [
            (element["action_id"], element.get("value"))
            for block in message.blocks
            if block["type"] == "actions"
            for element in block["elements"]
        ]
        shown.append({"text": message.text, "blocks": message.blocks, "buttons": buttons})
    return shown


def dm_about(bot: LocalBot, user: str, words: str) -> dict[str, Any]:
    [found] = [m for m in dms(bot, user) if words in m["text"]]
    return found


def active(bot: LocalBot, receiver: WebhookReceiver, duration: str = "30m") -> int:
    bot.command(BOB, f"orders-db {duration} INC-42 checkout failing")
    bot.click(ALICE, ActionId.APPROVE, 1)
    receiver.wait_for(1)
    assert view(bot, 1).status is Status.ACTIVE
    return 1


def test_a_live_grant_dm_carries_revoke_now_and_ask_for_more_time(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = active(bot, receiver)

    live = dm_about(bot, BOB, "is active until")
    assert live["buttons"] == [(a, str(rid)) for a in LIVE_BUTTONS]
    [text, buttons] = live["blocks"]
    assert text["type"] == "section" and text["text"]["text"] == live["text"]  # the text stays as the fallback
    assert buttons["type"] == "actions"
    labels = [e["text"]["text"] for e in buttons["elements"]]
    assert labels == ["Ask for more time", "Revoke now"]
    # The request's own moment has passed, or nothing is left to act on: text only, as before.
    assert dm_about(bot, BOB, "is with the approvers")["buttons"] == [(ActionId.WITHDRAW.value, str(rid))]
    assert dm_about(bot, BOB, "was approved")["buttons"] == []


def test_the_expiry_warning_asks_for_more_time_and_the_expired_dm_offers_nothing(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    rid = active(bot, receiver)

    bot.advance(timedelta(minutes=21))  # inside the ten-minute warning
    warning = dm_about(bot, BOB, "ends")
    assert warning["buttons"] == [(a, str(rid)) for a in LIVE_BUTTONS]
    more = next(e for e in warning["blocks"][-1]["elements"] if e["action_id"] == ActionId.ASK_MORE_TIME)
    assert more.get("style") == "primary"  # the moment for it

    bot.advance(timedelta(minutes=10))
    assert view(bot, rid).status is Status.EXPIRED
    assert dm_about(bot, BOB, "has expired")["buttons"] == []  # no "Ask for more time" after expiry
    assert sum(ActionId.ASK_MORE_TIME.value in [a for a, _ in m["buttons"]] for m in dms(bot, BOB)) == 2


def test_a_denied_request_dm_has_no_revoke(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-42 checkout failing")
    bot.deny(ALICE, 1, "use the replica")

    assert dm_about(bot, BOB, "was denied")["buttons"] == []
    assert [m["buttons"] for m in dms(bot, BOB)] == [[(ActionId.WITHDRAW.value, "1")], []]
    stale = bot.click_in_dm(BOB, ActionId.WITHDRAW, 1)  # the "received" DM's button, after the denial
    assert stale.answer is not None and "was denied by <@U0ALICE01>" in stale.answer
    assert view(bot, 1).status is Status.DENIED


def test_withdraw_from_the_dm_withdraws_a_request_that_waits(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-42 checkout failing")

    forged = bot.click_in_dm(DAVE, ActionId.WITHDRAW, 1, owner=BOB)
    assert forged.answer is not None and forged.answer.startswith("❌")
    assert view(bot, 1).status is Status.PENDING
    reply = bot.click_in_dm(BOB, ActionId.WITHDRAW, 1)

    assert reply.answer is not None and "withdrawn" in reply.answer
    assert view(bot, 1).status is Status.CANCELLED and ("cancelled", BOB) in audit_actions(bot, 1)


def test_an_emergency_dm_carries_the_buttons_too(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 20m INC-7 orders table locked --emergency")
    receiver.wait_for(1)

    emergency = dm_about(bot, BOB, "Glass broken")
    assert [a for a, _ in emergency["buttons"]] == LIVE_BUTTONS


def test_revoke_now_from_the_dm_revokes(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = active(bot, receiver)

    reply = bot.click_in_dm(BOB, ActionId.REVOKE, rid)

    assert reply.status == 200 and reply.ack_seconds < 3
    assert reply.answer == f"🛑 Access for request #{rid} is revoked."
    [_, revoke] = receiver.wait_for(2)
    assert revoke.event == "revoke"
    assert view(bot, rid).status is Status.REVOKED and view(bot, rid).ended_by == BOB
    assert ("revoke_requested", BOB) in audit_actions(bot, rid)
    assert dm_about(bot, BOB, "was revoked by <@U0BOB>")["buttons"] == []


def test_a_stale_revoke_click_after_expiry_explains(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = active(bot, receiver)
    bot.advance(timedelta(minutes=31))
    assert view(bot, rid).status is Status.EXPIRED
    calls = len(receiver.calls)

    reply = bot.click_in_dm(BOB, ActionId.REVOKE, rid)  # the button on the "active" DM, clicked late

    assert reply.answer is not None and "access expired" in reply.answer and "Nothing was done." in reply.answer
    assert len(receiver.calls) == calls and view(bot, rid).status is Status.EXPIRED


def test_someone_elses_click_on_my_dm_is_judged_as_the_command(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = active(bot, receiver)

    forged = bot.click_in_dm(DAVE, ActionId.REVOKE, rid, owner=BOB)  # impossible in Slack: a forged payload

    assert forged.answer == f"❌ Only the holder or an approver may revoke request #{rid}."
    assert view(bot, rid).status is Status.ACTIVE and len(receiver.calls) == 1
    assert ("revoke_refused", DAVE) in audit_actions(bot, rid)
    typed = bot.command(DAVE, f"revoke {rid}")
    assert typed.text == forged.answer  # the same rule, the same words


def test_an_approver_may_use_the_holders_button_as_they_may_type_the_command(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    rid = active(bot, receiver)

    reply = bot.click_in_dm(ALICE, ActionId.REVOKE, rid, owner=BOB)

    assert reply.answer == f"🛑 Access for request #{rid} is revoked."
    assert view(bot, rid).ended_by == ALICE


def test_the_review_due_dm_carries_write_review(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 20m INC-7 orders table locked --emergency")
    receiver.wait_for(1)
    bot.advance(timedelta(minutes=20))

    due = dm_about(bot, BOB, "post-incident review is due")
    assert due["buttons"] == [(ActionId.WRITE_REVIEW.value, "1")]
    assert due["blocks"][-1]["elements"][0]["text"]["text"] == "Write review"
    bot.advance(timedelta(hours=24))
    reminder = dm_about(bot, BOB, "Reminder: your account")
    assert reminder["buttons"] == [(ActionId.WRITE_REVIEW.value, "1")]
