"""The webhook adapter against a real HTTP receiver on loopback.

The receiver (bot/devtools/webhook_receiver.py) also keeps access as a receiver would, and can end it at
``expires_at`` by itself: with its clock in the test's hands, the expiry and extend contracts run without waiting.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from pydantic import SecretStr, ValidationError

from bot import __version__
from bot.adapters.base import AdapterError, GrantContext, Person, Receipt, Verifies
from bot.adapters.webhook import WebhookAdapter, WebhookParams, idempotency_key, sign, verify
from bot.clock import ManualClock
from bot.devtools.webhook_receiver import PATH, WebhookReceiver
from bot.testing.contract import (
    BackendExpiryContract,
    BackendTime,
    ExtendContract,
    ManualBackendTime,
    OneLiveGrantContract,
    VerifyContract,
)

SECRET = "whsec-test-0123456789abcdef"
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
NOW_UNIX = 1767258000

CTX = GrantContext(
    grant_id="g-7f3a",
    request_number=42,
    resource="prod-db",
    user=Person(slack_id="U123", email="zoe@example.com", name="Zoë Ada"),
    principal="zoe",
    expires_at=datetime(2026, 1, 1, 10, 0, tzinfo=UTC),
    reason="incident INC-9",
    emergency=True,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def receiver(clock: ManualClock) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, clock=clock) as running:
        yield running


@pytest.fixture
def make_adapter(
    clock: ManualClock, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., WebhookAdapter]]:
    """Adapters with the HTTP session they make themselves, which reads the environment as in production; a
    proxy configured on this machine is told to leave loopback alone."""
    for name in ("no_proxy", "NO_PROXY"):  # the lower-case one wins where both are set
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    made: list[WebhookAdapter] = []

    def make(**params: Any) -> WebhookAdapter:
        params = {"url": receiver.url, "secret": SECRET, **params}
        made.append(WebhookAdapter(WebhookParams(**params), clock=clock))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


def expected_body(event: str) -> dict[str, Any]:
    return {
        "event": event,
        "grant_id": "g-7f3a",
        "resource": "prod-db",
        "level": None,
        "user": {"slack_id": "U123", "email": "zoe@example.com", "name": "Zoë Ada"},
        "principal": "zoe",
        "expires_at": "2026-01-01T10:00:00Z",
        "reason": "incident INC-9",
        "emergency": True,
    }


def failure(adapter: WebhookAdapter) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        adapter.grant(CTX)
    return caught.value


def test_grant_sends_signed_body_and_headers(make_adapter, receiver: WebhookReceiver) -> None:
    receipt = make_adapter(headers={"X-Team": "sre"}).grant(CTX)

    assert receipt == Receipt(data={"webhook": True}, instructions=None)
    [call] = receiver.calls
    assert call.valid and call.status == 200 and call.event == "grant"
    assert call.body == expected_body("grant")
    raw = json.dumps(expected_body("grant"), separators=(",", ":"), ensure_ascii=False).encode()
    headers = call.headers
    assert headers["Content-Length"] == str(len(raw))  # compact, UTF-8
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"breakglass/{__version__}"
    assert headers["X-Breakglass-Timestamp"] == str(NOW_UNIX)
    assert headers["X-Breakglass-Signature"] == sign(SECRET, NOW_UNIX, raw)
    assert headers["Idempotency-Key"] == '"g-7f3a:grant"'
    assert headers["X-Team"] == "sre"


def test_idempotency_key_is_stable_per_event(make_adapter, receiver: WebhookReceiver, clock) -> None:
    adapter = make_adapter()
    receiver.fail_next(1, status=503)
    with pytest.raises(AdapterError):
        adapter.grant(CTX)
    clock.set(datetime(2026, 1, 1, 9, 0, 5, tzinfo=UTC))
    adapter.grant(CTX)
    adapter.revoke(CTX, Receipt(data={"webhook": True}))

    first, retry, revoke = receiver.calls
    assert first.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"] == '"g-7f3a:grant"'
    assert revoke.headers["Idempotency-Key"] == '"g-7f3a:revoke"'
    assert retry.headers["X-Breakglass-Timestamp"] == str(NOW_UNIX + 5)
    assert revoke.body == expected_body("revoke") and revoke.valid


def test_grant_returns_instructions_truncated(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.respond_with(body={"instructions": "Use the bastion. " + "x" * 3000})
    instructions = make_adapter().grant(CTX).instructions
    assert instructions is not None
    assert instructions.startswith("Use the bastion. ") and len(instructions) == 2000


@pytest.mark.parametrize("body", [None, "OK", {"status": "granted"}, {"instructions": 5}])
def test_reply_without_instructions_still_succeeds(make_adapter, receiver: WebhookReceiver, body) -> None:
    receiver.respond_with(status=201, body=body)
    assert make_adapter().grant(CTX).instructions is None


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_transient_statuses_are_retryable(make_adapter, receiver: WebhookReceiver, status: int) -> None:
    receiver.respond_with(status=status)
    error = failure(make_adapter())
    assert error.retryable
    assert str(error).startswith(f"webhook at 127.0.0.1:{receiver.url.split(':')[2].split('/')[0]} answered")
    assert f"answered {status} " in str(error)


@pytest.mark.parametrize("status", [400, 403, 404, 302])
def test_other_failures_are_not_retryable(make_adapter, receiver: WebhookReceiver, status: int) -> None:
    receiver.respond_with(status=status, body={"error": "nope"})
    error = failure(make_adapter())
    assert not error.retryable
    assert f"answered {status} " in str(error) and "nope" in str(error)


def test_revoke_follows_the_same_rules(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=404)
    with pytest.raises(AdapterError) as caught:
        make_adapter().revoke(CTX, Receipt())
    assert not caught.value.retryable


def test_timeout_is_retryable(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.hang(60)
    started = time.monotonic()
    error = failure(make_adapter(timeout=0.3))
    assert time.monotonic() - started < 30  # gave up long before the answer; how long after 0.3 s is the machine's
    assert error.retryable and "timed out after 0.3s" in str(error)
    assert receiver.wait_for(1)[0].event == "grant"


def test_connection_refused_is_retryable(make_adapter) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(make_adapter(url=f"http://127.0.0.1:{port}/hook"))
    assert error.retryable
    assert str(error) == f"cannot connect to webhook host 127.0.0.1:{port}"


def test_error_names_host_but_not_credentials_or_query(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=503)
    url = receiver.url.replace("http://", "http://alice:hunter2pass@") + "?token=qs-token-123"
    message = str(failure(make_adapter(url=url)))
    assert "127.0.0.1" in message
    assert "hunter2pass" not in message and "alice" not in message and "qs-token-123" not in message


def test_secret_never_leaks(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=500, body={"error": f"signature mismatch, expected key {SECRET}"})
    adapter = make_adapter()
    error = failure(adapter)
    assert "[redacted]" in str(error)
    for text in (str(error), repr(error), repr(adapter), repr(adapter.params), str(adapter.params)):
        assert SECRET not in text

    receiver.respond_with(body={"instructions": f"key is {SECRET}"})
    assert SECRET not in (adapter.grant(CTX).instructions or "")


NETRC_PASSWORD = "netrc-password-of-the-host"


@pytest.mark.parametrize("configured", [{"Authorization": "Bearer configured-token-0123"}, {}], ids=["header", "none"])
def test_the_hosts_netrc_is_never_sent(
    make_adapter, receiver: WebhookReceiver, tmp_path, monkeypatch: pytest.MonkeyPatch, configured: dict[str, str]
) -> None:
    """requests reads ~/.netrc for any request without auth of its own: the bot's host login for the receiver's
    machine would go to the receiver, in place of the Authorization header the resource configures."""
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login netrc-user password {NETRC_PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    assert requests.utils.get_netrc_auth(receiver.url) == ("netrc-user", NETRC_PASSWORD)  # it would be found

    make_adapter(headers=configured or None).grant(CTX)

    [call] = receiver.calls
    assert call.valid and call.status == 200  # signed with the configured secret
    assert call.headers.get("Authorization") == configured.get("Authorization")
    netrc_basic = base64.b64encode(f"netrc-user:{NETRC_PASSWORD}".encode()).decode()
    assert not any(netrc_basic in value or "netrc" in value for value in call.headers.values()), call.headers


def test_credentials_in_the_url_are_still_sent(make_adapter, receiver: WebhookReceiver) -> None:
    make_adapter(url=receiver.url.replace("http://", "http://hook-user:hook%20pass@")).grant(CTX)
    [call] = receiver.calls
    assert call.headers["Authorization"] == "Basic " + base64.b64encode(b"hook-user:hook pass").decode()


def test_a_proxy_from_the_environment_is_still_used(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipping netrc must not cost operators behind a proxy their HTTP_PROXY: the call reaches the receiver only
    through it, as nothing listens at the url itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}{PATH}"
    with WebhookReceiver(SECRET, clock=clock) as proxy:  # a forward proxy sees the request with its full url
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.setenv(name, "")
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix(PATH))
        monkeypatch.delenv("http_proxy", raising=False)
        adapter = WebhookAdapter(WebhookParams(url=nowhere, secret=SECRET), clock=clock)
        try:
            adapter.grant(CTX)
        finally:
            adapter.close()
        [call] = proxy.calls
        assert call.valid and call.event == "grant"


def test_error_body_is_cut_to_200_chars(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=400, body="e" * 5000)
    message = str(failure(make_adapter()))
    assert message.count("e" * 150) == 1 and "e" * 201 not in message


def test_receiver_rejects_bad_signature(clock: ManualClock, make_adapter, receiver: WebhookReceiver) -> None:
    error = failure(make_adapter(secret="some-other-secret-entirely"))
    assert not error.retryable and "401" in str(error)
    assert [(call.valid, call.status) for call in receiver.calls] == [(False, 401)]


@pytest.mark.parametrize(
    "params",
    [
        {"secret": SECRET},
        {"url": "ftp://hooks.example/x", "secret": SECRET},
        {"url": "https://", "secret": SECRET},
        {"url": "https://hooks.example/x", "secret": "fifteen-chars-x"},
        {"url": "https://hooks.example/x"},
        {"url": "https://hooks.example/x", "secret": SECRET, "retries": 3},
        {"url": "https://hooks.example/x", "secret": SECRET, "timeout": 0},
        {"url": "https://hooks.example/x", "secret": SECRET, "timeout": 121},
        {"url": "https://hooks.example/x", "secret": SECRET, "headers": {"x-breakglass-signature": "v1=0"}},
    ],
)
def test_invalid_params_are_rejected(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookParams(**params)
    assert "fifteen-chars-x" not in str(caught.value)


def test_params_defaults() -> None:
    params = WebhookParams(url="https://hooks.example/x", secret=SECRET)
    assert params.timeout == 10 and params.headers is None
    assert params.secret.get_secret_value() == SECRET


def test_check_sends_nothing(make_adapter, receiver: WebhookReceiver) -> None:
    assert make_adapter().check() == []
    assert receiver.calls == []
    broken = WebhookParams.model_construct(url="ftp://hooks.example", secret=SecretStr(SECRET), timeout=1.0)
    assert WebhookAdapter(broken).check() == ["url: must be http or https, not 'ftp'"]


def test_verify() -> None:
    body = b'{"event":"grant"}'
    signature = sign(SECRET, NOW_UNIX, body)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert verify(SECRET, str(NOW_UNIX), signature, body, NOW_UNIX + 299)
    assert not verify(SECRET, str(NOW_UNIX), "v1=" + "0" * 64, body, NOW_UNIX)  # wrong signature
    assert not verify("another-secret-of-length", str(NOW_UNIX), signature, body, NOW_UNIX)
    assert not verify(SECRET, str(NOW_UNIX), signature, body, NOW_UNIX + 301)  # stale
    assert not verify(SECRET, str(NOW_UNIX), signature, b'{"event":"revoke"}', NOW_UNIX)  # tampered
    assert not verify(SECRET, str(NOW_UNIX + 1), signature, body, NOW_UNIX)  # timestamp is signed too
    assert not verify(SECRET, None, signature, body, NOW_UNIX)
    assert not verify(SECRET, "soon", signature, body, NOW_UNIX)


def test_receiver_wait_for_times_out(receiver: WebhookReceiver) -> None:
    with pytest.raises(TimeoutError, match="no 1 call"):
        receiver.wait_for(1, timeout=0.05)
    assert receiver.wait_for(lambda calls: calls == [], timeout=0.05) == []


# Extending.

LATER = replace(CTX, expires_at=datetime(2026, 1, 1, 11, 30, tzinfo=UTC))


def test_extend_sends_the_new_expiry_under_a_key_of_its_own(make_adapter, receiver: WebhookReceiver) -> None:
    adapter = make_adapter()
    adapter.grant(CTX)
    adapter.extend(LATER, Receipt(data={"webhook": True}))
    adapter.extend(LATER, Receipt(data={"webhook": True}))  # a retry
    adapter.extend(replace(CTX, expires_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC)), Receipt())

    grant, extend, retry, again = receiver.calls
    assert extend.valid and extend.status == 200
    assert extend.body == {**expected_body("extend"), "expires_at": "2026-01-01T11:30:00Z"}
    assert (
        extend.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"] == '"g-7f3a:extend:2026-01-01T11:30:00Z"'
    )
    assert again.headers["Idempotency-Key"] == '"g-7f3a:extend:2026-01-01T12:00:00Z"'
    assert grant.headers["Idempotency-Key"] == '"g-7f3a:grant"'
    held = receiver.access("g-7f3a")
    assert held is not None and held.expires_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [400, 404, 405, 501])
def test_a_receiver_that_does_not_know_extend_makes_it_a_final_failure(
    make_adapter, receiver: WebhookReceiver, status: int
) -> None:
    receiver.respond_with(status=status, body={"error": "unknown event"})
    with pytest.raises(AdapterError) as caught:
        make_adapter().extend(LATER, Receipt())
    assert not caught.value.retryable
    message = str(caught.value)
    assert f"answered {status} " in message and "does not take `extend`" in message


def test_an_old_receiver_that_refuses_unknown_events_cannot_extend(make_adapter, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=404)  # the devtool's own answer to an unknown event is 400; 404 is common too
    with pytest.raises(AdapterError) as caught:
        make_adapter().extend(LATER, Receipt())
    assert "does not take `extend`" in str(caught.value)


@pytest.mark.parametrize("status", [503, 429])
def test_a_busy_receiver_is_asked_again_to_extend(make_adapter, receiver: WebhookReceiver, status: int) -> None:
    adapter = make_adapter()
    adapter.grant(CTX)
    receiver.fail_next(1, status=status)
    with pytest.raises(AdapterError) as caught:
        adapter.extend(LATER, Receipt())
    assert caught.value.retryable and "does not take" not in str(caught.value)
    adapter.extend(LATER, Receipt())
    held = receiver.access(CTX.grant_id)
    assert held is not None and held.expires_at == LATER.expires_at


def test_extending_access_the_receiver_no_longer_holds_is_refused(make_adapter, receiver: WebhookReceiver) -> None:
    adapter = make_adapter()
    adapter.grant(CTX)
    adapter.revoke(CTX, Receipt())
    with pytest.raises(AdapterError) as caught:
        adapter.extend(LATER, Receipt())
    assert not caught.value.retryable and "answered 410" in str(caught.value)
    assert not receiver.has_access("zoe")


def test_idempotency_keys_quote_what_they_hold() -> None:
    assert idempotency_key('g"1\\', "extend", "2026-01-01T10:00:00Z") == '"g\\"1\\\\:extend:2026-01-01T10:00:00Z"'
    assert idempotency_key("g1", "revoke") == '"g1:revoke"'


class TestWebhookExpiryContract(BackendExpiryContract, ExtendContract, OneLiveGrantContract):
    """A receiver that ends access at ``expires_at`` by its own clock, which the test moves."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        # Now, as grant_context's default expiries count from it; in whole seconds, as the body carries them.
        return ManualClock(datetime.now(UTC).replace(microsecond=0))

    @pytest.fixture
    def receiver(self, clock: ManualClock) -> Iterator[WebhookReceiver]:
        with WebhookReceiver(SECRET, clock=clock, ends_access_at_expiry=True) as running:
            yield running

    @pytest.fixture
    def backend_time(self, clock: ManualClock) -> BackendTime:
        return ManualBackendTime(clock)

    @pytest.fixture
    def adapter(self, make_adapter: Callable[..., WebhookAdapter]) -> WebhookAdapter:
        return make_adapter()

    @pytest.fixture
    def wrong_credentials(self, make_adapter: Callable[..., WebhookAdapter]) -> WebhookAdapter:
        return make_adapter(secret="not-the-receivers-secret")

    @pytest.fixture
    def probe(self, receiver: WebhookReceiver) -> ReceiverProbe:
        return ReceiverProbe(receiver)


