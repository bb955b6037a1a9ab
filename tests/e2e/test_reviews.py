"""A review is an audit: the holder writes the account, someone else signs it off, over the real Slack path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import ReviewStatus, Status
from bot.policy import Policy, parse_policy
from bot.slack.ids import ActionId
from bot.store import activity as kept_activity
from bot.store import audit, queries
from bot.store.models import ActivityRecord, AuditEvent, Request
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, channel_texts, dm_texts, state, view

ERIN = "U0ERIN"  # a reviewer: in review.reviewers through a group, approver of nothing
REVIEW = "review:\n  required: emergency\n  remind_every: 24h\n"
assert REVIEW in POLICY
REVIEWED = POLICY.replace(REVIEW, REVIEW + "  reviewers: [S0AUDIT]\n  block_after: 2d\n")


@pytest.fixture
def policy() -> Policy:
    return parse_policy(REVIEWED)


@pytest.fixture
def bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    started = make_bot()
    started.slack.add_user(ERIN, "erin", "erin@example.com")
    started.slack.set_group("S0AUDIT", [ERIN])
    return started


def ended_emergency(bot: LocalBot, reason: str = "INC-7 orders table locked") -> int:
    """An emergency grant that ran its 20 minutes: a review is due from Bob."""
    bot.command(BOB, f"orders-db 20m {reason} --emergency")
    request_id = max(v for v in range(1, 100) if bot.request_message(v, "C0SECURITY") is not None)
    bot.advance(timedelta(minutes=20))
    current = view(bot, request_id)
    assert current.status is Status.EXPIRED and current.review is not None
    return request_id


def events(bot: LocalBot, action: str) -> list[AuditEvent]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        found = session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        session.expunge_all()
        return list(found)


def test_the_holder_writes_and_an_approver_signs_off(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    assert "account due from <@U0BOB>" in state(bot.request_message(rid, "C0SECURITY"))

    early = bot.command(ALICE, f"review {rid} looks fine")
    assert "holder's account of request #1 is awaited" in early.text
    written = bot.command(BOB, f"review {rid} a migration locked orders; rolled it back and added a lock timeout")
    assert "is written" in written.text
    line = state(bot.request_message(rid, "C0SECURITY"))
    assert "account by <@U0BOB>" in line and "sign-off awaited" in line
    [called] = [t for t in channel_texts(bot, "C0SECURITY") if "wrote the review of request #1" in t]
    assert "<!subteam^S0SRELEADS>" in called and "<@U0ALICE01>" in called and "<!subteam^S0AUDIT>" in called

    signed = bot.command(ALICE, f"review {rid} agreed; the lock timeout is in the runbook")
    assert "signed off" in signed.text
    review = view(bot, rid).review
    assert review is not None and review.status == ReviewStatus.DONE
    assert (review.author_id, review.reviewer_id) == (BOB, ALICE)
    assert review.account == "a migration locked orders; rolled it back and added a lock timeout"
    assert review.notes == "agreed; the lock timeout is in the runbook"
    assert "signed off by <@U0ALICE01>" in state(bot.request_message(rid, "C0SECURITY"))
    assert any("was signed off by <@U0ALICE01>" in t for t in dm_texts(bot, BOB))
    assert "already signed off by <@U0ALICE01>" in bot.command(CAROL, f"review {rid} me too").text
    actions = audit_actions(bot, rid)
    assert ("review_written", BOB) in actions and actions[-1] == ("review_signed_off", ALICE)
    [event] = events(bot, "review_signed_off")
    assert event.detail["author"] == BOB and event.detail["notes"] == review.notes


def test_the_holder_cannot_sign_off_their_own_review(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} a migration locked orders")

    again = bot.command(BOB, f"review {rid} and I approve of it")
    assert "cannot sign off your own review" in again.text
    review = view(bot, rid).review
    assert review is not None and review.status == ReviewStatus.WRITTEN and review.reviewer_id is None
    assert "review_signed_off" not in [a for a, _ in audit_actions(bot, rid)]


def test_someone_neither_approver_nor_reviewer_cannot_sign_off(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} a migration locked orders")

    refused = bot.command(DAVE, f"review {rid} fine by me")
    assert "only an approver of the resource or a reviewer signs it off" in refused.text
    assert view(bot, rid).review.status == ReviewStatus.WRITTEN  # type: ignore[union-attr]
    assert [e.actor for e in events(bot, "review_refused")] == [DAVE]


def test_a_member_of_a_reviewers_group_signs_off(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    assert f"#{rid}" in bot.command(BOB, "mine").text.split("Reviews you owe")[1]
    assert "waiting for your sign-off" not in bot.command(ERIN, "mine").text
    bot.command(BOB, f"review {rid} a migration locked orders")
    assert "Reviews you owe" not in bot.command(BOB, "mine").text
    waiting = bot.command(ERIN, "mine").text
    assert "Reviews waiting for your sign-off" in waiting and f"#{rid}" in waiting
    assert "Reviews waiting for your sign-off" in bot.command(ALICE, "mine").text  # an approver of orders-db
    assert "waiting for your sign-off" not in bot.command(DAVE, "mine").text

    assert "signed off" in bot.command(ERIN, f"review {rid} checked the activity: reads only").text
    review = view(bot, rid).review
    assert review is not None and review.status == ReviewStatus.DONE and review.reviewer_id == ERIN
    assert "waiting for your sign-off" not in bot.command(ERIN, "mine").text


def test_reminders_go_to_the_holder_then_to_the_sign_off_side(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)

    def holder_reminders() -> int:
        return sum("Reminder" in t for t in dm_texts(bot, BOB))

    def sign_off_reminders() -> list[str]:
        return [t for t in channel_texts(bot, "C0SECURITY") if "still awaits a sign-off" in t]

    bot.advance(timedelta(hours=24))
    assert holder_reminders() == 1 and sign_off_reminders() == []
    assert sum("is overdue" in t for t in channel_texts(bot, "C0SECURITY")) == 1

    bot.command(BOB, f"review {rid} a migration locked orders")
    bot.advance(timedelta(hours=23))
    assert sign_off_reminders() == []  # the clock starts again when the account is written
    bot.advance(timedelta(hours=1))
    assert holder_reminders() == 1 and len(sign_off_reminders()) == 1
    assert "<!subteam^S0SRELEADS>" in sign_off_reminders()[0] and "<!subteam^S0AUDIT>" in sign_off_reminders()[0]
    bot.advance(timedelta(hours=24))
    assert len(sign_off_reminders()) == 2 and holder_reminders() == 1

    bot.command(CAROL, f"review {rid} fine")
    bot.advance(timedelta(days=3))
    assert len(sign_off_reminders()) == 2 and holder_reminders() == 1
    awaited = [e.detail["awaited"] for e in events(bot, "review_reminded")]
    assert awaited == ["account", "sign_off", "sign_off"]


def test_block_after_holds_at_request_and_at_approval_and_emergencies_go_through(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    rid = ended_emergency(bot)  # due now; overdue after the first reminder (24h); blocking 2 days after that
    bot.advance(timedelta(days=3) - timedelta(hours=1))
    before = bot.command(BOB, "orders-db 30m INC-8 follow-up fix")
    assert "is with the approvers" in before.text
    pending = rid + 1

    bot.advance(timedelta(hours=2))
    blocked = bot.click(ALICE, ActionId.APPROVE, pending)
    assert f"has not written their review of request #{rid} (orders-db)" in (blocked.answer or "")
    assert "Your approval was not recorded" in (blocked.answer or "")
    assert view(bot, pending).status is Status.PENDING and view(bot, pending).decisions == ()
    assert ("approval_blocked", ALICE) in audit_actions(bot, pending)

    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        stored_before = session.scalar(select(func.count()).select_from(Request))
    refused = bot.command(BOB, "orders-db 30m INC-9 another fix")
    assert f"Your review of request #{rid} (orders-db) is overdue by more than 2d" in refused.text
    assert f"/breakglass review {rid} " in refused.text
    with bot.runtime.deps.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == stored_before
    assert any(e.actor == BOB and "overdue" in (e.reason or "") for e in events(bot, "request_refused"))

    glass = bot.command(BOB, "orders-db 20m INC-10 outage again --emergency")
    assert "Glass broken" in glass.text

    bot.command(BOB, f"review {rid} a migration locked orders")
    bot.advance(timedelta(minutes=20))  # the emergency ends; its own review is not overdue yet
    assert "is with the approvers" in bot.command(BOB, "orders-db 30m INC-11 the real fix").text


def test_the_packet_shows_request_decisions_timeline_and_activity(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-12 fix the index")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.advance(timedelta(minutes=30))
    assert view(bot, 1).status is Status.EXPIRED
    assert bot.runtime is not None
    now = bot.clock.now()
    with bot.runtime.deps.db.transaction() as session:
        rows = []
        for number in range(40):
            flagged = "DROP" if number in (3, 4) else None
            action = f"DROP TABLE t{number}" if flagged else f"SELECT {number} FROM orders"
            at = now - timedelta(minutes=30) + timedelta(seconds=number)
            rows.append(
                ActivityRecord(
                    request_id=1, at=at, principal="bob", action=action, detail={}, flagged=flagged, captured_at=now
                )
            )
        session.add_all(rows)
        session.flush()
        # vouched for as the reader vouches for a batch, or the end-of-test `audit verify` reports the rows inserted
        sha256 = kept_activity.batch_hash(kept_activity.row_data(row) for row in rows)
        ids = {"first_id": rows[0].id, "last_id": rows[-1].id}
        audit.record(session, "activity_captured", at=now, request_id=1, kept=40, sha256=sha256, **ids)
        queries.set_fields(session, 1, activity_seen=45)

    packet = bot.command(BOB, "review 1").text
    assert "Review of request #1" in packet and "`orders-db`" in packet and "INC-12 fix the index" in packet
    assert "approved by <@U0ALICE01>" in packet
    timeline = [line for line in packet.splitlines() if line.startswith("• ") and " by " in line and "`" in line]
    assert [a for a in ("requested", "approved", "granted", "expired") if any(f"`{a}`" in t for t in timeline)] == [
        "requested",
        "approved",
        "granted",
        "expired",
    ]
    assert packet.index("`requested`") < packet.index("`granted`") < packet.index("`expired`")
    assert "40 actions kept, 2 flagged" in packet and "5 more seen but not kept" in packet
    assert packet.index("DROP TABLE t3") < packet.index("SELECT 39 FROM orders")  # flagged first
    assert "SELECT 39 FROM orders" in packet and "SELECT 0 FROM orders" not in packet  # the most recent
    assert "…and 10 more kept actions not shown here" in packet
    assert "approved by <@U0ALICE01>" in bot.command(ALICE, "review 1").text
    assert "Review of request #1" in bot.command(ERIN, "review 1").text

    refused = bot.command(DAVE, "review 1").text
    assert "Review of request" not in refused and "Only the holder of request #1" in refused
    assert [e.actor for e in events(bot, "review_refused")] == [DAVE]


def test_two_sign_offs_at_once_one_wins_the_other_is_told(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} a migration locked orders")
    answers: dict[str, str] = {}
    start = threading.Barrier(2)

    def sign(who: str) -> None:
        start.wait()
        answers[who] = bot.command(who, f"review {rid} signed by {who}").text

    threads = [threading.Thread(target=sign, args=(who,)) for who in (ALICE, ERIN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    review = view(bot, rid).review
    assert review is not None and review.status == ReviewStatus.DONE
    winner = review.reviewer_id
    loser = ERIN if winner == ALICE else ALICE
    assert "signed off. Thank you" in answers[winner]
    assert "signed off" in answers[loser] and f"<@{winner}>" in answers[loser] and "Thank you" not in answers[loser]
    assert [e.actor for e in events(bot, "review_signed_off")] == [winner]
    assert review.notes == f"signed by {winner}"
