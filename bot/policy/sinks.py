"""The policy's ``audit_sinks:``: where every audit event is streamed to as well as kept (services/streaming.py).

What this module keeps true: every sink has a name of its own (its place in the chain is kept under that name, so two
sinks sharing one would share a cursor), a webhook names the environment variable holding its key and never the key,
and its URL is https (http only to loopback, where a collector sidecar listens) without credentials in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from ipaddress import ip_address
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from bot.policy.types import Strict

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOPBACK_NAMES = frozenset({"localhost"})

# RFC 5424 section 6.2.1: the facility is the upper part of PRI.
FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
Facility = Literal[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
]  # fmt: skip


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"'{value}' is not a sink name: lower-case letters, digits, '.', '_' or '-', at most 64")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError("must be an environment variable name (letters, digits and _, not starting with a digit)")
    return value


def loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an https:// URL with a host")
    if parts.scheme == "http" and not loopback(parts.hostname):
        # The events carry people's reasons and names: in clear text only to a collector on this machine.
        raise ValueError("must be https:// (http:// only to a loopback address such as 127.0.0.1)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password (the key goes in secret_env)")
    if parts.fragment:
        raise ValueError("must not carry a fragment")
    return value.strip()


SinkName = Annotated[str, AfterValidator(_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]


class WebhookSink(Strict):
    """POSTs batches of events, signed with HMAC-SHA256; a 2xx answer confirms the batch."""

    name: SinkName
    type: Literal["webhook"]
    url: Annotated[str, AfterValidator(_url)]
    secret_env: EnvName = Field(description="The environment variable holding the HMAC key; never the key itself.")
    batch: int = Field(default=100, ge=1, le=1000, description="Events per POST at most.")
    timeout: float = Field(default=10.0, ge=0.5, le=60, description="Seconds one POST may take.")


class SyslogSink(Strict):
    """RFC 5424 messages over UDP (one datagram per event) or TCP (octet-counted frames, RFC 6587)."""

    name: SinkName
    type: Literal["syslog"]
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=514, ge=1, le=65535)
    protocol: Literal["udp", "tcp"] = "udp"
    facility: Facility = "auth"
    timeout: float = Field(default=10.0, ge=0.5, le=60, description="Seconds connecting or writing may take.")


class FileSink(Strict):
    """Appends one JSON object a line to a file, flushed and fsynced before the events count as delivered."""

    name: SinkName
    type: Literal["file"]
    path: str = Field(min_length=1)


AuditSink = Annotated[WebhookSink | SyslogSink | FileSink, Field(discriminator="type")]


def _unique(sinks: list[WebhookSink | SyslogSink | FileSink]) -> list[WebhookSink | SyslogSink | FileSink]:
    first: dict[str, int] = {}
    for index, sink in enumerate(sinks):
        if sink.name in first:
            raise ValueError(
                f"[{index}].name: '{sink.name}' is already the name of audit_sinks[{first[sink.name]}]; each sink "
                "needs a name of its own (where it has got to in the trail is kept under it)"
            )
        first[sink.name] = index
    return sinks


AuditSinks = Annotated[list[AuditSink], AfterValidator(_unique)]


def secret_problems(sinks: list[WebhookSink | SyslogSink | FileSink], environ: Mapping[str, str]) -> list[str]:
    """Each webhook whose key is not in the environment, by key path and variable name (never a value)."""
    return [
        f"audit_sinks[{index}].secret_env: environment variable {sink.secret_env} is not set"
        for index, sink in enumerate(sinks)
        if isinstance(sink, WebhookSink) and not environ.get(sink.secret_env, "").strip()
    ]


def sink_secrets(
    sinks: list[WebhookSink | SyslogSink | FileSink], environ: Mapping[str, str]
) -> Iterator[tuple[str, str]]:
    """(where, key) for every webhook key set in the environment: for the redactor."""
    for index, sink in enumerate(sinks):
        if isinstance(sink, WebhookSink) and environ.get(sink.secret_env):
            yield f"audit_sinks[{index}] ${sink.secret_env}", environ[sink.secret_env]