class TestWebhookVerifyContract(VerifyContract):
    """A receiver that knows the verify event, for a resource that says so (``verify: true``)."""

    @pytest.fixture
    def adapter(self, make_adapter: Callable[..., WebhookAdapter]) -> WebhookAdapter:
        return make_adapter(verify=True)

    @pytest.fixture
    def wrong_credentials(self, make_adapter: Callable[..., WebhookAdapter]) -> WebhookAdapter:
        return make_adapter(verify=True, secret="not-the-receivers-secret")

    @pytest.fixture
    def probe(self, receiver: WebhookReceiver) -> ReceiverProbe:
        return ReceiverProbe(receiver)


def test_verify_is_a_signed_question_with_a_fresh_idempotency_key(make_adapter, receiver: WebhookReceiver) -> None:
    adapter = make_adapter(verify=True)
    adapter.grant(CTX)
    assert adapter.verify(CTX, Receipt()) is True
    receiver.ignore_revokes()
    adapter.revoke(CTX, Receipt())  # acknowledged, and the access kept
    assert adapter.verify(CTX, Receipt()) is True
    receiver.ignore_revokes(False)
    adapter.revoke(CTX, Receipt())
    assert adapter.verify(CTX, Receipt()) is False

    asked = receiver.events("verify")
    assert len(asked) == 3 and all(call.valid for call in asked)
    assert asked[0].body == expected_body("verify")
    keys = {call.headers["Idempotency-Key"] for call in asked}
    assert len(keys) == 3 and all(key.startswith('"g-7f3a:verify:') for key in keys)


