"""Slack calls go over kept-alive connections and fail exactly as slack_sdk's own urllib calls did: against the real
stand-in and plain sockets on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.client import HTTPException
from urllib.error import URLError
from urllib.parse import urlsplit

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.devtools.ports import free_port
from bot.devtools.slack_standin import SlackStandIn
from bot.metrics import PrometheusMetrics
from bot.slack import keepalive
from bot.slack.metered import MeteredWebClient
from bot.slack.retry import SlackRetry, never_reached_slack

TOKEN = "xoxb-keepalive-test-token-01"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN, users={"U0BOB": {"name": "bob", "real_name": "Bob", "email": "b@x.io"}}) as standin:
        yield standin


def metered(url: str, timeout: int = 5, retries: bool = False) -> MeteredWebClient:
    handlers = [SlackRetry(base_delay=0.01, max_delay=0.01, sleep=lambda _: None)] if retries else []
    return MeteredWebClient(
        token=TOKEN, base_url=url, timeout=timeout, retry_handlers=handlers, metrics=PrometheusMetrics()
    )


class Counting:
    """A TCP relay in front of the stand-in that counts the connections clients open through it."""

    def __init__(self, target: int) -> None:
        self.opened = 0
        self.generation = 0  # a connection from an earlier generation is forgotten: what it carries goes nowhere
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.opened += 1
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, self.generation), daemon=True).start()

    def forget(self) -> None:
        """Drop what open connections carry from now on, without closing them: a NAT that forgot them."""
        self.generation += 1

    def _pipe(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        try:
            while data := source.recv(65536):
                if generation == self.generation:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


def test_calls_share_one_connection_where_urllib_opened_one_each(slack: SlackStandIn) -> None:
    relay = Counting(urlsplit(slack.api_url).port or 0)
    try:
        url = f"http://127.0.0.1:{relay.port}/api/"
        web = metered(url)
        for _ in range(5):
            assert web.users_info(user="U0BOB")["user"]["name"] == "bob"
        assert relay.opened == 1

        plain = WebClient(token=TOKEN, base_url=url)  # slack_sdk's own way, for comparison
        for _ in range(3):
            plain.users_info(user="U0BOB")
        assert relay.opened == 1 + 3
    finally:
        relay.close()


def test_slack_closing_an_idle_connection_costs_nothing_but_a_new_one(slack: SlackStandIn) -> None:
    web = metered(slack.api_url)
    web.auth_test()
    slack.close_connections()  # as Slack's edge does to a connection left idle
    assert web.users_info(user="U0BOB")["ok"]
    assert [c.method for c in slack.calls()] == ["auth.test", "users.info"]  # nothing sent twice


def test_a_connection_idle_too_long_is_not_trusted_as_a_nat_may_have_forgotten_it(
    slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(keepalive, "time", clock)
    relay = Counting(urlsplit(slack.api_url).port or 0)
    try:
        web = metered(f"http://127.0.0.1:{relay.port}/api/", timeout=3)
        web.auth_test()
        clock.now += keepalive.MAX_IDLE - 1
        web.auth_test()
        assert relay.opened == 1  # kept while it was in use

        clock.now += keepalive.MAX_IDLE + 1
        relay.forget()  # the kept connection now leads nowhere, and nothing says so
        assert web.chat_postMessage(channel="C0X", text="hi")["ok"]  # on a new connection, not a 3 s timeout
        assert relay.opened == 2
        assert len(slack.calls("chat.postMessage")) == 1
    finally:
        relay.close()


class Clock:
    """Stands in for the time module in bot/slack/keepalive.py."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_rate_limit_is_an_api_error_with_its_retry_after_and_is_waited_out(slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as raised:
        metered(slack.api_url).chat_postMessage(channel="C0X", text="hi")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"

    waited: list[float] = []
    retrying = MeteredWebClient(
        token=TOKEN,
        base_url=slack.api_url,
        retry_handlers=[SlackRetry(base_delay=0.01, max_delay=60, sleep=waited.append)],
        metrics=PrometheusMetrics(),
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    assert retrying.chat_postMessage(channel="C0X", text="hi")["ok"]
    assert waited == [7.0]


def test_a_server_error_is_retried_on_the_kept_connection(slack: SlackStandIn) -> None:
    slack.fail_next("users.info", n=2, status=503)
    assert metered(slack.api_url, retries=True).users_info(user="U0BOB")["ok"]
    assert len(slack.calls("users.info")) == 3


def test_nobody_listening_is_a_url_error_that_never_reached_slack() -> None:
    with pytest.raises(URLError) as raised:
        metered(f"http://127.0.0.1:{free_port()}/api/").auth_test()
    assert never_reached_slack(raised.value)


def test_a_stopped_slack_is_refused_even_to_a_client_that_kept_a_connection(slack: SlackStandIn) -> None:
    web = metered(slack.api_url)
    web.auth_test()
    slack.stop()
    with pytest.raises(URLError) as raised:
        web.auth_test()
    assert never_reached_slack(raised.value)


def test_a_late_answer_is_a_timeout_and_the_next_call_gets_a_fresh_connection(slack: SlackStandIn) -> None:
    web = metered(slack.api_url, timeout=1)
    slack.stall_next("auth.test", seconds=2)
    with pytest.raises(TimeoutError):
        web.auth_test()
    assert web.users_info(user="U0BOB")["ok"]  # not the late auth.test answer read off a reused connection


def test_a_dropped_answer_is_not_taken_for_one_that_never_reached_slack(slack: SlackStandIn) -> None:
    slack.drop_next("chat.postMessage")
    with pytest.raises(OSError) as raised:  # the socket's own error, as urllib let it through
        metered(slack.api_url).chat_postMessage(channel="C0X", text="hi")
    assert not never_reached_slack(raised.value)  # Slack did act: repeating it could post twice
    assert len(slack.calls("chat.postMessage")) == 1


def test_an_answer_that_is_not_http_is_the_error_urllib_gave_for_it() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        with pytest.raises(HTTPException):  # BadStatusLine, not a URLError that retry handlers read as "reached"
            metered(f"http://127.0.0.1:{listener.getsockname()[1]}/api/").auth_test()
    finally:
        listener.close()
