"""The one thing every sink does, and building the sinks the policy names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.policy import Policy, PolicyError
from bot.policy.sinks import FileSink, SyslogSink, WebhookSink, secret_problems


class SinkDown(Exception):
    """The sink did not confirm the batch: nothing of it counts as delivered, and it is sent again later. The message
    names what failed (a status, an errno), never a key."""


class Sink(Protocol):
    name: str
    kind: str  # webhook, syslog or file: for people reading an alert
    batch: int  # events per send at most

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        """Deliver ``events`` (consecutive, in chain order); returning is the confirmation. Raises SinkDown."""
        ...

    def close(self) -> None: ...


def build(config: WebhookSink | SyslogSink | FileSink, environ: Mapping[str, str]) -> Sink:
    if isinstance(config, WebhookSink):
        from bot.sinks.webhook import WebhookTransport

        return WebhookTransport(config, environ[config.secret_env].strip())
    if isinstance(config, SyslogSink):
        from bot.sinks.syslog import SyslogTransport

        return SyslogTransport(config)
    from bot.sinks.jsonl import JsonLinesFile

    return JsonLinesFile(config)


def build_all(policy: Policy, environ: Mapping[str, str]) -> list[Sink]:
    """A sink for each entry of ``audit_sinks``; PolicyError naming every webhook key that is not set."""
    problems = secret_problems(policy.audit_sinks, environ)
    if problems:
        raise PolicyError("; ".join(problems))
    return [build(config, environ) for config in policy.audit_sinks]
