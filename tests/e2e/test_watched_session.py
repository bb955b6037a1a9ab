"""The watched session over the real Slack path and a real backend: a Redis 7 whose commands the redis adapter reads
from a MONITOR stream (``capture: monitor``). What the grant's user does shows up in the thread of the approval
message in the Slack stand-in, a command matching ``alert_on`` is announced in the audit channel, and the revoke
reads last and stops the capture. The scheduler's job is played by calling ``read_due`` as the clock moves on."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import func, select

from bot.devtools.local_bot import LocalBot
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import activity
from bot.services.delivery_thread import BackgroundCourier
from bot.slack.ids import ActionId
from bot.store.models import Request
from tests.adapters.conftest import service_url
from tests.e2e.helpers import ALICE, BOB, audit_actions, channel_texts, dm_texts, view

RUN = uuid.uuid4().hex[:8]
BOT_USER = f"bgwbot{RUN}"
BOT_PASSWORD = secrets.token_urlsafe(24)
BOT_RULES = ["+acl|setuser", "+acl|deluser", "+acl|whoami", "+acl|dryrun", "+acl|getuser", "+acl|list"]
CAPTURE_RULES = ["+monitor", "+client|list"]
PREFIX = f"bgw{RUN}-"
EVERY = timedelta(seconds=5)
POLL = 120  # reads, each EVERY of manual time later (10 min in all, well inside the 30 min grant) and a moment of
# real time for the stream to deliver: 30 s in all, for a CI machine busy with the parallel tests beside these


@pytest.fixture
def redis_server() -> Iterator[tuple[str, int]]:
    url = service_url("BREAKGLASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    admin = redis.Redis.from_url(url, decode_responses=True)
    admin.execute_command("ACL", "SETUSER", BOT_USER, "reset", "on", f">{BOT_PASSWORD}", *BOT_RULES, *CAPTURE_RULES)
    parts = urlsplit(url)
    yield parts.hostname or "127.0.0.1", parts.port or 6379
    ours = [user for user in admin.execute_command("ACL", "USERS") if user.startswith((PREFIX, BOT_USER))]
    if ours:
        admin.execute_command("ACL", "DELUSER", *ours)
    admin.close()


def policy_for(server: tuple[str, int]) -> str:
    host, port = server
    return f"""
channels: {{approvals: C0APPROVALS, audit: C0SECURITY}}
resources:
  cache:
    adapter: redis
    principal: "{{email_local}}"
    params:
      host: {host}
      port: {port}
      username: {BOT_USER}
      password: {BOT_PASSWORD}
      rules: ["~orders:*", "+get", "+del"]
      user_prefix: {PREFIX}
      capture: monitor
      connect_timeout: 2
      timeout: 2
    approvers: [U0ALICE01]
    activity_every: 5s
    alert_on: ['(?i)^del\\b']
"""


def thread_replies(bot: LocalBot, request_id: int) -> list[str]:
    current = view(bot, request_id)
    return [
        message.text
        for message in bot.slack.messages(current.approval_channel, replies=True)
        if current.approval_ts is not None and message.thread_ts == current.approval_ts
    ]


def read_until(bot: LocalBot, seen: Callable[[], bool]) -> None:
    """Move the clock on and read, as the scheduler's job would, until Slack shows what is awaited."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    for _ in range(POLL):
        bot.clock.advance(EVERY)
        activity.read_due(deps)
        if isinstance(deps.courier, BackgroundCourier):
            deps.courier.flush()
        if seen():
            return
        time.sleep(0.25)  # the MONITOR stream is the backend's own, and arrives in its own time
    raise AssertionError("never shown in Slack")


def test_what_the_user_does_is_in_the_approval_thread_and_a_match_alerts_security(
    make_bot: Callable[..., LocalBot], redis_server: tuple[str, int]
) -> None:
    bot = make_bot(policy=parse_policy(policy_for(redis_server)))
    bot.command(BOB, "cache 30m INC-7 checking the orders cache")
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        request_id = int(session.scalar(select(func.max(Request.id))) or 0)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    current = view(bot, request_id)
    assert current.status is Status.ACTIVE, current.failure
    assert ("capture_started", "breakglass") in audit_actions(bot, request_id)

    found = [re.search(r"`([^`]+)`", text) for text in dm_texts(bot, BOB) if "one-time credentials" in text]
    assert found and found[-1] is not None, "no credentials reached the requester"
    adapter = bot.runtime.deps.adapter("cache")
    user = adapter.user_name(current.principal or "")  # type: ignore[union-attr]
    host, port = redis_server
    client = redis.Redis(host=host, port=port, username=user, password=found[-1].group(1), decode_responses=True)
    try:
        client.get(f"orders:{RUN}")
        client.delete(f"orders:{RUN}-gone")
    finally:
        client.close()

    read_until(bot, lambda: any(f"orders:{RUN}-gone" in text for text in thread_replies(bot, request_id)))
    [digest] = [text for text in thread_replies(bot, request_id) if f"orders:{RUN}-gone" in text]
    assert f"orders:{RUN}" in digest and f"#{request_id}" in digest and "cache" in digest
    assert BOT_PASSWORD not in digest

    read_until(bot, lambda: any("Flagged" in text for text in channel_texts(bot, "C0SECURITY")))
    [alert] = [text for text in channel_texts(bot, "C0SECURITY") if "Flagged" in text]
    assert f"#{request_id}" in alert and f"orders:{RUN}-gone" in alert and f"<@{BOB}>" in alert

    bot.click(ALICE, ActionId.REVOKE, request_id)
    bot.slack.wait_for(lambda _: view(bot, request_id).status is Status.REVOKED)
    actions = [action for action, _ in audit_actions(bot, request_id)]
    assert "activity_flagged" in actions and "capture_ended" in actions
