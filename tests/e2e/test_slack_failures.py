"""Slack failing: rate limits, 5xx and timeouts are retried without posting anything twice, and a Slack outage
never blocks or undoes a revoke."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TypeVar
from urllib.error import URLError

import pytest
from slack_sdk import WebClient

from bot.devtools.local_bot import BOT_TOKEN, LocalBot
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from bot.slack.notifier import SlackNotifier
from bot.slack.retry import SlackRetry
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, buttons, channel_texts, dm_texts, state, view

T = TypeVar("T")


def slack_retry(bot: LocalBot) -> SlackRetry:
    """The retry handler of the bot's Slack clients (the notifier's, which the Bolt app's shares)."""
    assert bot.runtime is not None
    notifier = bot.runtime.deps.notifier
    assert isinstance(notifier, SlackNotifier)
    client = notifier.client
    assert bot.runtime.app.client.retry_handlers is client.retry_handlers
    [handler] = client.retry_handlers
    assert isinstance(handler, SlackRetry)
    return handler


def quick_retries(bot: LocalBot) -> list[float]:
    """Let the bot's Slack client retry after 10 ms instead of its real backoff; returns the waits it asked for."""
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        time.sleep(0.01)

    slack_retry(bot).sleep = sleep
    return asked


def eventually(check: Callable[[], T], timeout: float = 30.0) -> T:  # returns as soon as true
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.01)
    return result


def approved(bot: LocalBot, text: str = "orders-db 30m INC-1 fix", requester: str = BOB) -> int:
    bot.command(requester, text)
    request_id = max(v for v in range(1, 100) if bot.request_message(v) is not None)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    assert view(bot, request_id).status is Status.ACTIVE
    return request_id


def count(texts: list[str], fragment: str) -> int:
    return sum(fragment in text for text in texts)


# -- through the real bot -----------------------------------------------------------------------------------------


def test_a_rate_limited_approval_post_waits_for_retry_after_and_is_posted_once(bot: LocalBot) -> None:
    bot.slack.fail_next("chat.postMessage", 1, status=429, retry_after=1)

    reply = bot.command(BOB, "orders-db 30m INC-1 fix")

    assert "Request #1" in reply.text
    limited, posted = [c for c in bot.slack.calls("chat.postMessage") if c.args["channel"] == "C0APPROVALS"]
    assert limited.failed and posted.ok
    assert posted.at - limited.at >= 1.0  # the retry came no sooner than Retry-After said
    assert len(bot.slack.posts_to("C0APPROVALS")) == 1 and len(bot.slack.messages("C0APPROVALS")) == 1
    assert buttons(bot.request_message(1)) == [ActionId.APPROVE, ActionId.APPROVE_WITH_COMMENT, ActionId.DENY]
    bot.slack.wait_for(lambda s: s.posts_to("C0INCIDENT"))
    assert count(dm_texts(bot, BOB), "is with the approvers") == 1
    assert count(channel_texts(bot, "C0INCIDENT"), "asked for access") == 1


