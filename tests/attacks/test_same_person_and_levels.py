"""Attacks on issue 12 kept as regression tests: one person behind two Slack accounts, almost-valid levels."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta

from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import ReviewStatus, Status
from bot.policy import parse_policy
from bot.services import activity
from bot.services.delivery_thread import BackgroundCourier
from bot.slack.ids import ActionId
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, channel_texts, view
from tests.e2e.test_levels import POLICY as LEVELS

BOB2 = "U0BOBTWO"  # a second Slack account of Bob's: same email local part, same backend login


def rid(text: str) -> int:
    found = re.search(r"#(\d+)", text)
    assert found, text
    return int(found.group(1))


def demo_policy(db: str, extra: str = "") -> str:
    return f"""
channels: {{approvals: C0APPROVALS, audit: C0SECURITY}}
review:
  required: emergency
  remind_every: 24h
  block_after: 1d
resources:
  orders:
    adapter: demo-db
    principal: "{{email_local}}"
    params: {{database: {db}, access: write, capture: true}}
    approvers: [U0ALICE01, U0CAROL, {BOB2}]
    emergency: true
    activity_every: 5s
    alert_on: ['(?i)\\b(drop|truncate)\\b']
{extra}"""


def flush(bot: LocalBot) -> None:
    assert bot.runtime is not None
    deps = bot.runtime.deps
    bot.clock.advance(timedelta(seconds=6))
    activity.read_due(deps)
    if isinstance(deps.courier, BackgroundCourier):
        deps.courier.flush()


def thread(bot: LocalBot, request_id: int) -> list[str]:
    current = view(bot, request_id)
    return [
        m.text
        for m in bot.slack.messages(current.approval_channel, replies=True)
        if current.approval_ts is not None and m.thread_ts == current.approval_ts
    ]


# -- reviews -----------------------------------------------------------------------------------------------------


def test_holder_cannot_sign_off_own_review_through_second_slack_account(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    bot.slack.add_user(BOB2, "bob2", "bob@example.org")  # same email local part: the same login "bob"
    number = rid(bot.command(BOB, "orders 20m INC-1 broke it --emergency").text)
    bot.advance(timedelta(minutes=20))
    assert view(bot, number).status is Status.EXPIRED
    assert "is written" in bot.command(BOB, f"review {number} I fixed a thing").text
    signed = bot.command(BOB2, f"review {number} looks fine to me").text
    review = view(bot, number).review
    assert review is not None
    assert review.status != ReviewStatus.DONE, f"the holder signed off their own review via a 2nd account: {signed}"


def test_second_slack_account_of_the_same_login_is_blocked_too(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    bot.slack.add_user(BOB2, "bob2", "bob@example.org")
    number = rid(bot.command(BOB, "orders 20m INC-1 broke it --emergency").text)
    bot.advance(timedelta(minutes=20))
    bot.advance(timedelta(days=3))  # review overdue by far more than block_after
    refused = bot.command(BOB, "orders 20m INC-2 again").text
    assert f"#{number}" in refused, refused
    other = bot.command(BOB2, "orders 20m INC-2 again").text
    assert f"review {number}" in other, f"block_after bypassed by a second Slack account of the same login: {other}"


# -- levels ------------------------------------------------------------------------------------------------------


def test_extension_of_a_level_stays_within_that_levels_max(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 50m INC-9 fix --emergency").text)
    assert view(bot, number).status is Status.ACTIVE and view(bot, number).level == "write"
    answer = bot.command(CAROL, f"extend {number} 30m").text  # 80 min in all: write allows 1h
    assert view(bot, number).expires_at is not None
    assert view(bot, number).duration <= timedelta(hours=1) or "1h" in answer, answer
    granted = view(bot, number)
    assert granted.expires_at - granted.granted_at <= timedelta(hours=1), f"extended past write's max: {answer}"


def test_almost_valid_level_texts_are_refused_not_granted_another_level(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    for text in [
        "orders-db: 30m INC-1 x",
        "orders-db:WRITE 30m INC-1 x",
        "orders-db:write:read 30m INC-1 x",
        ":write 30m INC-1 x",
        "orders-db::write 30m INC-1 x",
        "orders-db:write\u200b 30m INC-1 x",
        "orders-db:\uff57rite 30m INC-1 x",  # a full-width w
    ]:
        answer = bot.command(BOB, text).text
        assert not re.search(r"Request #\d+", answer) or "orders-db:write" in answer, (text, answer)
        if re.search(r"#(\d+)", answer) and "orders-db:write" not in answer:
            raise AssertionError(f"{text!r} was accepted as another level: {answer}")


def test_webhook_level_is_null_for_a_resource_without_levels(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    number = rid(bot.command(BOB, "flat 30m INC-1 x").text)
    bot.click(ALICE, ActionId.APPROVE, number)
    grant = receiver.events("grant")[-1]
    assert "level" in grant.body and grant.body["level"] is None, grant.body


def test_approver_removed_from_a_level_mid_request_cannot_approve(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 30m INC-2 fix").text)
    bot.click(CAROL, ActionId.APPROVE, number)
    bot.stop()
    shrunk = LEVELS.replace("approvers: [U0CAROL, U0DAVE]", "approvers: [U0DAVE, U0ERIN]")
    assert shrunk != LEVELS
    bot2 = make_bot(policy=parse_policy(shrunk))
    bot2.click(DAVE, ActionId.APPROVE, number)
    assert view(bot2, number).status is Status.PENDING, "Carol's approval counted after she was removed from write"


# -- watched sessions --------------------------------------------------------------------------------------------


def test_injected_mentions_in_statements_stay_inert(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    nasty = [
        "SELECT '<!channel> <!here> <@U0ALICE01> <!subteam^S0SRELEADS>'",
        "SELECT '```\n<!everyone> escaped the block'",
        "DROP TABLE x -- <https://evil.example|click me> `` ` @channel",
        "SELECT '&lt;!channel&gt;'",
    ]
    for s in nasty:
        DemoDatabase.named(db).run(principal, s, at=bot.clock.now())
    for _ in range(4):
        flush(bot)
    texts = thread(bot, number) + channel_texts(bot, "C0SECURITY")
    shown = [t for t in texts if "escaped the block" in t or "evil" in t or "S0SRELEADS" in t or "U0ALICE01" in t]
    assert shown, texts
    for t in shown:
        for bad in ["<!channel>", "<!here>", "<!everyone>", "<@U0ALICE01>", "<!subteam^", "<https://evil"]:
            assert bad not in t, (bad, t)
    bot.command(BOB, f"revoke {number}")


def test_thousands_of_statements_make_one_capped_digest(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    for i in range(3000):
        DemoDatabase.named(db).run(principal, f"SELECT {i} /* {'y' * 500} */", at=bot.clock.now())
    DemoDatabase.named(db).run(principal, "SELECT 'x' || " + "'z' || " * 20000 + "'end'", at=bot.clock.now())
    for _ in range(4):
        flush(bot)
    replies = thread(bot, number)
    digests = [t for t in replies if "🔎" in t]
    assert 1 <= len(digests) <= 3, f"{len(digests)} digests: a flood"
    assert all(len(t) < 12000 for t in digests), max(len(t) for t in digests)
    bot.command(BOB, f"revoke {number}")
    from sqlalchemy import func, select

    from bot.store.models import ActivityRecord

    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        kept = session.scalar(
            select(func.count()).select_from(ActivityRecord).where(ActivityRecord.request_id == number)
        )
    assert kept is not None and kept <= 1000, kept


def test_statement_to_thread_within_activity_every(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    DemoDatabase.named(db).run(principal, "TRUNCATE orders_atk", at=bot.clock.now())
    flush(bot)  # 6 s of manual time later: activity_every is 5 s
    assert any("orders_atk" in t for t in thread(bot, number)), thread(bot, number)
    assert any("orders_atk" in t and "Flagged" in t for t in channel_texts(bot, "C0SECURITY"))
    bot.command(BOB, f"revoke {number}")
