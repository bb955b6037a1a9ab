"""A real HTTP webhook receiver on loopback, for tests and the demo.

It checks each request's signature the way a receiver author would (with ``verify`` from the webhook adapter),
records every call, and answers as scripted::

    with WebhookReceiver(secret) as receiver:
        receiver.respond_with(body={"instructions": "Log in at https://console.example"})
        receiver.fail_next(2, status=503)
        ...
        receiver.wait_for(3)

A scripted delay (``hang``) holds the answer back; ``in_flight`` counts the calls still being held, and
``wait_until_idle`` waits for them all to be answered (or dropped).

It also keeps access the way a receiver would: a successful ``grant`` holds access for the principal until its
``expires_at``, ``extend`` moves that end (410 when there is no access under the grant to extend), ``revoke``
ends it; ``has_access`` and ``access`` show the state. With ``ends_access_at_expiry`` the receiver also ends
access by itself at ``expires_at`` by its ``clock``, as a backend that enforces expiry does; without it, access
lasts until the revoke. ``verify`` is answered ``{"active": …}`` from the access held for the principal, unless
``respond_with`` scripted a body. An event it does not know is answered 400; ``knows`` limits the events it knows,
to play an older receiver.

``ignore_revokes()`` makes it a receiver that acknowledges revokes and keeps the access (a lagging replica, a second
path to the same privilege), which only a verify can catch.

``fail_fraction(0.1, seed=7)`` makes it a flaky backend: that fraction of valid calls, drawn at random from a seeded
generator so a run can be repeated, answer 503 (after any ``fail_next`` failures, which come first).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from bot.adapters.webhook import verify
from bot.clock import Clock, SystemClock

log = logging.getLogger("breakglass.devtools.webhook_receiver")

PATH = "/hooks/breakglass"
EVENTS = ("grant", "revoke", "extend", "verify")


@dataclass(frozen=True)
class WebhookCall:
    event: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    valid: bool  # the signature verified
    received_at: float  # time.monotonic()
    status: int  # what the receiver answered (or would have, had the client waited)


@dataclass(frozen=True)
class Access:
    """Access the receiver holds under one grant."""

    grant_id: str
    principal: str
    expires_at: datetime


@dataclass(frozen=True)
class _Reply:
    status: int = 200
    body: dict[str, Any] | str | None = None
    delay: float = 0.0
    releases: int = 0  # the receiver's release() count when the call came: a later release() answers it


@dataclass
class _Script:
    reply: _Reply = field(default_factory=_Reply)
    failures_left: int = 0
    failure_status: int = 500
    failure_body: dict[str, Any] | str | None = None  # None: {"error": <the status's phrase>}
    flaky: float = 0.0  # the fraction of calls that fail at random (fail_fraction)
    flaky_status: int = 503
    dice: random.Random = field(default_factory=random.Random)


class WebhookReceiver:
    """Single use: ``start()`` once, ``stop()`` once (or use it as a context manager)."""

    def __init__(
        self,
        secret: str,
        *,
        clock: Clock | None = None,
        ends_access_at_expiry: bool = False,
        knows: Iterable[str] = EVENTS,
    ) -> None:
        self.secret = secret
        self.knows = tuple(knows)
        self._ignore_revokes = False
        self.clock = clock or SystemClock()  # the receiver's "now" for the timestamp check and for expiry
        self.ends_access_at_expiry = ends_access_at_expiry
        self._access: dict[str, Access] = {}  # by grant id
        self._calls: list[WebhookCall] = []
        self._open = 0  # calls received but not yet answered
        self._script = _Script()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._releases = 0  # bumped by release(): calls held since an earlier count answer at once
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"WebhookReceiver(url={self.url if self._server else None!r})"

    def start(self) -> WebhookReceiver:
        if self._server is not None:
            raise RuntimeError("webhook receiver already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # stop() waits up to this long
            name="webhook-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()  # wakes handlers sleeping in hang() or a delay
        with self._changed:
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("webhook receiver not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    @property
    def calls(self) -> list[WebhookCall]:
        with self._changed:
            return list(self._calls)

    def events(self, event: str | None = None) -> list[WebhookCall]:
        return [call for call in self.calls if event is None or call.event == event]

    def respond_with(self, status: int = 200, body: dict[str, Any] | str | None = None, delay: float = 0.0) -> None:
        """How following calls are answered; a str body is sent as text/plain, a dict as JSON."""
        with self._changed:
            self._script.reply = _Reply(status, body, delay)

    def fail_next(self, n: int, status: int = 500, body: dict[str, Any] | str | None = None) -> None:
        """The next ``n`` valid calls answer ``status`` (after any ``hang``), then the scripted reply resumes.
        ``body`` is what the failures say; by default ``{"error": <the status's phrase>}``."""
        with self._changed:
            self._script.failures_left = n
            self._script.failure_status = status
            self._script.failure_body = body

    def fail_fraction(self, fraction: float, *, seed: int | None = None, status: int = 503) -> None:
        """From now on, each valid call fails with ``status`` with probability ``fraction`` (0 ends it), drawn from
        a generator seeded with ``seed``: the same seed fails the same calls of the same sequence."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
        with self._changed:
            self._script.flaky = fraction
            self._script.flaky_status = status
            self._script.dice = random.Random(seed)

    def hang(self, seconds: float) -> None:
        """Following calls wait this long before answering; ``hang(0)`` ends it."""
        with self._changed:
            self._script.reply = replace(self._script.reply, delay=seconds)

    def release(self) -> None:
        """Ends ``hang``, and answers every call it holds now.

        A test holds calls with a long ``hang`` and releases them when it has seen what it wanted, so how busy the
        machine is cannot end the hang before the test looked.
        """
        with self._changed:
            self._script.reply = replace(self._script.reply, delay=0.0)
            self._releases += 1
            self._changed.notify_all()

    def ignore_revokes(self, ignore: bool = True) -> None:
        """Answer revokes 200 and keep the access (or, with False, honour them again)."""
        with self._changed:
            self._ignore_revokes = ignore

    def access(self, grant_id: str) -> Access | None:
        """The access held under ``grant_id`` now (None once revoked, or expired if the receiver ends it)."""
        with self._changed:
            held = self._access.get(grant_id)
            return held if held is not None and self._current(held) else None

    def has_access(self, principal: str) -> bool:
        """Whether any grant gives ``principal`` access now."""
        with self._changed:
            return any(held.principal == principal and self._current(held) for held in self._access.values())

    def _current(self, held: Access) -> bool:
        return not self.ends_access_at_expiry or self.clock.now() < held.expires_at

    @property
    def in_flight(self) -> int:
        """Calls received whose answer has not been sent yet (held by ``hang`` or a delay)."""
        with self._changed:
            return self._open

    def wait_until_idle(self, timeout: float = 30.0) -> None:  # returns as soon as idle: only a failure waits long
        """Returns once every call received so far has been answered (or dropped by ``stop``)."""
        with self._changed:
            if self._changed.wait_for(lambda: self._open == 0, timeout=timeout):
                return
            left = self._open
        raise TimeoutError(f"webhook receiver: {left} call(s) still unanswered after {timeout:g}s")

    def wait_for(
        self, predicate_or_count: int | Callable[[list[WebhookCall]], bool], timeout: float = 30.0
    ) -> list[WebhookCall]:
        """The calls, once there are at least ``count`` of them or ``predicate(calls)`` holds."""
        want = predicate_or_count

        def done() -> bool:
            return want(list(self._calls)) if callable(want) else len(self._calls) >= want

        with self._changed:
            if self._changed.wait_for(done, timeout=timeout):
                return list(self._calls)
            seen = [call.event for call in self._calls]
        wanted = "the expected calls" if callable(want) else f"{want} call(s)"
        raise TimeoutError(f"webhook receiver: no {wanted} within {timeout:g}s; got {len(seen)}: {seen}")

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        """Records one call and decides its answer."""
        valid = verify(
            self.secret,
            headers.get("X-Breakglass-Timestamp"),
            headers.get("X-Breakglass-Signature"),
            raw,
            self.clock.now().timestamp(),
        )
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._changed:
            if not valid:
                reply = _Reply(401, {"error": "invalid signature"})
            elif urlsplit(path).path != PATH:
                reply = _Reply(404, {"error": "no such hook"})
            elif not isinstance(body, dict):
                reply = _Reply(400, {"error": "body is not a JSON object"})
            elif body.get("event") not in self.knows:
                reply = _Reply(400, {"error": f"unknown event (this receiver knows {', '.join(self.knows)})"})
            elif self._script.failures_left > 0:
                self._script.failures_left -= 1
                status = self._script.failure_status
                said = self._script.failure_body
                reply = _Reply(status, {"error": _phrase(status)} if said is None else said, self._script.reply.delay)
            elif self._script.flaky and self._script.dice.random() < self._script.flaky:
                status = self._script.flaky_status
                reply = _Reply(status, {"error": _phrase(status)}, self._script.reply.delay)
            else:
                reply = self._script.reply
                if 200 <= reply.status < 300:
                    refused = self._keep(body)
                    reply = replace(reply, status=refused[0], body=refused[1]) if refused else reply
                if 200 <= reply.status < 300 and body["event"] == "verify" and reply.body is None:
                    principal = body.get("principal")
                    held = any(a.principal == principal and self._current(a) for a in self._access.values())
                    reply = replace(reply, body={"active": held})
            data = body if isinstance(body, dict) else {}
            event = data.get("event") if isinstance(data.get("event"), str) else None
            self._calls.append(WebhookCall(event, data, headers, valid, time.monotonic(), reply.status))
            self._open += 1
            self._changed.notify_all()
            return replace(reply, releases=self._releases)

    def _keep(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Applies one call to the access held, as a receiver does; a refusal (status, body), or None."""
        event, grant_id = body["event"], body.get("grant_id")
        if not isinstance(grant_id, str):
            return 400, {"error": "grant_id is required"}
        if event == "revoke":
            if not self._ignore_revokes:
                self._access.pop(grant_id, None)
            return None
        if event == "verify":
            return None
        principal, until = body.get("principal"), _moment(body.get("expires_at"))
        if not isinstance(principal, str) or until is None:
            return 400, {"error": "principal and expires_at (ISO 8601, UTC) are required"}
        held = self._access.get(grant_id)
        if event == "grant":
            self._access[grant_id] = Access(grant_id, principal, until)
        elif held is None or held.principal != principal or not self._current(held):
            return 410, {"error": "no access under this grant to extend: it has ended"}
        else:
            self._access[grant_id] = replace(held, expires_at=until)
        return None

    def _answered(self) -> None:
        """A call's answer went out (or the connection was dropped): it is no longer in flight."""
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def _pause(self, seconds: float, releases: int) -> bool:
        """Sleeps, unless stop() or a release() since the call came is first; True if stop() did."""
        if seconds <= 0:
            return False
        with self._changed:
            self._changed.wait_for(lambda: self._stopping.is_set() or self._releases != releases, timeout=seconds)
        return self._stopping.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must not keep stop() or the process waiting

    def __init__(self, owner: WebhookReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)  # port 0: any free port
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeouts) leave broken pipes behind; that is expected here.
        log.debug("webhook receiver: error handling a request from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner = self.server.owner
        reply = owner._handle(self.path, dict(self.headers.items()), raw)
        try:
            if owner._pause(reply.delay, reply.releases):
                return  # the receiver is shutting down; drop the connection unanswered
            if isinstance(reply.body, dict):
                payload, content_type = json.dumps(reply.body).encode(), "application/json"
            else:
                payload, content_type = (reply.body or "").encode(), "text/plain; charset=utf-8"
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        finally:
            owner._answered()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _moment(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if isinstance(text, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "scripted failure"
