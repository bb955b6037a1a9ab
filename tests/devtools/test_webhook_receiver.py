"""The webhook receiver's scripting: failures with a body of their own, and calls held in flight by a hang."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from bot.adapters.webhook import sign
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


def test_a_hung_call_is_in_flight_until_it_is_answered(receiver: WebhookReceiver) -> None:
    receiver.hang(0.5)
    answers: list[int] = []
    client = threading.Thread(target=lambda: answers.append(post(receiver).status_code))
    client.start()

    receiver.wait_for(1)
    assert receiver.in_flight == 1
    with pytest.raises(TimeoutError, match="1 call"):
        receiver.wait_until_idle(timeout=0.05)

    receiver.wait_until_idle(timeout=5)
    client.join(timeout=5)
    assert receiver.in_flight == 0 and answers == [200]


def test_a_call_the_client_gave_up_on_is_no_longer_in_flight_once_answered(receiver: WebhookReceiver) -> None:
    receiver.hang(0.3)

    with pytest.raises(requests.Timeout):
        post(receiver, timeout=0.05)

    receiver.wait_until_idle(timeout=5)  # the answer goes to a closed connection; it still counts as answered
    assert receiver.in_flight == 0
