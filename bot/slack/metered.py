"""Every Slack Web API call the bot makes, counted by method and outcome (``breakglass_slack_calls_total``).

One seam catches them all: ``WebClient.api_call``, which every named method (``chat_postMessage``...) goes through.
The runtime's client is a ``MeteredWebClient``, and so is the link's; Bolt makes a fresh ``WebClient`` for each
request it handles (the ``client`` its listeners are given), so a global middleware swaps that one for a metered
copy before any listener runs. The count is taken once per call, after the retry handler's retries, with the
outcome the caller saw.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.error import URLError
from urllib.request import Request, getproxies

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.services.ports import Metrics
from bot.slack.keepalive import Connections

# The few outcomes a call is counted under: Slack's error codes are many and new ones appear, and a label may only
# take values known in advance.
OK = "ok"
REFUSED = "refused"  # Slack answered and said no (channel_not_found, invalid_auth...)
RATELIMITED = "ratelimited"
SERVER_ERROR = "server_error"  # a 5xx: Slack or its gateway failed
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"  # no answer at all: refused connection, DNS, dropped connection


class MeteredWebClient(WebClient):
    def __init__(self, *args: Any, metrics: Metrics, before_call: Callable[[], None] | None = None, **kwargs: Any):
        """``before_call`` runs first at each call: the runtime lets acknowledgements go first there
        (bot/slack/after_ack.py)."""
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.before_call = before_call or _nothing
        self.connections = Connections(self.timeout, self.ssl)
        # slack_sdk reads a proxy from the environment into ``proxy``; urlopen also took the system's (macOS,
        # Windows), which only slack_sdk's own path knows how to use. A ``no_proxy`` list alone names no proxy.
        self._system_proxy = bool(getproxies().keys() & {"http", "https"})

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        """slack_sdk's one step that touches the network, sent over kept-alive connections (bot/slack/keepalive.py).
        Through a proxy, slack_sdk's own way, which knows how to reach one."""
        if self.proxy is not None or self._system_proxy or not url.lower().startswith("http"):
            return super()._perform_urllib_http_request_internal(url, req)
        return self.connections.send(req)

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        self.before_call()
        outcome = UNREACHABLE
        try:
            response = super().api_call(api_method, **kwargs)
            outcome = OK
            return response
        except SlackApiError as error:
            outcome = failure(error.response.status_code)
            raise
        except Exception as error:
            outcome = TIMEOUT if _timed_out(error) else UNREACHABLE
            raise
        finally:
            self.metrics.slack_call(api_method, outcome)


def failure(status: int) -> str:
    if status == 429:
        return RATELIMITED
    return SERVER_ERROR if status >= 500 else REFUSED


def _timed_out(error: BaseException) -> bool:
    reason = error.reason if isinstance(error, URLError) else error
    return isinstance(reason, TimeoutError | socket.timeout)


def _nothing() -> None:
    return None


def metered(client: WebClient, metrics: Metrics, before_call: Callable[[], None] | None = None) -> MeteredWebClient:
    """A copy of ``client`` that counts its calls: the same token, address, timeouts and retry handlers (the
    handlers are shared, as Bolt shares them between its per-request clients)."""
    return MeteredWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        headers=dict(client.headers),
        team_id=client.default_params.get("team_id"),
        logger=client._logger,
        retry_handlers=list(client.retry_handlers),
        metrics=metrics,
        before_call=before_call,
    )


def middleware(metrics: Callable[[], Metrics], before_call: Callable[[], None] | None = None) -> Callable[..., Any]:
    """A Bolt global middleware: the per-request client listeners are given counts its calls too, into
    ``metrics()`` (asked per request: ``Deps.metrics`` as it is now). Global middleware runs after authorization, so
    the copy carries the token the request was authorized with."""

    # One copy per token and metrics, kept: a client holds no state between calls, and making one reads the
    # environment for proxies and builds a user agent, on the path of every ack.
    copies: dict[tuple[str | None, str, Any], MeteredWebClient] = {}

    def count_slack_calls(context: BoltContext, next: Callable[[], Any]) -> Any:  # Bolt passes it by this name
        given = context.client
        if given is not None and not isinstance(given, MeteredWebClient):
            counted = metrics()
            key = (given.token, given.base_url, given.default_params.get("team_id"))
            copy = copies.get(key)
            if copy is None or copy.metrics is not counted:  # new, or the metrics were swapped since
                stale = [copy] if copy is not None else []
                if len(copies) >= 64:  # tokens of many workspaces: keep the newest few
                    stale = list(copies.values())
                    copies.clear()
                copy = copies[key] = metered(given, counted, before_call)
                for old in stale:  # its kept connections with it (a call still using one finishes first)
                    old.connections.close()
            context["client"] = copy
        return next()

    return count_slack_calls
