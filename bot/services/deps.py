"""Everything a use case needs, built once at start and passed down."""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from bot.adapters.base import Adapter
from bot.clock import Clock
from bot.policy import Policy, Resource
from bot.redaction import Redactor
from bot.services.heartbeat import Heartbeat
from bot.services.leases import Leases
from bot.services.oncall import OnCallDesk
from bot.services.ports import (
    Alarms,
    Courier,
    Directory,
    Homes,
    Metrics,
    NoAlarms,
    NoCourier,
    NoHomes,
    NoMetrics,
    Notifier,
)
from bot.store.db import Database

if TYPE_CHECKING:
    from bot.services.policy_book import Loaded, PolicyBook


def instance_name() -> str:
    """Names the process in claims, so a stuck claim can be traced to a host and pid. A restart under a new name
    finds its old claims by their holder's stale heartbeat; ``BREAKGLASS_INSTANCE`` gives a replica a name that
    survives restarts (a dyno or StatefulSet pod name), so a restarted replica takes back its own claims at once."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Tuning:
    instance: str = field(default_factory=instance_name)
    # A claim is ours for one lease; we renew it while we work. A dead replica's work is taken over once its
    # heartbeat is dead_after old; the lease is the fallback for holders without one (older versions).
    lease: timedelta = timedelta(seconds=30)
    # Each replica writes a heartbeat this often; a claim whose holder has not written for dead_after is taken over
    # without waiting for its lease (services/heartbeat.py). Together they bound the takeover after a crash:
    # dead_after, plus a sweep, well within the promised 10 s on two replicas and sweep interval + 5 s on one.
    heartbeat: timedelta = timedelta(seconds=2)
    dead_after: timedelta = timedelta(seconds=6)  # three beats: one late beat never makes a live replica dead
    call_timeout: float = 20.0  # seconds one backend call may take before we give up on it and retry later
    lane_width: int = 4  # backend calls at once per resource, so one slow backend cannot hold up the others
    expiry_warning: timedelta = timedelta(minutes=10)
    revoke_alert_after: int = 3  # failed revokes before the audit channel hears about it
    # A failed revoke is retried within seconds first (1, 2, 4, 8 s…), then at most every backoff_max: a backend
    # that fails one call in ten must not leave access a minute past its end.
    backoff_base: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(minutes=10)
    # Each wait is shortened by up to this fraction at random, so revokes that failed together (one backend outage)
    # do not all come back in the same second; never lengthened, so no revoke waits longer than its backoff.
    jitter: float = 0.2
    random: Callable[[], float] = random.random
    grant_attempts: int = 3
    grant_retry_pause: float = 0.5
    alert_retry: timedelta = timedelta(seconds=30)  # how soon an emergency alert Slack did not take is sent again
    batch: int = 100
    refusals_alert: int = 5  # refused attempts by one person within guard.WINDOW before the audit channel hears
    requests_per_hour: int = 20  # requests one person may file in an hour, across all replicas
    actions_per_minute: int = 30  # commands and clicks one person may send a minute, per replica
    reconcile_every: timedelta = timedelta(minutes=10)  # how often backends are compared with the live grants
    # How far back reconciliation looks for principals to ask a backend about when it can verify but not list.
    reconcile_lookback: timedelta = timedelta(days=30)
    pause: Callable[[float], None] = time.sleep

    def backoff(self, attempts: int) -> timedelta:
        """The longest wait before retry number ``attempts``; ``retry_wait`` is the one actually waited."""
        return min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_max)

    def retry_wait(self, attempts: int) -> timedelta:
        return self.backoff(attempts) * (1 - self.jitter * self.random())


class MadeUnder(Protocol):
    """A request, stored or snapshot: what it asks for, and the policy version it was made under."""

    @property
    def resource(self) -> str: ...
    @property
    def level(self) -> str | None: ...
    @property
    def policy_version(self) -> str | None: ...


@dataclass
class Deps:
    db: Database
    policy: Policy
    adapters: dict[str, Adapter]
    notifier: Notifier
    directory: Directory
    clock: Clock
    alarms: Alarms = field(default_factory=NoAlarms)
    courier: Courier = field(default_factory=NoCourier)
    tuning: Tuning = field(default_factory=Tuning)
    leases: Leases = field(default_factory=Leases)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    redactor: Redactor = field(default_factory=Redactor)  # every secret the process knows, for failure texts
    oncall: OnCallDesk | None = None  # the policy's on-call service, when it names one
    # The version of ``policy`` and every version live requests were made under (services/policy_book.py); None
    # where the policy was not loaded from a file (tests): every request then follows ``policy``.
    version: str | None = None
    book: PolicyBook | None = None
    metrics: Metrics = field(default_factory=NoMetrics)  # counted at the seams; served at /metrics
    homes: Homes = field(default_factory=NoHomes)  # re-publishes the Home tabs a change concerns

    def now(self) -> datetime:
        return self.clock.now()

    def is_listed(self, user_id: str, ids: list[str]) -> bool:
        if user_id in ids:
            return True
        groups = [entry for entry in ids if entry.startswith("S")]
        return bool(groups) and user_id in self.directory.members(groups)

    def resource(self, resource_name: str, level: str | None = None) -> Resource | None:
        """The resource as the level grants it (None: its first); None if the policy no longer has either."""
        return self.policy.resource(resource_name, level)

    def adapter(self, resource_name: str, level: str | None = None) -> Adapter | None:
        """The adapter configured for the resource at that level (one per level: each level has its own params)."""
        resource = self.policy.resource(resource_name, level)
        return None if resource is None else self.adapters.get(resource.label)

    def under(self, version: str | None) -> Loaded | None:
        """The policy and adapters of ``version``: None for the policy of the moment (a request from before versions
        were kept, or no book) or for a version that can no longer be loaded (the book logs why)."""
        if version is None or self.book is None or version == self.version:
            return None
        return self.book.get(version)

    def resource_for(self, request: MadeUnder) -> Resource | None:
        """The request's resource as the policy it was made under had it: for what happens to access already given
        (revoke, expiry, extension limits, the review it owes), not for who may decide now."""
        if request.policy_version is None or request.policy_version == self.version or self.book is None:
            return self.resource(request.resource, request.level)
        loaded = self.book.get(request.policy_version)
        return None if loaded is None else loaded.policy.resource(request.resource, request.level)

    def adapter_for(self, request: MadeUnder) -> Adapter | None:
        """The adapter the request's access was (or will be) granted through: its policy version's, with that
        version's params, so a reload that moved or removed the resource cannot send its revoke elsewhere."""
        if request.policy_version is None or request.policy_version == self.version or self.book is None:
            return self.adapter(request.resource, request.level)
        loaded = self.book.get(request.policy_version)
        resource = None if loaded is None else loaded.policy.resource(request.resource, request.level)
        return None if loaded is None or resource is None else loaded.adapters.get(resource.label)

    def policy_for(self, request: MadeUnder) -> Policy:
        """The whole policy the request was made under (its review rule); the policy of the moment if unknown."""
        if request.policy_version is None or request.policy_version == self.version or self.book is None:
            return self.policy
        loaded = self.book.get(request.policy_version)
        return self.policy if loaded is None else loaded.policy

    def version_of(self, policy: Policy) -> str | None:
        """The version of a policy object this process loaded (what a new request records it was made under)."""
        if policy is self.policy and self.book is None:
            return self.version
        return self.book.version_of(policy) if self.book is not None else None

    def swap(self, loaded: Loaded) -> None:
        """Make ``loaded`` the policy of the moment. The book has it first, so a request checked against either
        policy finds its version; adapters go before the policy, so a label the new policy names always has its
        adapter. A use case already running keeps the policy object it read, and records that one's version."""
        if self.book is not None:
            self.book.add(loaded)
        self.adapters = dict(loaded.adapters)
        self.policy = loaded.policy
        self.version = loaded.version

    def is_approver(self, user_id: str, resource_name: str, level: str | None = None) -> bool:
        resource = self.policy.resource(resource_name, level)
        return resource is not None and self.is_listed(user_id, resource.approvers)

    def may_request(self, user_id: str, resource: Resource) -> bool:
        return resource.requesters is None or self.is_listed(user_id, resource.requesters)

    def may_break_glass(self, user_id: str, resource: Resource | None) -> bool:
        return resource is not None and bool(resource.emergency) and self.may_request(user_id, resource)

    def approves(self, user_id: str) -> list[str]:
        """The resources this person may decide on, at one level at least."""
        return [
            name
            for name, resource in self.policy.resources.items()
            if any(self.is_approver(user_id, name, level) for level in resource.each_level)
        ]

    def approvals_required(self, resource_name: str, level: str | None = None) -> int:
        resource = self.policy.resource(resource_name, level)
        return resource.required_approvals if resource else 1
