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
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from bot import __version__
from bot.adapters.webhook import sign
from bot.policy.sinks import WebhookSink
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
        try:
            answer = self._session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as error:
            raise SinkDown(f"POST failed ({type(error).__name__})") from None
        answer.close()
        if not 200 <= answer.status_code < 300:
            raise SinkDown(f"answered {answer.status_code}")

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:  # never the secret
        return f"WebhookTransport({self.name!r}, {self.url!r})"
