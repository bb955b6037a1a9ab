"""Access ends on time whatever happens; emergencies are loud and owe a review."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, buttons, channel_texts, dm_texts, state, view


def approved(bot: LocalBot, text: str = "orders-db 30m INC-1 fix") -> int:
    bot.command(BOB, text)
    request_id = max(v for v in range(1, 100) if bot.request_message(v) is not None)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    assert view(bot, request_id).status is Status.ACTIVE
    return request_id


def test_access_is_revoked_at_expiry(bot: LocalBot, receiver: WebhookReceiver) -> None:
    request_id = approved(bot)

    assert bot.advance(timedelta(minutes=29)).revoked == 0  # only the warning is due
    assert receiver.events("revoke") == []
    report = bot.advance(timedelta(minutes=1))

    assert report.revoked == 1
    [revoke] = receiver.events("revoke")
    current = view(bot, request_id)
    assert revoke.valid and revoke.body["grant_id"] == current.uid
    assert revoke.headers["Idempotency-Key"] != receiver.events("grant")[0].headers["Idempotency-Key"]
    assert current.status is Status.EXPIRED
    assert "Expired at" in state(bot.request_message(request_id)) and buttons(bot.request_message(request_id)) == []
    texts = dm_texts(bot, BOB)
    assert any("ends" in t for t in texts) and any("has expired and was revoked" in t for t in texts)
    assert [a for a, _ in audit_actions(bot, request_id)][-2:] == ["expiring", "expired"]
    assert not bot.advance(timedelta(hours=1))  # nothing is revoked twice
    assert len(receiver.events("revoke")) == 1


def test_the_requester_is_warned_once_before_expiry(bot: LocalBot) -> None:
    approved(bot, "orders-db 1h INC-1 fix")

    bot.advance(timedelta(minutes=49))
    bot.advance(timedelta(minutes=1))
    bot.advance(timedelta(minutes=5))

    assert sum("ends" in text for text in dm_texts(bot, BOB)) == 1


def test_a_grant_that_expired_while_the_bot_was_down_is_revoked_at_start(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    first = make_bot()
    request_id = approved(first)
    first.stop()
    first.clock.advance(timedelta(hours=3))  # the bot is down when access should end

    second = make_bot(clock=first.clock)
    assert second.runtime is not None
    second.runtime.start_alarms()  # what `breakglass serve` does at start: the first sweep runs at once

    receiver.wait_for(lambda calls: any(call.event == "revoke" for call in calls))
    [revoke] = receiver.events("revoke")
    assert revoke.body["grant_id"] == view(second, request_id).uid
    deadline = time.monotonic() + 30  # ends as soon as it expired: only a failing test waits this long
    while view(second, request_id).status is not Status.EXPIRED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert view(second, request_id).status is Status.EXPIRED


def test_a_failing_revoke_is_retried_announced_and_never_marked_done_early(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(
        tuning=Tuning(grant_retry_pause=0.01, revoke_alert_after=2, backoff_base=timedelta(seconds=30), jitter=0)
    )
    request_id = approved(bot)
    receiver.respond_with(status=500)

    bot.advance(timedelta(minutes=30))
    assert view(bot, request_id).status is Status.REVOKE_FAILED
    assert "Revoke failing (attempt 1)" in state(bot.request_message(request_id))
    assert not any("keeps failing" in t for t in channel_texts(bot, "C0SECURITY"))

    bot.advance(timedelta(seconds=10))  # inside the backoff: no new attempt
    assert len(receiver.events("revoke")) == 1
    bot.advance(timedelta(seconds=20))
    assert len(receiver.events("revoke")) == 2
    assert view(bot, request_id).status is Status.REVOKE_FAILED
    assert any("keeps failing" in t for t in channel_texts(bot, "C0SECURITY"))

    receiver.respond_with(status=200)
    bot.advance(timedelta(minutes=1))

    assert view(bot, request_id).status is Status.EXPIRED
    assert len(receiver.events("revoke")) == 3
    assert len({c.headers["Idempotency-Key"] for c in receiver.events("revoke")}) == 1
    assert any("revoked at last" in t for t in channel_texts(bot, "C0SECURITY"))
    assert [a for a, _ in audit_actions(bot, request_id)].count("revoke_failed") == 2


def test_emergency_grants_at_once_alerts_loudly_and_chases_a_review(bot: LocalBot, receiver: WebhookReceiver) -> None:
    reply = bot.command(BOB, "orders-db 20m INC-4212 orders table locked --emergency")

    assert "Glass broken" in (reply.answer or "")
    [grant] = receiver.events("grant")
    assert grant.body["emergency"] is True
    assert view(bot, 1).status is Status.ACTIVE
    for channel in ("C0SECURITY", "C0APPROVALS"):
        alert = bot.request_message(1, channel)
        assert buttons(alert) == [ActionId.REVOKE] and "BREAK-GLASS" in alert["text"]  # type: ignore[index]
        assert "Active" in state(alert)
    assert not bot.slack.calls("chat.update")  # posted once granted, as granted: not posted, then edited at once
    assert any("emergency access" in t for t in dm_texts(bot, BOB))

    bot.advance(timedelta(minutes=20))
    assert view(bot, 1).status is Status.EXPIRED
    assert any("review is due" in t for t in dm_texts(bot, BOB))
    assert "account due from <@U0BOB>" in state(bot.request_message(1, "C0SECURITY"))

    bot.advance(timedelta(hours=23))
    assert not any("Reminder" in t for t in dm_texts(bot, BOB))
    bot.advance(timedelta(hours=1))
    bot.advance(timedelta(hours=24))
    assert sum("Reminder" in t for t in dm_texts(bot, BOB)) == 2
    assert sum("is overdue" in t for t in channel_texts(bot, "C0SECURITY")) == 2

    refused = bot.command(DAVE, "review 1 not mine to review")
    assert "Only the holder of request #1 writes its review" in refused.text
    written = bot.command(BOB, "review 1 a migration locked orders; rolled back")
    assert "is written" in written.text
    assert "account by <@U0BOB>" in state(bot.request_message(1, "C0SECURITY"))
    bot.advance(timedelta(days=3))
    assert sum("Reminder" in t for t in dm_texts(bot, BOB)) == 2  # the holder's part is done: no more for them
    assert "signed off" in bot.command(ALICE, "review 1 agreed").text
    assert "signed off by <@U0ALICE01>" in state(bot.request_message(1, "C0SECURITY"))
    assert "already signed off" in bot.command(ALICE, "review 1 again").text
    actions = [a for a, _ in audit_actions(bot, 1)]
    assert actions[:3] == ["requested", "emergency", "granted"] and actions[-1] == "review_signed_off"
    assert actions.index("review_written") < actions.index("review_signed_off")


def test_emergency_is_refused_where_the_policy_does_not_allow_it(bot: LocalBot, receiver: WebhookReceiver) -> None:
    reply = bot.command(BOB, "payments-admin 30m outage --emergency")

    assert "does not allow emergency access" in reply.text
    assert receiver.calls == [] and bot.slack.calls("chat.postMessage") == []


def test_revoke_now_button_ends_an_emergency_early(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 2h INC-9 outage --emergency")

    refused = bot.click(DAVE, ActionId.REVOKE, 1, channel="C0SECURITY")
    assert "Only the holder or an approver" in (refused.answer or "")
    bot.click(ALICE, ActionId.REVOKE, 1, channel="C0SECURITY")

    current = view(bot, 1)
    assert current.status is Status.REVOKED and current.ended_by == ALICE
    assert len(receiver.events("revoke")) == 1
    assert "Revoked by <@U0ALICE01>" in state(bot.request_message(1, "C0SECURITY"))
    assert any("was revoked by <@U0ALICE01>" in t for t in dm_texts(bot, BOB))
    assert any("review is due" in t for t in dm_texts(bot, BOB))


def test_holder_revokes_early_and_others_cannot(bot: LocalBot, receiver: WebhookReceiver) -> None:
    request_id = approved(bot)

    assert "Only the holder or an approver" in bot.command(DAVE, f"revoke {request_id}").text
    assert "revoked" in bot.command(BOB, f"revoke {request_id}").text
    assert view(bot, request_id).status is Status.REVOKED
    again = bot.command(BOB, f"revoke {request_id}").text
    assert "access was revoked by <@U0BOB>" in again and "Nothing was done" in again
    assert len(receiver.events("revoke")) == 1


def test_pending_requests_can_be_withdrawn_and_lapse_without_a_decision(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.command(BOB, "payments-admin 30m INC-2 fix")  # another resource: one live request per resource

    assert "withdrawn" in bot.command(BOB, "revoke 1").text
    assert view(bot, 1).status is Status.CANCELLED
    assert "Withdrawn" in state(bot.request_message(1))

    bot.advance(timedelta(hours=24))
    assert view(bot, 2).status is Status.TIMED_OUT
    assert buttons(bot.request_message(2)) == []
