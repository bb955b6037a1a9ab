"""Attacks on issue 12 kept as regression tests: alerts in time, floods, padded statements, a silent backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import LocalBot
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import activity
from bot.services.delivery_thread import BackgroundCourier
from bot.slack.ids import ActionId
from tests.attacks.test_same_person_and_levels import BOB2, demo_policy, rid
from tests.e2e.helpers import BOB, channel_texts, view


def test_alert_on_match_reaches_security_within_a_minute_when_activity_every_is_long(
    make_bot: Callable[..., LocalBot],
) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db).replace("activity_every: 5s", "activity_every: 5m")))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    bot.clock.advance(timedelta(seconds=90))
    assert bot.runtime is not None
    activity.read_due(bot.runtime.deps)  # a read 90 s in: the grant's first, say
    DemoDatabase.named(db).run(principal, "DROP TABLE orders_atk", at=bot.clock.now())
    for _ in range(6):  # ten seconds at a time, one minute in all, the scheduler's job each time
        bot.clock.advance(timedelta(seconds=10))
        activity.read_due(bot.runtime.deps)
        if isinstance(bot.runtime.deps.courier, BackgroundCourier):
            bot.runtime.deps.courier.flush()
    flagged = [t for t in channel_texts(bot, "C0SECURITY") if "orders_atk" in t]
    assert flagged, "a DROP was not announced to security within the minute (activity_every: 5m)"


def test_a_second_slack_account_of_the_requester_cannot_approve(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    bot.slack.add_user(BOB2, "bob2", "bob@example.org")
    number = rid(bot.command(BOB, "orders 30m INC-1 look").text)
    same = bot.command(BOB2, "orders 30m INC-1 look").text
    assert f"#{number}" in same, f"not the same identity after all: {same}"
    answer = bot.click(BOB2, ActionId.APPROVE, number).text
    assert view(bot, number).status is Status.PENDING, f"approved by the requester's own 2nd account: {answer}"


def test_a_thousand_flagged_statements_do_not_flood_the_audit_channel(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    before = len(channel_texts(bot, "C0SECURITY"))
    for i in range(1000):
        DemoDatabase.named(db).run(principal, f"DROP TABLE t{i}", at=bot.clock.now())
    assert bot.runtime is not None
    for _ in range(4):
        bot.clock.advance(timedelta(seconds=6))
        activity.read_due(bot.runtime.deps)
        if isinstance(bot.runtime.deps.courier, BackgroundCourier):
            bot.runtime.deps.courier.flush()
    posted = channel_texts(bot, "C0SECURITY")[before:]
    assert len(posted) <= 10, f"{len(posted)} messages to the audit channel for one burst"


def _tick(bot: LocalBot, seconds: float) -> None:
    assert bot.runtime is not None
    bot.clock.advance(timedelta(seconds=seconds))
    activity.read_due(bot.runtime.deps)
    if isinstance(bot.runtime.deps.courier, BackgroundCourier):
        bot.runtime.deps.courier.flush()


def test_with_the_default_60s_a_statement_is_in_the_thread_within_60s(make_bot: Callable[..., LocalBot]) -> None:
    from tests.attacks.test_same_person_and_levels import thread

    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db).replace("    activity_every: 5s\n", "")))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    for _ in range(40):  # the scheduler's job every 2 s, for 80 s: reads happen in their own rhythm
        _tick(bot, 2)
    _tick(bot, 1)  # an odd second, so the statement falls just after a read
    DemoDatabase.named(db).run(principal, "SELECT 'timed_atk'", at=bot.clock.now())
    waited = 0
    while not any("timed_atk" in t for t in thread(bot, number)):
        _tick(bot, 2)
        waited += 2
        assert waited <= 120, "never shown"
    assert waited <= 60, f"shown {waited}s after it happened (activity_every 60s)"


def test_a_statement_just_before_the_revoke_is_read_last(make_bot: Callable[..., LocalBot]) -> None:
    from tests.attacks.test_same_person_and_levels import thread

    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    DemoDatabase.named(db).run(principal, "TRUNCATE last_words_atk", at=bot.clock.now())
    bot.command(BOB, f"revoke {number}")
    assert bot.runtime is not None
    if isinstance(bot.runtime.deps.courier, BackgroundCourier):
        bot.runtime.deps.courier.flush()
    bot.slack.wait_for(lambda _: any("last_words_atk" in t for t in thread(bot, number)))
    assert any("last_words_atk" in t for t in channel_texts(bot, "C0SECURITY"))


def test_a_backend_that_will_not_record_leaves_the_grant_and_says_so(
    make_bot: Callable[..., LocalBot], monkeypatch: object
) -> None:
    import pytest

    from bot.adapters.base import AdapterError
    from tests.attacks.test_same_person_and_levels import thread

    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    assert bot.runtime is not None
    adapter = bot.runtime.deps.adapter("orders", None)

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise AdapterError("audit plugin not loaded <!channel>", retryable=False)

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(type(adapter), "watch", refuse)
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    if isinstance(bot.runtime.deps.courier, BackgroundCourier):
        bot.runtime.deps.courier.flush()
    assert view(bot, number).status is Status.ACTIVE
    said = [t for t in thread(bot, number) + channel_texts(bot, "C0SECURITY") if "not being recorded" in t]
    assert len(said) >= 2, thread(bot, number) + channel_texts(bot, "C0SECURITY")
    assert all("<!channel>" not in t for t in said)


def test_a_padded_drop_still_alerts(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    DemoDatabase.named(db).run(principal, "/* " + "x" * 2100 + " */ DROP TABLE padded_atk", at=bot.clock.now())
    DemoDatabase.named(db).run(principal, "SELECT '" + "y" * 2100 + "'; TRUNCATE hidden_atk", at=bot.clock.now())
    assert bot.runtime is not None
    for _ in range(3):
        bot.clock.advance(timedelta(seconds=6))
        activity.read_due(bot.runtime.deps)
        if isinstance(bot.runtime.deps.courier, BackgroundCourier):
            bot.runtime.deps.courier.flush()
    flagged = [t for t in channel_texts(bot, "C0SECURITY") if "Flagged" in t or "🚩" in t]
    assert len(flagged) >= 1, "a DROP padded past 2,000 characters was not flagged (alert_on matches the cut text)"
