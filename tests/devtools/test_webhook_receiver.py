"""The webhook receiver's scripting (failures with a body of their own, calls held in flight by a hang) and the
access it keeps as a receiver would: granted until an end it may enforce itself, extended, revoked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from bot.adapters.webhook import sign
from bot.clock import ManualClock
from bot.devtools.webhook_receiver import WebhookReceiver

SECRET = "receiver-test-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def post(receiver: WebhookReceiver, event: str = "revoke", timeout: float = 5.0) -> requests.Response:
    body = json.dumps({"event": event, "grant_id": "g1"}).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Breakglass-Timestamp": str(timestamp),
        "X-Breakglass-Signature": sign(SECRET, timestamp, body),
    }
    return requests.post(receiver.url, data=body, headers=headers, timeout=timeout)


def test_scripted_failures_can_carry_their_own_body_then_the_receiver_recovers(receiver: WebhookReceiver) -> None:
    receiver.fail_next(2, status=503, body={"error": "maintenance"})

    answers = [post(receiver) for _ in range(3)]

    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json() == {"error": "maintenance"}
    assert [call.status for call in receiver.events("revoke")] == [503, 503, 200]


def test_scripted_failures_say_the_status_phrase_by_default(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, status=500)

    assert post(receiver).json() == {"error": "Internal Server Error"}


def test_a_flaky_receiver_fails_the_seeded_fraction_of_calls_then_recovers() -> None:
    def statuses(seed: int) -> list[int]:
        with WebhookReceiver(SECRET) as flaky:
            flaky.fail_fraction(0.1, seed=seed)
            answered = [post(flaky).status_code for _ in range(100)]
            flaky.fail_fraction(0)
            assert post(flaky).status_code == 200
            assert [call.status for call in flaky.events("revoke")][:100] == answered
            return answered

    first = statuses(seed=11)
    assert set(first) == {200, 503}
    assert 3 <= first.count(503) <= 20  # one in ten, give or take what 100 draws allow
    assert statuses(seed=11) == first  # the same seed fails the same calls: a run can be repeated
    assert statuses(seed=12) != first


def test_a_failure_fraction_outside_0_to_1_is_refused(receiver: WebhookReceiver) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        receiver.fail_fraction(1.5)


def test_a_hung_call_is_in_flight_until_it_is_answered(receiver: WebhookReceiver) -> None:
    receiver.hang(60)  # held until released: a busy machine cannot end the hang before the test looked
    answers: list[int] = []
    client = threading.Thread(target=lambda: answers.append(post(receiver, timeout=90).status_code))
    client.start()

    receiver.wait_for(1)
    assert receiver.in_flight == 1
    with pytest.raises(TimeoutError, match="1 call"):
        receiver.wait_until_idle(timeout=0.05)

    receiver.release()
    receiver.wait_until_idle()
    client.join(timeout=30)
    assert receiver.in_flight == 0 and answers == [200]


def test_a_call_the_client_gave_up_on_is_no_longer_in_flight_once_answered(receiver: WebhookReceiver) -> None:
    receiver.hang(0.3)

    with pytest.raises(requests.Timeout):
        post(receiver, timeout=0.05)

    receiver.wait_until_idle(timeout=5)  # the answer goes to a closed connection; it still counts as answered
    assert receiver.in_flight == 0


START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def send(receiver: WebhookReceiver, event: str, grant_id: str = "g1", **fields: Any) -> requests.Response:
    """A signed call, stamped by the receiver's own clock (which the test moves)."""
    body = json.dumps({"event": event, "grant_id": grant_id, "principal": "zoe", **fields}).encode()
    timestamp = int(receiver.clock.now().timestamp())
    headers = {"X-Breakglass-Timestamp": str(timestamp), "X-Breakglass-Signature": sign(SECRET, timestamp, body)}
    return requests.post(receiver.url, data=body, headers=headers, timeout=5)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def enforcing(clock: ManualClock) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, clock=clock, ends_access_at_expiry=True) as running:
        yield running


def test_access_lasts_from_grant_to_its_end_and_extend_moves_the_end(
    enforcing: WebhookReceiver, clock: ManualClock
) -> None:
    assert send(enforcing, "grant", expires_at="2026-01-01T10:00:00Z").status_code == 200
    assert enforcing.has_access("zoe") and not enforcing.has_access("someone-else")

    assert send(enforcing, "extend", expires_at="2026-01-01T11:00:00Z").status_code == 200
    clock.set(datetime(2026, 1, 1, 10, 59, 59, tzinfo=UTC))
    assert enforcing.has_access("zoe")
    clock.set(datetime(2026, 1, 1, 11, 0, tzinfo=UTC))
    assert not enforcing.has_access("zoe") and enforcing.access("g1") is None

    late = send(enforcing, "extend", expires_at="2026-01-01T12:00:00Z")  # the receiver already ended it
    assert late.status_code == 410 and "ended" in late.json()["error"]
    assert not enforcing.has_access("zoe")


def test_extend_needs_access_held_under_that_grant_for_that_principal(enforcing: WebhookReceiver) -> None:
    assert send(enforcing, "extend", "never-granted", expires_at="2026-01-01T10:00:00Z").status_code == 410
    send(enforcing, "grant", expires_at="2026-01-01T10:00:00Z")
    assert send(enforcing, "extend", principal="mallory", expires_at="2026-01-01T12:00:00Z").status_code == 410
    send(enforcing, "revoke")
    assert send(enforcing, "extend", expires_at="2026-01-01T12:00:00Z").status_code == 410
    assert [call.status for call in enforcing.events("extend")] == [410, 410, 410]


def test_without_ending_access_itself_the_receiver_holds_it_until_the_revoke(clock: ManualClock) -> None:
    with WebhookReceiver(SECRET, clock=clock) as receiver:
        send(receiver, "grant", expires_at="2026-01-01T10:00:00Z")
        clock.set(datetime(2026, 1, 1, 10, 30, tzinfo=UTC))
        assert receiver.has_access("zoe")
        assert send(receiver, "extend", expires_at="2026-01-01T11:00:00Z").status_code == 200
        send(receiver, "revoke")
        assert not receiver.has_access("zoe")


def test_a_scripted_failure_changes_no_access(enforcing: WebhookReceiver) -> None:
    enforcing.fail_next(1, status=503)
    assert send(enforcing, "grant", expires_at="2026-01-01T10:00:00Z").status_code == 503
    assert not enforcing.has_access("zoe")
    send(enforcing, "grant", expires_at="2026-01-01T10:00:00Z")
    enforcing.respond_with(status=500)
    send(enforcing, "revoke")
    assert enforcing.has_access("zoe")


@pytest.mark.parametrize(
    ("event", "fields", "status"),
    [
        ("suspend", {"expires_at": "2026-01-01T10:00:00Z"}, 400),  # an event it does not know
        ("grant", {}, 400),  # no expires_at
        ("grant", {"expires_at": "10am"}, 400),
        ("grant", {"expires_at": "2026-01-01T10:00:00"}, 400),  # no time zone
    ],
)
def test_calls_it_cannot_act_on_are_refused_with_400(
    enforcing: WebhookReceiver, event: str, fields: dict[str, Any], status: int
) -> None:
    answer = send(enforcing, event, **fields)
    assert answer.status_code == status
    assert enforcing.calls[-1].status == status and not enforcing.has_access("zoe")