def test_5xx_during_approve_and_grant_are_retried_and_nothing_is_sent_twice(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    waits = quick_retries(bot)
    bot.command(BOB, "orders-db 30m INC-1 fix")
    before = len(bot.slack.calls())
    for method, statuses in (("chat.postMessage", (500, 500, 503)), ("chat.update", (502, 503, 500))):
        for status in statuses:
            bot.slack.fail_next(method, 1, status=status)

    bot.click(ALICE, ActionId.APPROVE, 1)
    # A post answered with a 5xx may still have happened (a gateway's 502 or 504): the client does not repeat it; the
    # outbox does, after 1, 2, 4 s, once it has looked in the conversation and not found it.
    for seconds in (1, 2, 4):
        bot.advance(timedelta(seconds=seconds))

    during = bot.slack.calls()[before:]
    assert sum(c.failed for c in during) == 6  # every fault was met
    assert len(waits) == 3  # the edits were retried by the client, the posts by the outbox
    # Looked for first: in the channel for a message of its own, in the thread for a reply there.
    assert len([c for c in during if c.method in ("conversations.history", "conversations.replies")]) == 3
    assert view(bot, 1).status is Status.ACTIVE and len(receiver.events("grant")) == 1
    texts = dm_texts(bot, BOB)
    assert [count(texts, s) for s in ("is with the approvers", "was approved", "is active until")] == [1, 1, 1]
    assert len(texts) == 3
    assert [count(channel_texts(bot, "C0INCIDENT"), s) for s in ("asked for access", "has access")] == [1, 1]
    top_level = [call for call in bot.slack.posts_to("C0APPROVALS") if not call.args.get("thread_ts")]
    assert len(top_level) == 1 and len(bot.slack.messages("C0APPROVALS")) == 1
    replies = [str(call.args["text"]) for call in bot.slack.posts_to("C0APPROVALS") if call.args.get("thread_ts")]
    assert [count(replies, s) for s in ("was approved", "has access")] == [1, 1]  # the thread, too, has each once
    message = bot.request_message(1)
    assert message is not None and message["updates"] == 1  # the failed edits were never applied
    assert "Active until" in state(message) and buttons(message) == [ActionId.REVOKE]


def test_a_slack_outage_never_blocks_or_undoes_a_revoke(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    # One backend call at a time per resource: a revoke waiting behind a stuck Slack call would show.
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, lane_width=1))
    assert bot.runtime is not None
    bot.slack.set_group("S0ONCALL", [BOB, DAVE])  # two people on call: one person holds one grant of a resource
    first = approved(bot, "orders-db 30m INC-1 fix")
    second = approved(bot, "orders-db 45m INC-2 fix", requester=DAVE)
    bot.sweep()
    outage_began = len(bot.slack.calls())
    for method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
        bot.slack.fail_next(method, 20, status=500)  # more than the retries of a few calls cover
    slack_back = threading.Event()
    waits: list[float] = []

    def retrying_until_slack_is_back(seconds: float) -> None:
        waits.append(seconds)
        slack_back.wait(timeout=120)  # set by the test's end; a short cap could lift the outage mid-test

    slack_retry(bot).sleep = retrying_until_slack_is_back
    try:
        # Every Slack call fails and then hangs in its retry wait, yet access is revoked and recorded, twice over.
        for revokes, request_id, minutes in ((1, first, 30), (2, second, 15)):
            bot.clock.advance(timedelta(minutes=minutes))
            bot.runtime.sweeper(wait=False)  # as the scheduler does
            receiver.wait_for(lambda calls, n=revokes: sum(c.event == "revoke" for c in calls) == n)
            eventually(lambda rid=request_id: view(bot, rid).status is Status.EXPIRED)
            eventually(lambda: waits)
        assert not slack_back.is_set()
        assert not any(c.ok for c in bot.slack.calls()[outage_began:])
    finally:
        slack_back.set()
    bot.sweep()  # the notices stay owed once the client's retries are spent

    during = bot.slack.calls()[outage_began:]
    assert during and all(c.failed for c in during)  # Slack took nothing in
    revokes = receiver.events("revoke")
    assert all(c.valid for c in revokes)
    assert [c.body["grant_id"] for c in revokes] == [view(bot, first).uid, view(bot, second).uid]
    for request_id in (first, second):
        assert view(bot, request_id).status is Status.EXPIRED  # the revoke stands
        actions = [a for a, _ in audit_actions(bot, request_id)]
        assert actions[-1] == "expired" and "revoke_failed" not in actions

    bot.slack.clear_faults()  # Slack is back
    quick_retries(bot)
    bot.advance(timedelta(minutes=1))  # what the outage held back goes out, once
    for request_id, person in ((first, BOB), (second, DAVE)):
        assert count(dm_texts(bot, person), f"expired and was revoked. Request #{request_id}") == 1
        assert "Expired at" in state(bot.request_message(request_id))
    third = approved(bot, "orders-db 30m INC-3 fix")
    assert "Active until" in state(bot.request_message(third))
    bot.advance(timedelta(minutes=30))
    assert view(bot, third).status is Status.EXPIRED
    assert "Expired at" in state(bot.request_message(third))
    assert count(dm_texts(bot, BOB), f"expired and was revoked. Request #{third}") == 1
    assert len(receiver.events("revoke")) == 3 and view(bot, first).status is Status.EXPIRED


# -- the retry handler on a real WebClient ------------------------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=BOT_TOKEN) as running:
        yield running


def impatient(base_url: str, waits: list[float], retries: int = 4) -> WebClient:
    """A client that gives up on an answer after 0.5 s and retries at once, noting how long it was asked to wait."""
    handler = SlackRetry(max_retry_count=retries, sleep=waits.append)
    return WebClient(base_url=base_url, token=BOT_TOKEN, timeout=0.5, retry_handlers=[handler])  # type: ignore[arg-type]


def test_a_timed_out_edit_is_retried(standin: SlackStandIn) -> None:
    waits: list[float] = []
    client = impatient(standin.api_url, waits)
    ts = client.chat_postMessage(channel="C0APPROVALS", text="pending")["ts"]
    standin.stall_next("chat.update", 1, seconds=60)  # the client gives up after 0.5 s whatever the load

    answer = client.chat_update(channel="C0APPROVALS", ts=ts, text="approved")

    assert answer["ok"] and len(waits) == 1
    assert [c.ok for c in standin.calls("chat.update")] == [True, True]
    # Slack applied the timed-out edit and then the same edit again: one message, holding the update.
    assert [m.text for m in standin.messages("C0APPROVALS")] == ["approved"]


def test_a_timed_out_new_message_is_not_sent_again(standin: SlackStandIn) -> None:
    waits: list[float] = []
    client = impatient(standin.api_url, waits)
    standin.stall_next("chat.postMessage", 1, seconds=60)  # the client gives up after 0.5 s whatever the load

    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel="C0APPROVALS", text="request #1")

    assert len(standin.calls("chat.postMessage")) == 1 and waits == []
    assert [m.text for m in standin.messages("C0APPROVALS")] == ["request #1"]  # Slack did post it: once


def test_a_refused_connection_is_retried_even_for_new_messages() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []  # nothing listens on ``port`` now: the request never reaches Slack
    client = impatient(f"http://127.0.0.1:{port}/api/", waits, retries=3)

    with pytest.raises(URLError) as raised:
        client.chat_postMessage(channel="C0APPROVALS", text="request #1")

    assert isinstance(raised.value.reason, ConnectionRefusedError)
    assert len(waits) == 3 and waits == sorted(waits)  # retried as configured, backing off


def test_a_rate_limit_waits_as_long_as_retry_after_says(standin: SlackStandIn) -> None:
    waits: list[float] = []
    client = impatient(standin.api_url, waits)
    standin.fail_next("chat.postMessage", 2, status=429, retry_after=7)

    client.chat_postMessage(channel="C0APPROVALS", text="request #1")

    assert waits == [7.0, 7.0]
    assert [c.failed for c in standin.calls("chat.postMessage")] == [True, True, False]
    assert len(standin.messages("C0APPROVALS")) == 1
