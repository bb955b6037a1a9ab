"""The on-call service as the rules need it: who is on call now (as Slack users), whether an emergency is real, and
paging.

Every answer that decides something is looked up when it takes effect (a click, a request), cached for at most
``TTL`` so a burst of clicks costs one call. A service that cannot answer is never taken as yes or no: callers get
None and fall back (to the listed approvers; to letting the glass break, said loudly) and say so.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.oncall.base import Incident, OnCall, OnCallUnavailable, Page
from bot.policy import EmergencyTrigger
from bot.services.ports import Directory

log = logging.getLogger("breakglass.oncall")

TTL = timedelta(seconds=30)  # on-call changes hands rarely; membership of a user group is trusted for a minute


@dataclass(frozen=True)
class Emergency:
    """Whether the glass may be broken now, and what showed it: an incident (``incident``), an incident channel
    (``channel``), or nothing known (``unknown``: the service could not answer)."""

    allowed: bool
    incident: Incident | None = None
    channel: bool = False
    unknown: str | None = None  # why the on-call service could not tell


class OnCallDesk:
    def __init__(self, service: OnCall, directory: Directory, clock: Clock, ttl: timedelta = TTL) -> None:
        self.service = service
        self.directory = directory
        self.clock = clock
        self.ttl = ttl
        self._on_call: dict[str, tuple[datetime, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def on_call_now(self, schedule: str) -> frozenset[str] | None:
        """The Slack ids of whoever is on call for ``schedule`` now; None when the service cannot say."""
        found = self.on_call_or_why(schedule)
        return None if isinstance(found, str) else found

    def on_call_or_why(self, schedule: str) -> frozenset[str] | str:
        """The Slack ids of whoever is on call for ``schedule`` now, or why the service could not say (what failed,
        never a key): a wrong schedule id (404) reads differently from an outage, and whoever fixes it needs to
        know which."""
        now = self.clock.now()
        with self._lock:
            cached = self._on_call.get(schedule)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            emails = self.service.on_call(schedule)
        except OnCallUnavailable as error:
            log.warning("on-call for schedule %s unknown: %s", schedule, error)
            return str(error)
        people = frozenset(user for email in sorted(emails) if (user := self.directory.by_email(email)))
        with self._lock:
            self._on_call[schedule] = (now, people)
        return people

    def emergency(self, trigger: EmergencyTrigger) -> Emergency:
        """Whether an incident that ``trigger`` accepts is open now."""
        try:
            incidents = self.service.open_incidents(trigger.services)
        except OnCallUnavailable as error:
            log.warning("open incidents unknown: %s", error)
            return Emergency(False, unknown=str(error))
        found = next((i for i in incidents if trigger.matches(i.urgency, i.priority)), None)
        return Emergency(found is not None, incident=found)

    def page(self, schedule: str, summary: str, key: str, details: dict[str, str]) -> Page | str:
        """Page the schedule's on-call: the page, or why it could not be sent."""
        try:
            return self.service.page(schedule, summary, key, details)
        except OnCallUnavailable as error:
            log.warning("paging schedule %s failed: %s", schedule, error)
            return str(error)
