"""Attacks on issue 12 kept as regression tests: levels mid-request, twins by level params, concurrent reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.adapters.base import AdapterError
from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import PolicyError, parse_policy
from bot.services import activity
from bot.services.delivery_thread import BackgroundCourier
from bot.slack.ids import ActionId
from bot.store.models import ActivityRecord
from tests.attacks.test_same_person_and_levels import demo_policy, rid, thread
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, view
from tests.e2e.test_levels import POLICY as LEVELS


def test_emergency_write_while_read_is_active_does_not_make_two_live_levels(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    read = rid(bot.command(BOB, "orders-db 2h INC-5 look").text)
    bot.click(ALICE, ActionId.APPROVE, read)
    assert view(bot, read).status is Status.ACTIVE
    answer = bot.command(BOB, "orders-db:write 30m INC-5 fix --emergency").text
    live = [n for n in range(1, 5) if _exists(bot, n) and view(bot, n).status is Status.ACTIVE]
    assert live == [read], f"two live levels at once: {live} ({answer})"


def _exists(bot: LocalBot, number: int) -> bool:
    from bot.services.common import load_view

    assert bot.runtime is not None
    return load_view(bot.runtime.deps, number) is not None


TWIN = """
  orders-rw:
    adapter: webhook
    principal: "{email_local}"
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
      headers: {X-Access: read-write}
    approvers: [U0ALICE01]
"""


def test_a_resource_with_the_same_params_as_a_level_counts_as_the_same_access(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS + TWIN))
    rw = rid(bot.command(BOB, "orders-rw 30m INC-5 fix").text)
    bot.click(ALICE, ActionId.APPROVE, rw)
    assert view(bot, rw).status is Status.ACTIVE
    grant = receiver.events("grant")[-1]
    answer = bot.command(BOB, "orders-db:write 30m INC-5 fix").text
    if f"#{rw}" not in answer:
        write = rid(answer)
        bot.click(CAROL, ActionId.APPROVE, write)
        bot.click(DAVE, ActionId.APPROVE, write)
        both = view(bot, rw).status, view(bot, write).status
        answer += f" -> statuses {both}"
    assert f"#{rw}" in answer, (
        f"orders-db:write (same adapter, same merged params as orders-rw: {grant.headers}) was not counted as "
        f"the same access: {answer}"
    )


def test_a_requester_removed_from_a_level_mid_request_is_not_granted(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 30m INC-2 fix").text)
    bot.stop()
    shrunk = LEVELS.replace("        requesters: [U0BOB]\n", "        requesters: [U0DAVE]\n")
    assert shrunk != LEVELS
    bot2 = make_bot(policy=parse_policy(shrunk))
    bot2.click(CAROL, ActionId.APPROVE, number)
    bot2.click(DAVE, ActionId.APPROVE, number)
    assert view(bot2, number).status is not Status.ACTIVE, "granted a level its requester was removed from"


def test_an_approver_of_read_only_cannot_read_the_packet_of_a_write_grant(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    policy = LEVELS.replace("resources:\n", "review:\n  required: all\n  remind_every: 24h\nresources:\n", 1)
    bot = make_bot(policy=parse_policy(policy))
    number = rid(bot.command(BOB, "orders-db:write 20m INC-2 fix --emergency").text)
    bot.advance(timedelta(minutes=20))
    bot.command(BOB, f"review {number} did a fix")
    packet = bot.command(ALICE, f"review {number}").text
    assert "did a fix" not in packet and "INC-2" not in packet, f"read-only approver saw the write packet: {packet}"
    signed = bot.command(ALICE, f"review {number} ok").text
    assert "signed off" not in signed, signed
    ok = bot.command(CAROL, f"review {number}").text
    assert "did a fix" in ok, ok


@pytest.mark.parametrize("name", ["Read", "a:b", "", "read write", "wr!te", "-x"])
def test_a_level_name_that_cannot_be_typed_is_refused_at_start(name: str) -> None:
    text = LEVELS.replace("      read:\n", f"      '{name}':\n", 1)
    try:
        policy = parse_policy(text)
    except PolicyError:
        return
    levels = policy.resources["orders-db"].levels or {}
    assert name not in levels or name in ("Read",), f"level {name!r} accepted; it can never be asked for"


def test_two_replicas_reading_the_same_grant_post_once(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    policy = parse_policy(demo_policy(db))
    one = make_bot(policy=policy)
    two = make_bot(policy=policy)
    two.clock.advance(one.clock.now() - two.clock.now())
    number = rid(one.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(one, number).principal or ""
    for i in range(50):
        DemoDatabase.named(db).run(principal, f"SELECT {i} AS atk_marker", at=one.clock.now())
    for _ in range(3):
        for bot in (one, two):
            bot.clock.advance(timedelta(seconds=3))
        import threading

        results: list[Any] = []
        threads = [
            threading.Thread(target=lambda b=b, out=results: out.append(activity.read_due(b.runtime.deps)))  # type: ignore[misc]
            for b in (one, two)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for bot in (one, two):
            if isinstance(bot.runtime.deps.courier, BackgroundCourier):  # type: ignore[union-attr]
                bot.runtime.deps.courier.flush()  # type: ignore[union-attr]
    assert one.runtime is not None
    with one.runtime.deps.db.transaction() as session:
        kept = session.scalar(
            select(func.count()).select_from(ActivityRecord).where(ActivityRecord.request_id == number)
        )
    assert kept == 50, f"{kept} records kept of 50 statements"
    lines = "\n".join(thread(one, number) + thread(two, number))
    assert lines.count("SELECT 7 AS atk_marker") == 1, lines


def test_a_failing_read_skips_nothing(make_bot: Callable[..., LocalBot], monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    assert bot.runtime is not None
    adapter = bot.runtime.deps.adapter("orders", None)
    real = type(adapter).activity
    fails = {"left": 3}

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        if fails["left"] > 0:
            fails["left"] -= 1
            raise AdapterError("audit log unreadable right now", retryable=True)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(adapter), "activity", flaky)
    DemoDatabase.named(db).run(principal, "SELECT 'before the failure' AS atk", at=bot.clock.now())
    for _ in range(8):
        bot.clock.advance(timedelta(seconds=6))
        activity.read_due(bot.runtime.deps)
        if isinstance(bot.runtime.deps.courier, BackgroundCourier):
            bot.runtime.deps.courier.flush()
    assert any("before the failure" in t for t in thread(bot, number)), thread(bot, number)
