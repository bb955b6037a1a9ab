"""The HTTP face: Slack's events endpoint, a health check and /metrics, as one WSGI app served by waitress.

Before Bolt sees a request from Slack, three checks run here, because here they can be counted:
- the body is of a size Slack sends;
- the signature is Slack's, made within the last five minutes (https://api.slack.com/authentication/verifying-
  requests-from-slack); failures are written to the audit trail, a few at a time so a flood cannot fill it;
- it was not seen before: a request replayed inside its five minutes is answered and ignored. The seen
  signatures are kept in the database, so the check holds across replicas.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.domain.actions import AuditAction
from bot.services import guard
from bot.services.deadline import Overdue, call_within
from bot.services.deps import Deps
from bot.slack import payloads, replies
from bot.slack.after_ack import AcksFirst
from bot.slack.link import SlackLink
from bot.slack.replies import DATABASE_UNREACHABLE as DB_DOWN
from bot.store import deliveries
from bot.store.reachability import ANSWER_WITHIN, NoAnswer, database_outage, unreachable

log = logging.getLogger("breakglass.web")
T = TypeVar("T")

EVENTS_PATH = "/slack/events"
MAX_BODY = 256 * 1024  # Slack's payloads are a few KB; a block_actions payload with a big message stays well under
SIGNATURE_WINDOW = 300  # seconds, Slack's own rule


class WebApp:
    def __init__(
        self,
        app: App,
        deps: Deps,
        signing_secret: str | None,
        wall_clock: Callable[[], float] = time.time,
        slack: SlackLink | None = None,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        events: bool = True,
        acks_first: AcksFirst | None = None,
    ) -> None:
        """``metrics``: what GET /metrics answers (bot/metrics.py), else it is not served. ``events=False`` (Socket
        Mode, where Slack's requests come over the socket) serves only /healthz and /metrics: an events endpoint
        with no signing secret to check would take anyone's word for being Slack."""
        self.slack = SlackRequestHandler(app, path=EVENTS_PATH)
        self.metrics = metrics
        self.events = events
        self.slack_link = slack
        self.deps = deps
        self.secret = signing_secret.encode() if signing_secret else None
        self.wall_clock = wall_clock
        self.bad_signatures = _Throttled(deps)
        self.acks_first = acks_first or AcksFirst()

    def healthy(self) -> bool:
        """Whether the database answers, within ANSWER_WITHIN whatever the database does."""
        try:
            _within(ANSWER_WITHIN, self._ping)
        except Exception as error:
            database_outage.failed(log, "the health check", error)
            return False
        database_outage.reachable()
        return True

    def _ping(self) -> None:
        with self.deps.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def health(self) -> tuple[int, dict[str, Any]]:
        """503 only when the database is unreachable: without it nothing can be done. Slack unreachable is
        "degraded": revokes go on, and messages wait."""
        ok = self.healthy()
        slack = "up" if self.slack_link is None or self.slack_link.reachable else "degraded"
        return 200 if ok else 503, {"ok": ok, "database": "up" if ok else "down", "slack": slack}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return _reply(start_response, *self.health())
        if path == "/metrics" and method in ("GET", "HEAD") and self.metrics is not None:
            body, content_type = self.metrics()
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]
        if not self.events:
            return _reply(start_response, 404, {"error": "not found"})
        if path == EVENTS_PATH and method == "POST" and self.secret is not None:
            with self.acks_first.acking():  # work that follows earlier acks waits meanwhile
                return self._from_slack(environ, start_response)
        return self.slack(environ, start_response)

    def _from_slack(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _reply(start_response, 400, {"error": "bad Content-Length"})
        if length > MAX_BODY:
            return _reply(start_response, 413, {"error": f"a Slack request is at most {MAX_BODY} bytes"})
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        problem = self._signature_problem(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""), signature, body)
        if problem:
            self.bad_signatures.note(problem, environ.get("REMOTE_ADDR"))
            return _reply(start_response, 401, {"error": "invalid request signature"})
        shape, bolted = payloads.read(body, environ.get("CONTENT_TYPE"))
        if shape:  # signed, yet not what Slack sends: Bolt would answer 500 or crash a listener
            log.warning("refused a signed request: %s", shape)
            return _reply(start_response, 400, {"error": "not a Slack payload"})
        digest = hashlib.sha256(signature.encode()).hexdigest()
        try:
            first = _within(ANSWER_WITHIN, deliveries.first_time, self.deps.db, digest, self.deps.now())
        except Exception as error:
            if not unreachable(error):
                raise
            # The request goes no further, so nothing is done: the person hears why, not a 500 ("dispatch_failed").
            database_outage.failed(log, "a Slack request", error)
            return _reply(start_response, *replies.refusal_for(body, environ.get("CONTENT_TYPE"), DB_DOWN))
        if not first:
            log.warning("ignored a replayed Slack request")
            return _reply(start_response, 200, None)
        if bolted != body:  # Bolt checks the signature again, over the body it is given
            environ["HTTP_X_SLACK_SIGNATURE"] = self._signature(environ["HTTP_X_SLACK_REQUEST_TIMESTAMP"], bolted)
        environ["wsgi.input"] = io.BytesIO(bolted)
        environ["CONTENT_LENGTH"] = str(len(bolted))
        return self.slack(environ, start_response)

    def _signature_problem(self, timestamp: str, signature: str, body: bytes) -> str | None:
        assert self.secret is not None
        if not timestamp.isdigit() or not signature.startswith("v0="):
            return "no Slack signature"
        if abs(self.wall_clock() - int(timestamp)) > SIGNATURE_WINDOW:
            return "a Slack signature older than five minutes (or from the future)"
        if not hmac.compare_digest(self._signature(timestamp, body), signature):
            return "a signature that is not Slack's"
        return None

    def _signature(self, timestamp: str, body: bytes) -> str:
        assert self.secret is not None
        return "v0=" + hmac.new(self.secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def _within(seconds: float, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, given at most ``seconds``; NoAnswer if the database has not answered by then. The call is
    abandoned on a daemon thread and ends when its connection does; it is one transaction, so it either commits or
    leaves nothing."""
    try:
        return call_within(seconds, call, *args)
    except Overdue:
        raise NoAnswer(f"no answer within {seconds:g}s") from None


def _reply(start_response: Callable[..., Any], status: int, payload: dict[str, Any] | None) -> list[bytes]:
    reasons = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        413: "Payload Too Large",
        503: "Unavailable",
    }
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = [("Content-Length", str(len(body)))]
    if payload is not None:
        headers.append(("Content-Type", "application/json"))
    start_response(f"{status} {reasons[status]}", headers)
    return [body]


class _Throttled:
    """Writes bad signatures to the audit trail at most once every ``every``, with how many came since the last
    write: enough to see an attack, too little to let one fill the database."""

    def __init__(self, deps: Deps, every: timedelta = timedelta(seconds=10)) -> None:
        self.deps = deps
        self.every = every
        self._unwritten = 0
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def note(self, why: str, remote: str | None) -> None:
        now = self.deps.now()
        with self._lock:
            self._unwritten += 1
            if self._last is not None and now - self._last < self.every:
                return
            count, self._unwritten, self._last = self._unwritten, 0, now
        log.warning("refused a request with %s from %s", why, remote or "?")
        try:
            guard.refused(self.deps, guard.UNSIGNED, AuditAction.SIGNATURE_REFUSED, why, remote=remote, count=count)
        except Exception as error:  # the refusal stands even if it cannot be written down
            database_outage.failed(log, "recording a refused signature", error)
