"""Slack calls are counted once each, after their retries, under the class of what the caller saw: against the real
stand-in over loopback, read back from the registry /metrics serves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackApiError

from bot.devtools.ports import free_port
from bot.devtools.slack_standin import SlackStandIn
from bot.metrics import PrometheusMetrics
from bot.slack.metered import MeteredWebClient
from bot.slack.retry import SlackRetry

TOKEN = "xoxb-metered-test-token-0123"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN, users={"U0BOB": {"name": "bob", "real_name": "Bob", "email": "b@x.io"}}) as standin:
        yield standin


def client(url: str, metrics: PrometheusMetrics, timeout: int = 5, retries: bool = False) -> MeteredWebClient:
    handlers = [SlackRetry(base_delay=0.01, max_delay=0.01, sleep=lambda _: None)] if retries else []
    return MeteredWebClient(token=TOKEN, base_url=url, timeout=timeout, retry_handlers=handlers, metrics=metrics)


def counted(metrics: PrometheusMetrics, method: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value("breakglass_slack_calls_total", {"method": method, "outcome": outcome})
    return value or 0.0


def test_each_outcome_is_counted_under_its_class(slack: SlackStandIn) -> None:
    metrics = PrometheusMetrics()
    web = client(slack.api_url, metrics)
    web.users_info(user="U0BOB")
    slack.error_next("users.info", "user_not_found")
    with pytest.raises(SlackApiError):
        web.users_info(user="U0NOBODY")
    slack.fail_next("chat.postMessage", status=429, retry_after=0)
    with pytest.raises(SlackApiError):
        web.chat_postMessage(channel="C0X", text="hello")
    slack.fail_next("chat.update", status=503)
    with pytest.raises(SlackApiError):
        web.chat_update(channel="C0X", ts="1.0", text="hello")

    assert counted(metrics, "users.info", "ok") == 1
    assert counted(metrics, "users.info", "refused") == 1
    assert counted(metrics, "chat.postMessage", "ratelimited") == 1
    assert counted(metrics, "chat.update", "server_error") == 1


def test_a_call_is_counted_once_after_its_retries(slack: SlackStandIn) -> None:
    metrics = PrometheusMetrics()
    slack.fail_next("users.info", n=2, status=503)
    client(slack.api_url, metrics, retries=True).users_info(user="U0BOB")
    assert len(slack.calls("users.info")) == 3  # two failures, retried, then the answer
    assert counted(metrics, "users.info", "ok") == 1
    assert counted(metrics, "users.info", "server_error") == 0


def test_no_answer_is_unreachable_or_timeout(slack: SlackStandIn) -> None:
    metrics = PrometheusMetrics()
    with pytest.raises(Exception):  # noqa: B017 (whatever urllib raises; the class is what is checked)
        client(f"http://127.0.0.1:{free_port()}/api/", metrics).auth_test()
    slack.stall_next("auth.test", seconds=3)
    with pytest.raises(Exception):  # noqa: B017
        client(slack.api_url, metrics, timeout=1).auth_test()
    assert counted(metrics, "auth.test", "unreachable") == 1
    assert counted(metrics, "auth.test", "timeout") == 1
