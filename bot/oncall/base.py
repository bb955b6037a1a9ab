"""The on-call port: who is on call for a schedule now, whether an incident is open, and paging a schedule.

PagerDuty (bot/oncall/pagerduty.py) and Opsgenie (bot/oncall/opsgenie.py) implement it over their plain REST APIs.
Every vendor failure (unreachable, refused, an answer that is not what the API documents) becomes one exception,
``OnCallUnavailable``, whose text never carries a key: the services fall back to the listed approvers and say so,
and never block or approve anything because of an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class OnCallUnavailable(Exception):
    """The on-call service could not answer just now. The message says what failed (method, path, status or error
    class) and never contains a key or token."""


@dataclass(frozen=True)
class Incident:
    """An open incident (PagerDuty: triggered or acknowledged; Opsgenie: open)."""

    id: str
    title: str
    services: tuple[str, ...] = ()  # service ids it belongs to (PagerDuty: one; Opsgenie: impacted services)
    urgency: str | None = None  # PagerDuty: high/low
    priority: str | None = None  # Opsgenie: P1 (highest) … P5
    url: str | None = None


@dataclass(frozen=True)
class Page:
    """A page sent to a schedule's on-call: what the vendor calls it, and where people can see it (if known)."""

    key: str  # PagerDuty: the dedup key; Opsgenie: the alert's alias
    url: str | None = None
    details: dict[str, str] = field(default_factory=dict)


class OnCall(Protocol):
    """One on-call service. Calls block for at most the configured timeout and raise OnCallUnavailable on any
    failure."""

    def on_call(self, schedule: str) -> frozenset[str]:
        """The email addresses (lower-cased) of whoever is on call for ``schedule`` right now; empty if nobody is."""
        ...

    def open_incidents(self, services: Sequence[str] = ()) -> list[Incident]:
        """Incidents open now, only those of ``services`` (service ids) when any are given."""
        ...

    def page(self, schedule: str, summary: str, key: str, details: dict[str, str]) -> Page:
        """Page whoever is on call for ``schedule``; ``key`` makes a repeat of the same page a no-op (dedup)."""
        ...
