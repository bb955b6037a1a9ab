"""The webhook sink: batches of events POSTed to your endpoint, signed with HMAC-SHA256.

Each POST carries up to ``batch`` consecutive events as a JSON array (``Content-Type: application/json``), each event
an object as `breakglass audit export` writes it: ``seq``, ``id``, ``at``, ``actor``, ``action``, ``request_id``,
``resource``, ``reason``, ``detail``, ``prev_hash``, ``hash``, ``key_id`` and ``activity``. Events come in chain
order, at least once: a batch that was not confirmed is sent again, so a receiver may see an event twice and should
keep the highest ``seq`` it stored and drop anything at or below it. ``Idempotency-Key`` is
``"<sink>:<first seq>-<last seq>"``, the same for every retry of the same batch.

Verifying a request (receiver side): the same scheme as the webhook adapter's (bot/adapters/webhook.py), and like
Slack's. ``X-Breakglass-Timestamp`` is Unix time in whole seconds; ``X-Breakglass-Signature`` is ``v1=`` and the
lowercase hex HMAC-SHA256, keyed with the secret (UTF-8) from ``secret_env``, of the timestamp, a ``.`` and the raw
body bytes. Compute it over the raw bytes before parsing, compare in constant time, refuse timestamps more than a few
minutes from your clock::

    from bot.adapters.webhook import verify
    ok = verify(secret, headers["X-Breakglass-Timestamp"], headers["X-Breakglass-Signature"], raw_body, time.time())

Answering: any 2xx confirms the whole batch. Anything else (a 4xx included: the events are never dropped), a
redirect, a timeout or a refused connection is a failure: the batch is sent again later, with backoff, and the audit
channel hears once if it goes on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from bot import __version__
from bot.adapters.webhook import sign
from bot.policy.sinks import WebhookSink, loopback
from bot.sinks.base import SinkDown


class WebhookTransport:
    kind = "webhook"

    def __init__(self, config: WebhookSink, secret: str, wall_clock: Callable[[], float] = time.time) -> None:
        self.name = config.name
        self.batch = config.batch
        self.url = config.url
        self.timeout = config.timeout
        self._secret = secret
        self._wall_clock = wall_clock  # the receiver checks the timestamp against its own clock: real time, always
        self._session = requests.Session()
        # http:// is allowed only to loopback so the events stay on this machine. Through an HTTP_PROXY from the
        # environment they would cross the network (in clear text) to a proxy that connects to its own loopback, so a
        # loopback URL bypasses every proxy; any other URL keeps the environment's, and its CA bundle either way.
        # ({"no_proxy": "*"} is requests' own way to say so for one request.)
        self._proxies = {"no_proxy": "*"} if loopback(urlsplit(self.url).hostname or "") else None

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        body = json.dumps(list(events), ensure_ascii=True, separators=(",", ":")).encode("ascii")
        timestamp = int(self._wall_clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"breakglass/{__version__}",
            "X-Breakglass-Timestamp": str(timestamp),
            "X-Breakglass-Signature": sign(self._secret, timestamp, body),
            "Idempotency-Key": f'"{self.name}:{events[0]["seq"]}-{events[-1]["seq"]}"',
        }
        answer = self._post_within(body, headers)
        if not 200 <= answer.status_code < 300:
            raise SinkDown(f"answered {answer.status_code}")

    def _post_within(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        """The POST, given ``timeout`` seconds in all. requests' own timeout bounds each read, so a receiver that
        trickles its answer a byte at a time would hold the sink's thread (neither failed nor alerted) for as long as
        it liked; the POST runs on a thread of its own, and one still running at the deadline is abandoned with its
        session, whose closing ends the connection under it."""
        outcome: dict[str, Any] = {}
        session = self._session

        def post() -> None:
            try:
                answer = session.post(
                    self.url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    proxies=self._proxies,
                )
                answer.close()
                outcome["answer"] = answer
            except Exception as error:  # handed back to the sink's thread, which decides
                outcome["error"] = error

        worker = threading.Thread(target=post, name=f"audit-sink:{self.name}:post", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            self._session = requests.Session()  # the next batch gets a connection of its own
            session.close()
            raise SinkDown(f"no whole answer within {self.timeout:g}s")
        if "error" in outcome:
            raise SinkDown(f"POST failed ({type(outcome['error']).__name__})")
        return outcome["answer"]

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:  # never the secret
        return f"WebhookTransport({self.name!r}, {self.url!r})"
