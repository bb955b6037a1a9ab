"""Tells an HTTP endpoint of yours to grant, extend or revoke access: for backends Breakglass has no adapter for.

Every call is a ``POST`` of a compact UTF-8 JSON body to the configured ``url``::

    {"event": "grant", "grant_id": "...", "resource": "...", "level": "read",
     "user": {"slack_id": "U123", "email": "...", "name": "..."}, "principal": "zoe",
     "expires_at": "2026-01-01T10:00:00Z", "reason": "...", "emergency": false}

``level`` is the resource's access level asked for (``null`` for a resource without levels).

``event`` is ``grant``, ``revoke``, ``extend`` or ``verify``. An ``extend`` carries the same fields, with the new,
later ``expires_at``: a receiver that ends access by itself at ``expires_at`` must move that end; one that leaves the
end to Breakglass's revoke just answers 2xx.

A ``verify`` (same fields) asks whether ``principal`` still has the access ``grant_id`` gave, from the backend as it
is now: answer 2xx with ``{"active": true}`` or ``{"active": false}``. Breakglass sends it after every revoke and
during reconciliation, only to resources with ``verify: true`` in their params, so a receiver that does not know the
event is never asked. Access still there fails the revoke (it is retried, shown, alerted), and so does any other
answer: a receiver that does not know the event (400, 404, 405, 501), a 5xx, a body without a boolean ``active``.
"Cannot tell" never reads as "gone". A verify changes nothing, and carries a fresh ``Idempotency-Key`` each time,
so a receiver that replays answers by key cannot answer from an old one.

Verifying a request (receiver side)
-----------------------------------
The request carries two headers:

* ``X-Breakglass-Timestamp``: Unix time in whole seconds when the request was signed.
* ``X-Breakglass-Signature``: ``v1=`` followed by the lowercase hex HMAC-SHA256, keyed with the shared
  secret (UTF-8), of the timestamp, a ``.``, and the raw body bytes exactly as received::

      expected = "v1=" + hex(hmac_sha256(key=secret, message=timestamp + "." + raw_body))

Compute it over the raw bytes before parsing the JSON, compare in constant time, and reject timestamps more
than a few minutes from your clock so a captured request cannot be replayed later. In Python::

    from bot.adapters.webhook import verify

    ok = verify(secret, headers.get("X-Breakglass-Timestamp"), headers.get("X-Breakglass-Signature"),
                raw_body, time.time())

Answering
---------
Any 2xx is success. 5xx, 408 and 429 mean "try again later", and Breakglass will; any other status is a
failure that retrying cannot fix. Retries of one event carry the same ``Idempotency-Key`` header
(``"<grant_id>:<event>"``, and ``"<grant_id>:extend:<expires_at>"`` for an extend, so that each extension has
its own; a quoted string as in the IETF Idempotency-Key draft), so a receiver can recognise a repeat; every
event must be idempotent anyway. A grant may answer ``{"instructions": "..."}``; the text (at most 2000
characters) is shown to the requester. Revoking access that is already gone must answer 2xx, not 404.

A receiver that does not know ``extend`` answers 400, 404, 405 or 501 to it: Breakglass then reports that this
resource cannot be extended (a final failure, not retried), and the grant keeps its old end. A receiver whose
access has already ended (expired or revoked) should refuse an extend, with 409 or 410, rather than grant anew.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from datetime import datetime
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from pydantic import ConfigDict, Field, HttpUrl, SecretStr, field_validator
from requests.auth import AuthBase
from requests.utils import get_auth_from_url

from bot import __version__
from bot.adapters.base import AdapterError, AdapterParams, GrantContext, Receipt
from bot.clock import Clock, SystemClock, as_utc
from bot.redaction import Redactor

log = logging.getLogger("breakglass.adapters.webhook")

MAX_INSTRUCTIONS = 2000
_MAX_SNIPPET = 200
_MAX_REPLY = 64 * 1024  # a reply is read no further than this, so a broken receiver cannot exhaust memory
_RETRYABLE_STATUSES = {408, 429}
_UNKNOWN_EVENT = frozenset({400, 404, 405, 501})  # how a receiver answers an event it does not know
_RESERVED_HEADERS = {
    "content-type",
    "user-agent",
    "idempotency-key",
    "x-breakglass-timestamp",
    "x-breakglass-signature",
}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Breakglass-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now_unix: float,
    tolerance: float = 300,
) -> bool:
    """Whether a request's signature is genuine and its timestamp within ``tolerance`` seconds of now."""
    if not timestamp_header or not signature_header:
        return False
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return False
    if abs(now_unix - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature_header.strip().encode())


class WebhookParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be the secret

    url: HttpUrl
    secret: SecretStr
    timeout: float = Field(default=10, gt=0, le=120)
    headers: dict[str, str] | None = None
    verify: bool = False  # the receiver answers the verify event, so every revoke is checked with it

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it is an HMAC key)")
        return value

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        clashes = sorted(name for name in value or {} if name.lower() in _RESERVED_HEADERS)
        if clashes:
            raise ValueError(f"cannot override {', '.join(clashes)}: the adapter sets them")
        return value


class WebhookAdapter:
    name: ClassVar[str] = "webhook"
    Params: ClassVar[type[AdapterParams]] = WebhookParams

    def __init__(
        self, params: WebhookParams, clock: Clock | None = None, session: requests.Session | None = None
    ) -> None:
        self.params = params
        self.clock = clock or SystemClock()
        self._owns_session = session is None
        self.session = session or requests.Session()
        self._url = str(params.url)
        self._host = _display_host(self._url)
        self._auth = _auth(self._url)
        self._redactor = Redactor([params.secret])
        if params.verify:
            # Only a receiver said to know the event makes this adapter one that Verifies: asking one that does not
            # would fail every revoke, and believing its "unknown event" would read as "access gone".
            self.verify = self._verify

    def __repr__(self) -> str:
        return f"WebhookAdapter(host={self._host!r}, timeout={self.params.timeout:g})"

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def grant(self, ctx: GrantContext) -> Receipt:
        reply = self._send("grant", ctx)
        log.info("grant %s: webhook %s accepted", ctx.grant_id, self._host)
        return Receipt(data={"webhook": True}, instructions=self._instructions(reply))

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        self._send("revoke", ctx)
        log.info("revoke %s: webhook %s accepted", ctx.grant_id, self._host)

    def extend(self, ctx: GrantContext, receipt: Receipt) -> None:
        try:
            self._send("extend", ctx)
        except _Refused as refused:
            if refused.status not in _UNKNOWN_EVENT:
                raise
            raise AdapterError(
                f"{refused}; the receiver does not take `extend`, so the end of access it may enforce cannot be moved",
                retryable=False,
            ) from None
        log.info("extend %s: webhook %s accepted, now until %s", ctx.grant_id, self._host, _stamp(ctx.expires_at))

    def _verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        try:
            reply = self._send("verify", ctx)
        except _Refused as refused:
            if refused.status not in _UNKNOWN_EVENT:
                raise
            raise AdapterError(
                f"{refused}; the receiver does not take `verify` (set verify: false in the resource's params only if "
                "it cannot answer, and then revokes are believed unchecked)",
                retryable=False,
            ) from None
        try:
            active = json.loads(reply).get("active")
        except (ValueError, AttributeError):
            active = None
        if not isinstance(active, bool):
            raise AdapterError(
                f'webhook at {self._host} answered verify without {{"active": true|false}}', retryable=True
            )
        return active

    def check(self) -> list[str]:
        # No request: a receiver need not have an endpoint that does nothing.
        parts = urlsplit(self._url)
        if parts.scheme not in ("http", "https"):
            return [f"url: must be http or https, not '{parts.scheme}'"]
        if not parts.hostname:
            return ["url: has no host"]
        return []

    def _send(self, event: str, ctx: GrantContext) -> bytes:
        body = _body(event, ctx)
        if event == "extend":  # each extension is a new operation
            key = idempotency_key(ctx.grant_id, event, _stamp(ctx.expires_at))
        elif event == "verify":  # a question asked afresh each time: never answered from a replayed reply
            key = idempotency_key(ctx.grant_id, event, uuid.uuid4().hex)
        else:
            key = idempotency_key(ctx.grant_id, event)
        timestamp = int(self.clock.now().timestamp())
        headers = {
            **(self.params.headers or {}),
            "Content-Type": "application/json",
            "User-Agent": f"breakglass/{__version__}",
            "X-Breakglass-Timestamp": str(timestamp),
            "X-Breakglass-Signature": sign(self.params.secret.get_secret_value(), timestamp, body),
            "Idempotency-Key": key,
        }
        # `from None` throughout: requests' own exceptions name the full URL, query string and all.
        try:
            with self.session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=self.params.timeout,
                allow_redirects=False,  # a redirected POST turns into a GET
                stream=True,
                auth=self._auth,
            ) as response:
                reply = _read_limited(response)
        except requests.Timeout:
            raise AdapterError(
                f"webhook at {self._host} timed out after {self.params.timeout:g}s", retryable=True
            ) from None
        except requests.ConnectionError:
            raise AdapterError(f"cannot connect to webhook host {self._host}", retryable=True) from None
        except requests.RequestException as error:
            raise AdapterError(
                f"webhook request to {self._host} failed ({type(error).__name__})", retryable=True
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return reply
        reason = self._redact(response.reason or _phrase(status))  # the receiver writes the reason too
        message = f"webhook at {self._host} answered {status} {reason}".rstrip()
        if 300 <= status < 400:
            message += " (redirects are not followed)"
        snippet = " ".join(self._redact(reply.decode("utf-8", errors="replace")).split())
        if snippet:
            message += f": {_truncate(snippet, _MAX_SNIPPET)}"
        raise _Refused(message, status)

    def _instructions(self, reply: bytes) -> str | None:
        try:
            data = json.loads(reply)
        except ValueError:
            return None
        text = data.get("instructions") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip():
            return None
        return _truncate(self._redact(text), MAX_INSTRUCTIONS)

    def _redact(self, text: str) -> str:
        return self._redactor.scrub(text)


class _OwnCredentialsOnly(AuthBase):
    """Leaves the request as the resource configured it. Given as a request's auth, it keeps requests from filling
    one in from ``~/.netrc`` (or ``$NETRC``), which would send the bot host's login for that machine to the receiver
    and overwrite a configured ``Authorization`` header. ``Session.trust_env = False`` would skip netrc too, but
    also ``HTTPS_PROXY``, ``NO_PROXY`` and ``REQUESTS_CA_BUNDLE``, which operators behind a proxy or with an
    internal CA rely on."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def _auth(url: str) -> tuple[str, str] | AuthBase:
    """Basic auth from ``user:password@`` in the url, as requests itself would send it; otherwise none at all."""
    user, password = get_auth_from_url(url)
    return (user, password) if user or password else _OwnCredentialsOnly()


class _Refused(AdapterError):
    """The receiver answered with a status other than 2xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, retryable=status >= 500 or status in _RETRYABLE_STATUSES)
        self.status = status


def idempotency_key(grant_id: str, event: str, qualifier: str | None = None) -> str:
    """The same for every retry of one event (of one extension, with its ``expires_at`` as ``qualifier``), as a
    quoted string (RFC 8941 sf-string)."""
    value = f"{grant_id}:{event}" + (f":{qualifier}" if qualifier else "")
    value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _body(event: str, ctx: GrantContext) -> bytes:
    payload: dict[str, Any] = {
        "event": event,
        "grant_id": ctx.grant_id,
        "resource": ctx.resource,
        "level": ctx.level,
        "user": {"slack_id": ctx.user.slack_id, "email": ctx.user.email, "name": ctx.user.name},
        "principal": ctx.principal,
        "expires_at": _stamp(ctx.expires_at),
        "reason": ctx.reason,
        "emergency": ctx.emergency,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _stamp(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_limited(response: requests.Response) -> bytes:
    data = bytearray()
    for chunk in response.iter_content(8192):
        data += chunk
        if len(data) >= _MAX_REPLY:
            break
    return bytes(data[:_MAX_REPLY])


def _display_host(url: str) -> str:
    """Host and explicit port only: userinfo and query strings can hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
