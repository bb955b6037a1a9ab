"""Retrying the Slack Web API without posting anything twice.

Slack did not act on a request it answered with 429 (rate limited), nor on one that never reached it (the
connection was refused), so those are retried for every method; a 5xx is retried for every method but
``chat.postMessage``, since a gateway can answer 502 or 504 after Slack did post. A timeout or a dropped connection
after the request was sent leaves doubt, so those are retried only for methods that are safe to repeat: editing a
message to the same content, or reading. A new message is never sent twice on a guess: the outbox looks for it first.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from urllib.error import URLError

from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

SAFE_TO_REPEAT = frozenset(
    {"auth.test", "chat.update", "users.info", "usergroups.users.list", "conversations.info", "chat.getPermalink"}
)


def method_of(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1]


def never_reached_slack(error: Exception) -> bool:
    reason = error.reason if isinstance(error, URLError) else error
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


def retry_after(response: HttpResponse) -> float | None:
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return float(values[0])
            except ValueError:
                return None
    return None


class SlackRetry(RetryHandler):
    def __init__(
        self,
        max_retry_count: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None:
            if response.status_code == 429:
                return True  # rate limited: Slack did not act
            # A 5xx usually means Slack did not act, but a gateway's 502/504 can come after it did: a new message is
            # left to the outbox, which looks for it before posting again (bot/services/delivery.py).
            return response.status_code >= 500 and method_of(request) != "chat.postMessage"
        if error is None:
            return False
        return never_reached_slack(error) or method_of(request) in SAFE_TO_REPEAT

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = retry_after(response) if response is not None and response.status_code == 429 else None
        if wait is None:
            wait = self.base_delay * 2**state.current_attempt * (1 + random.random() / 2)
        self.sleep(min(wait, self.max_delay))
        state.next_attempt_requested = True
        state.increment_current_attempt()
