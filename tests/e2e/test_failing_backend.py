"""A backend that fails or hangs: revokes are retried with backoff until they succeed, loudly, and are never recorded
as done early; a failed grant is never shown as active; one hung backend holds up only its own resource."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.devtools.local_bot import BOT_TOKEN, LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import deadline
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent, Request
from tests.e2e.conftest import POLICY, WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, channel_texts, dm_texts, state, view

AUDIT = "C0SECURITY"
KEEPS_FAILING = "keeps failing"
AT_LAST = "revoked at last"
EXPIRED_DM = "has expired and was revoked"
NO_ANSWER = "no answer within"


# -- helpers -------------------------------------------------------------------------------------------------------


def approved(bot: LocalBot, text: str = "orders-db 30m INC-1 fix", requester: str = BOB) -> int:
    """A request made and approved; its access is active."""
    bot.command(requester, text)
    request_id = newest_request(bot)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    assert view(bot, request_id).status is Status.ACTIVE
    return request_id


def newest_request(bot: LocalBot) -> int:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        newest = session.scalar(select(func.max(Request.id)))
    assert newest is not None
    return int(newest)


def audit_events(bot: LocalBot, request_id: int, action: str) -> list[tuple[datetime, dict[str, Any]]]:
    """When each ``action`` event of a request was recorded (by the bot's clock), with its detail."""
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        statement = (
            select(AuditEvent)
            .where(AuditEvent.request_id == request_id, AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
        return [(event.at, dict(event.detail)) for event in session.scalars(statement)]


def statuses(bot: LocalBot, request_ids: Iterable[int]) -> list[Status]:
    return [view(bot, request_id).status for request_id in request_ids]


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.01)


def approval_states_ever_shown(bot: LocalBot, request_id: int) -> list[str]:
    """Every status line the approval message of a request has shown, from its first post to its last edit."""
    shown = []
    for call in bot.slack.calls():
        if call.method not in ("chat.postMessage", "chat.update") or call.args.get("channel") != "C0APPROVALS":
            continue
        blocks = call.args.get("blocks") or []
        if f"#{request_id}" not in str(call.args.get("text")) + str(blocks):
            continue
        shown.append(state({"blocks": blocks}))
    return shown


def secrets_in(texts: Iterable[str]) -> list[str]:
    return [text for text in texts if WEBHOOK_SECRET in text or BOT_TOKEN in text]


# -- 1. a long outage ----------------------------------------------------------------------------------------------

ALERT_AFTER = 2
FAILURES = 5  # more than ALERT_AFTER: the alert goes out once, in the middle of the outage
BACKOFF = timedelta(seconds=10)
STEP = timedelta(seconds=5)  # divides every backoff, so an attempt lands exactly on a step


def test_a_revoke_is_retried_with_backoff_through_a_long_outage_and_never_marked_done_early(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    tuning = Tuning(
        grant_retry_pause=0.01,
        revoke_alert_after=ALERT_AFTER,
        backoff_base=BACKOFF,
        backoff_max=timedelta(minutes=10),
        jitter=0,  # the attempts are compared with the backoff exactly
    )
    bot = make_bot(tuning=tuning)
    request_id = approved(bot)
    # The backend's error pages echo the shared secret: it must not reach Slack.
    receiver.fail_next(FAILURES, status=500, body={"error": f"upstream refused HMAC key {WEBHOOK_SECRET}"})

    bot.advance(timedelta(minutes=30))  # expiry: the first attempt
    attempts = [bot.clock.now()]
    assert len(receiver.events("revoke")) == 1

    while view(bot, request_id).status is not Status.EXPIRED:
        assert len(attempts) <= FAILURES, "the receiver recovered, yet the revoke was not confirmed"
        before = len(receiver.events("revoke"))
        bot.advance(STEP)
        now = bot.clock.now()
        arrived = len(receiver.events("revoke")) - before
        waited = now - attempts[-1]
        if arrived:
            # The next attempt comes exactly when its backoff is over, never inside it.
            assert arrived == 1 and waited == tuning.backoff(len(attempts)), (len(attempts), waited)
            attempts.append(now)
        else:
            assert waited < tuning.backoff(len(attempts))

        current = view(bot, request_id)
        if current.status is Status.EXPIRED:
            break
        failed = len(attempts)
        assert current.status is Status.REVOKE_FAILED and current.revoke_attempts == failed
        assert f"Revoke failing (attempt {failed}), retrying" in state(bot.request_message(request_id))
        assert audit_events(bot, request_id, "expired") == []
        assert not any(EXPIRED_DM in text for text in dm_texts(bot, BOB))
        alerts = [text for text in channel_texts(bot, AUDIT) if KEEPS_FAILING in text]
        assert len(alerts) == (1 if failed >= ALERT_AFTER else 0)
        assert not any(AT_LAST in text for text in channel_texts(bot, AUDIT))

    # Attempts spaced 10s, 20s, 40s, 80s, 160s apart: exponential backoff, as the receiver saw them.
    gaps = [later - earlier for earlier, later in pairwise(attempts)]
    assert gaps == [BACKOFF * 2**n for n in range(FAILURES)]
    calls = receiver.events("revoke")
    assert [call.status for call in calls] == [500] * FAILURES + [200]
    assert all(call.valid for call in calls)
    assert len({call.headers["Idempotency-Key"] for call in calls}) == 1  # one revoke, retried

    # The audit trail agrees: a revoke_failed per failure, at the times the receiver was called; then, only once
    # the receiver confirmed, the one "expired".
    failures = audit_events(bot, request_id, "revoke_failed")
    assert [at for at, _ in failures] == attempts[:FAILURES]
    assert [detail["attempt"] for _, detail in failures] == list(range(1, FAILURES + 1))
    assert [at for at, _ in audit_events(bot, request_id, "expired")] == [attempts[-1]]
    actions = [action for action, _ in audit_actions(bot, request_id)]
    assert actions.index("expired") > max(i for i, action in enumerate(actions) if action == "revoke_failed")

    # One alert, mid-outage: it names the request, the resource, the attempts and the error, with the secret
    # redacted; and, once it worked, one message that it is revoked at last.
    security = channel_texts(bot, AUDIT)
    [alert] = [text for text in security if KEEPS_FAILING in text]
    assert f"#{request_id}" in alert and "*orders-db*" in alert and "<@U0BOB>" in alert
    assert f"{ALERT_AFTER} attempts" in alert and "answered 500" in alert and "upstream refused HMAC key" in alert
    assert "[redacted]" in alert
    [recovered] = [text for text in security if AT_LAST in text]
    assert f"#{request_id}" in recovered and "*orders-db*" in recovered
    assert security.index(alert) < security.index(recovered)
    current = view(bot, request_id)
    shown = [*security, *dm_texts(bot, BOB), *approval_states_ever_shown(bot, request_id), current.failure or ""]
    assert secrets_in(shown) == []

    assert current.status is Status.EXPIRED and current.ended_at == attempts[-1]
    assert "Expired at" in state(bot.request_message(request_id))
    assert sum(EXPIRED_DM in text for text in dm_texts(bot, BOB)) == 1

    bot.advance(timedelta(hours=1))  # and nothing more happens
    assert len(receiver.events("revoke")) == FAILURES + 1
    assert sum(AT_LAST in text for text in channel_texts(bot, AUDIT)) == 1


# -- 2. a hung backend ---------------------------------------------------------------------------------------------

CALL_TIMEOUT = 0.3
# Calls are held until the test releases them, not for a fixed time a busy machine could use up before the test
# looked; the adapter's own timeout is longer than any hold, so the held answer does come, too late.
HELD = 60.0
PATIENT_ADAPTER = re.sub(r"timeout: \d+\n", "timeout: 90\n", POLICY)


def no_backend_call_running() -> bool:
    """No abandoned backend call is still waiting for its answer (``call_within`` runs each on such a thread)."""
    return deadline.calls_running() == 0


def test_a_hung_revoke_is_given_up_after_the_call_timeout_and_retried_after_backoff(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    tuning = Tuning(grant_retry_pause=0.01, call_timeout=CALL_TIMEOUT, backoff_base=BACKOFF, jitter=0)
    bot = make_bot(policy=parse_policy(PATIENT_ADAPTER), tuning=tuning)
    request_id = approved(bot)
    receiver.hang(HELD)

    bot.advance(timedelta(minutes=30))

    expired_at = bot.clock.now()
    current = view(bot, request_id)
    assert current.status is Status.REVOKE_FAILED and current.revoke_attempts == 1
    assert NO_ANSWER in (current.failure or "")
    [(at, detail)] = audit_events(bot, request_id, "revoke_failed")
    assert at == expired_at and NO_ANSWER in detail["error"]
    assert f"Revoke failing (attempt 1), retrying: the backend gave {NO_ANSWER}" in state(
        bot.request_message(request_id)
    )
    assert receiver.in_flight == 1  # the sweep did not wait for the hung call

    # The hung call is answered 200 after all, to a caller that gave up on it: that proves nothing was revoked
    # in time, so it must not count.
    receiver.release()
    receiver.wait_until_idle()
    assert receiver.events("revoke")[0].status == 200
    eventually(no_backend_call_running, timeout=30, what="the abandoned call took its answer in")
    assert view(bot, request_id).status is Status.REVOKE_FAILED
    assert audit_events(bot, request_id, "expired") == []

    bot.advance(BACKOFF - timedelta(seconds=1))  # inside the backoff: no new attempt
    assert len(receiver.events("revoke")) == 1
    bot.advance(timedelta(seconds=1))

    assert len(receiver.events("revoke")) == 2
    current = view(bot, request_id)
    assert current.status is Status.EXPIRED and current.ended_at == expired_at + BACKOFF
    assert sum(EXPIRED_DM in text for text in dm_texts(bot, BOB)) == 1
    # One failure is below the alert threshold: no alarm, and so no all-clear either.
    assert not any(KEEPS_FAILING in text or AT_LAST in text for text in channel_texts(bot, AUDIT))


# -- 3. one hung backend cannot stall the others -------------------------------------------------------------------

TWO_BACKENDS = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
  approvals_required: 1
review:
  required: emergency
  remind_every: 24h
resources:
  slow-db:
    description: Behind the backend that hangs
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 90
    approvers: [U0ALICE01]
  quick-db:
    description: Behind a healthy backend
    adapter: webhook
    params:
      url: QUICK_URL
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 90
    approvers: [U0ALICE01]
"""
SLOW_FOR = 90.0  # receiver A holds its answers until released, within this: A's revokes are slow, not failed


@pytest.fixture
def other_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET) as running:
        yield running


def test_one_hung_backend_does_not_hold_up_revokes_on_another(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver, other_receiver: WebhookReceiver
) -> None:
    policy = parse_policy(TWO_BACKENDS.replace("QUICK_URL", other_receiver.url))
    requesters = (BOB, DAVE, CAROL)
    # As many slow revokes as a lane has workers: were the lanes shared, the slow ones would fill every worker.
    tuning = Tuning(grant_retry_pause=0.01, call_timeout=SLOW_FOR, lane_width=len(requesters))
    bot = make_bot(policy=policy, tuning=tuning)
    slow = [approved(bot, "slow-db 30m INC-1 fix", who) for who in requesters]
    quick = [approved(bot, "quick-db 30m INC-2 fix", who) for who in requesters]
    assert len(receiver.events("grant")) == 3 and len(other_receiver.events("grant")) == 3
    receiver.hang(HELD)

    bot.clock.advance(timedelta(minutes=30))  # all six expire at once
    assert bot.runtime is not None
    report = bot.runtime.sweeper(wait=False)  # as the scheduler runs it
    assert report.revoked == 6  # all started

    # Every worker of the slow lane is stuck at its backend; were lanes shared, nothing else could run now.
    eventually(lambda: receiver.in_flight == 3, timeout=30, what="the hung backend's revokes sent")
    eventually(
        lambda: statuses(bot, quick) == [Status.EXPIRED] * 3,
        timeout=30,
        what="the healthy backend's revokes confirmed while the other backend hangs",
    )
    # At that moment the hung backend's revokes are still in flight, and still not recorded as done.
    assert len(receiver.events("revoke")) == 3 and receiver.in_flight == 3
    assert statuses(bot, slow) == [Status.REVOKING] * 3
    assert all(audit_events(bot, request_id, "expired") == [] for request_id in slow)
    assert len(other_receiver.events("revoke")) == 3 and other_receiver.in_flight == 0

    # Slow is not failed: they finish as soon as their backend answers, without a retry.
    receiver.release()
    eventually(lambda: statuses(bot, slow) == [Status.EXPIRED] * 3, timeout=30, what="the slow revokes")
    assert len(receiver.events("revoke")) == 3
    assert all(audit_events(bot, request_id, "revoke_failed") == [] for request_id in slow + quick)


# -- 4. a grant that hangs -----------------------------------------------------------------------------------------


def test_a_hung_grant_is_reported_never_shown_active_and_undone(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    tuning = Tuning(grant_retry_pause=0.01, call_timeout=CALL_TIMEOUT, grant_attempts=2, backoff_base=BACKOFF, jitter=0)
    bot = make_bot(policy=parse_policy(PATIENT_ADAPTER), tuning=tuning)
    bot.command(BOB, "orders-db 30m INC-1 fix")
    request_id = newest_request(bot)
    receiver.hang(HELD)

    bot.click(ALICE, ActionId.APPROVE, request_id)

    # Both grant attempts timed out; the grant may have happened anyway, so it is being undone, and the undo hung
    # too: it is retried like any failed revoke.
    assert len(receiver.events("grant")) == 2
    assert len(receiver.events("revoke")) == 1
    current = view(bot, request_id)
    assert current.status is Status.REVOKE_FAILED and current.end_reason == "grant_failed"
    assert NO_ANSWER in (current.failure or "")
    assert "The grant failed" in state(bot.request_message(request_id))
    [told] = [text for text in dm_texts(bot, BOB) if "granting access failed" in text]
    assert "You do *not* have access" in told and NO_ANSWER in told
    assert any("Granting <@U0BOB> access to *orders-db* failed" in text for text in channel_texts(bot, AUDIT))

    receiver.release()
    receiver.wait_until_idle()  # the late grant answers arrive at callers that gave up on them
    bot.advance(BACKOFF)

    revokes = receiver.events("revoke")
    assert len(revokes) == 2 and revokes[-1].status == 200
    assert revokes[-1].received_at > max(call.received_at for call in receiver.events("grant"))
    assert revokes[-1].body["grant_id"] == receiver.events("grant")[0].body["grant_id"] == current.uid
    current = view(bot, request_id)
    assert current.status is Status.GRANT_FAILED and current.granted_at is None
    actions = [action for action, _ in audit_actions(bot, request_id)]
    assert "granted" not in actions and actions[-1] == "grant_undone"

    # Never shown as active, anywhere, at any point.
    shown = approval_states_ever_shown(bot, request_id)
    assert shown and not any("Active until" in line for line in shown)
    assert "the grant failed" in shown[-1]
    assert not any("is active until" in text or EXPIRED_DM in text for text in dm_texts(bot, BOB))
    assert not any("has access to" in text for text in channel_texts(bot, AUDIT) + channel_texts(bot, "C0INCIDENT"))

    bot.advance(timedelta(hours=1))  # settled: nothing more is sent
    assert len(receiver.events("revoke")) == 2 and len(receiver.events("grant")) == 2


# -- 5. a backend that fails now and then: the first retries come within seconds ---------------------------------


def test_by_default_a_failed_revoke_is_retried_within_seconds_and_never_later_than_its_backoff(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot()  # the default tuning: what an operator gets
    tuning = bot.tuning
    assert [tuning.backoff(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert tuning.backoff(30) == tuning.backoff_max
    request_id = approved(bot)
    receiver.fail_next(3, status=503)  # a flaky backend: three revokes in a row fail
    bot.advance(timedelta(minutes=30))  # expiry: the first attempt fails
    lag = timedelta(0)
    for attempt in range(1, 4):
        wait = view(bot, request_id)
        assert wait.status is Status.REVOKE_FAILED and wait.revoke_attempts == attempt
        with bot.runtime.deps.db.transaction() as session:  # type: ignore[union-attr]
            retry_at = session.get(Request, request_id).next_attempt_at  # type: ignore[union-attr]
        waited = retry_at - bot.clock.now()
        # Jittered, so failures from one outage spread out, but never past the backoff.
        assert tuning.backoff(attempt) * (1 - tuning.jitter) <= waited <= tuning.backoff(attempt)
        lag += waited
        bot.advance(waited)
    assert view(bot, request_id).status is Status.EXPIRED
    assert lag <= timedelta(seconds=1 + 2 + 4)  # access ended at most 7 s late, not the 70 s of 10, 20, 40