def test_only_a_resource_that_says_verify_true_claims_to_verify(make_adapter) -> None:
    assert not isinstance(make_adapter(), Verifies)
    assert isinstance(make_adapter(verify=True), Verifies)


def test_an_old_receiver_that_does_not_know_verify_is_cannot_tell_never_gone(make_adapter, clock) -> None:
    with WebhookReceiver(SECRET, clock=clock, knows=("grant", "revoke", "extend")) as old:
        adapter = make_adapter(url=old.url, verify=True)
        with pytest.raises(AdapterError) as unknown:
            adapter.verify(CTX, Receipt())
    assert "answered 400" in str(unknown.value) and "does not take `verify`" in str(unknown.value)
    assert not unknown.value.retryable


@pytest.mark.parametrize("body", ["", "yes", {"active": "false"}, {"status": "gone"}, "[true]"])
def test_a_verify_answer_without_a_boolean_is_cannot_tell(make_adapter, receiver: WebhookReceiver, body) -> None:
    receiver.respond_with(status=200, body=body)
    with pytest.raises(AdapterError) as unclear:
        make_adapter(verify=True).verify(CTX, Receipt())
    assert 'without {"active": true|false}' in str(unclear.value)


class ReceiverProbe:
    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.count = 0

    def principal(self, hint: str = "") -> str:
        self.count += 1
        return f"{hint}user-{self.count}"

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        return self.receiver.has_access(ctx.principal)

    def secrets(self) -> list[str]:
        return [SECRET]
