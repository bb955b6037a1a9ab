"""Prometheus metrics, served at GET /metrics (bot/web.py) in HTTP and in Socket Mode alike.

Two kinds of series, for two kinds of truth:
- counters and histograms of what this process did (requests settled, backend and Slack calls, revokes), counted at
  the seams through the ``Metrics`` port (bot/services/ports.py). They start from zero at each start; Prometheus's
  ``rate()`` and ``increase()`` handle the reset.
- gauges of what is (grants held, requests pending, reviews overdue, the last passed drill), read from the database
  at each scrape, so every replica reports the same numbers and a restart loses none. The read is bounded: a
  database that does not answer within ``ANSWER_WITHIN`` makes ``breakglass_database_up`` 0, never a hung or failed
  scrape.

Each runtime has a registry of its own (not prometheus_client's global one), so tests and several bots in one
process keep their numbers apart. Label values are only names from the policy (resources, levels, adapters), API
method names and fixed outcomes: never a person, a reason or a secret.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from bot.policy import Policy
from bot.services.deadline import Overdue, call_within
from bot.services.deps import Deps
from bot.services.ports import Settled
from bot.store import gauges
from bot.store.reachability import ANSWER_WITHIN, NoAnswer, database_outage

log = logging.getLogger("breakglass.metrics")
F = TypeVar("F", bound=Callable[..., None])

# A decision takes a person: seconds to a day. Revoke lag is what alarms keep near 10 ms and the sweep bounds by its
# interval; the tail shows a backend that keeps failing. Backend calls are bounded by BREAKGLASS_BACKEND_TIMEOUT.
DECISION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
REVOKE_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
BACKEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)


def _never_raises(method: F) -> F:
    """Counting is never worth failing the work it counts."""

    @functools.wraps(method)
    def counted(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            log.exception("could not count %s", method.__name__)

    return counted  # type: ignore[return-value]


class PrometheusMetrics:
    """The ``Metrics`` port, kept in a registry of its own; ``page()`` is what GET /metrics answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "breakglass_requests",
            "Requests by how their fate became known, one count each: approved (by approvers, the last step), "
            "auto_approved (requester on call), emergency (glass broken), denied, lapsed (no decision in time), "
            'cancelled (withdrawn, or replaced by an emergency). level is "" for a resource without levels.',
            ["resource", "level", "outcome"],
            registry=self.registry,
        )
        self.decision = Histogram(
            "breakglass_decision_seconds",
            "From a request being made to the approvers' decision (the approval completing it, or a denial).",
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        self.revoke_lag = Histogram(
            "breakglass_revoke_lag_seconds",
            "From a grant's expires_at to the revoke the backend confirmed (expiries only: an early revoke is not "
            "late).",
            buckets=REVOKE_LAG_BUCKETS,
            registry=self.registry,
        )
        self.revoke_failures = Counter(
            "breakglass_revoke_failures",
            "Revoke attempts that failed or could not be confirmed (each is retried with backoff).",
            ["resource"],
            registry=self.registry,
        )
        self.backend_calls = Histogram(
            "breakglass_backend_call_seconds",
            "Calls into backends by adapter, step (grant, revoke, verify, extend, holdings, watch, activity, "
            "unwatch) and outcome (ok, error, timeout: abandoned after BREAKGLASS_BACKEND_TIMEOUT).",
            ["adapter", "step", "outcome"],
            buckets=BACKEND_BUCKETS,
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "breakglass_slack_calls",
            "Slack Web API calls by method and outcome: ok, refused (Slack said no), ratelimited, server_error, "
            "timeout, unreachable. Counted once per call, after its retries.",
            ["method", "outcome"],
            registry=self.registry,
        )

    def watch(self, deps: Deps) -> None:
        """Report the database's gauges at each scrape."""
        self.registry.register(DatabaseGauges(deps))

    def page(self) -> tuple[bytes, str]:
        """The body and content type of a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- the port ------------------------------------------------------------------------------------------------

    @_never_raises
    def request_settled(self, resource: str, level: str | None, outcome: Settled, waited: timedelta | None) -> None:
        self.requests.labels(resource, level or "", outcome.value).inc()
        if waited is not None:
            self.decision.observe(max(waited.total_seconds(), 0.0))

    @_never_raises
    def revoked(self, resource: str, late_by: timedelta | None) -> None:
        if late_by is not None:  # a revoke that beat its expiry (the sweep looks ahead) was late by nothing
            self.revoke_lag.observe(max(late_by.total_seconds(), 0.0))

    @_never_raises
    def revoke_failed(self, resource: str) -> None:
        self.revoke_failures.labels(resource).inc()

    @_never_raises
    def backend_call(self, adapter: str, step: str, outcome: str, seconds: float) -> None:
        self.backend_calls.labels(adapter, step, outcome).observe(seconds)

    @_never_raises
    def slack_call(self, method: str, outcome: str) -> None:
        self.slack_calls.labels(method, outcome).inc()


class DatabaseGauges(Collector):
    """The gauges read from the database at each scrape, in one short read on a connection of its own."""

    def __init__(self, deps: Deps, within: float = ANSWER_WITHIN) -> None:
        self.deps = deps
        self.within = within

    def collect(self) -> Iterator[Metric]:
        now = self.deps.now()
        read: tuple[gauges.Gauges, dict[str, datetime]] | None = None
        try:
            read = call_within(self.within, self._read, now)
        except Overdue:  # abandoned on its daemon thread, which ends when its connection does
            database_outage.failed(log, "a metrics scrape", NoAnswer(f"no answer within {self.within:g}s"))
        except Exception as error:
            database_outage.failed(log, "a metrics scrape", error)
        else:
            database_outage.reachable()
        up = GaugeMetricFamily(
            "breakglass_database_up", "1 if the database answered this scrape's read in time; 0 and no gauges if not."
        )
        up.add_metric([], 1 if read is not None else 0)
        yield up
        if read is None:
            return
        found, drilled = read
        yield from self._families(found, drilled)

    def _read(self, now: datetime) -> tuple[gauges.Gauges, dict[str, datetime]]:
        remind_every = self.deps.policy.review.remind_every
        # A plain session, rolled back on close: a read needs no commit, and so no audit seal.
        with Session(self.deps.db.engine) as session:
            found = gauges.read(session, now - remind_every)
            drilled = _drill_successes(session)
        return found, drilled

    def _families(self, found: gauges.Gauges, drilled: dict[str, datetime]) -> Iterator[Metric]:
        holding = GaugeMetricFamily(
            "breakglass_grants_active",
            "Grants whose access may exist on the backend (granting, active, revoking, revoke_failed), by resource; "
            "0 for every resource in the policy that has none.",
            labels=["resource"],
        )
        # A resource taken out of the policy while access to it is still held must show, above all.
        for resource in sorted(set(self.deps.policy.resources) | set(found.holding)):
            holding.add_metric([resource], found.holding.get(resource, 0))
        yield holding
        yield GaugeMetricFamily("breakglass_pending_requests", "Requests waiting for a decision.", value=found.pending)
        yield GaugeMetricFamily(
            "breakglass_reviews_overdue",
            "Reviews whose holder's account is still missing after its first reminder (one review.remind_every "
            "after access ended).",
            value=found.reviews_overdue,
        )
        drills = GaugeMetricFamily(
            "breakglass_drill_last_success_timestamp",
            "When the last passed drill of each resource (as drilled: name or name:level) finished, in Unix seconds; "
            "only drills the policy in force names.",
            labels=["resource"],
        )
        scheduled = _drilled_labels(self.deps.policy)
        for label, when in sorted(drilled.items()):
            if label in scheduled:
                drills.add_metric([label], when.timestamp())
        yield drills


def _drilled_labels(policy: Policy) -> set[str]:
    """The labels the policy in force drills, as a drill records them. A drill it no longer names (its resource
    retired, its schedule dropped) would otherwise stay on the page forever, ever older, and keep the README's
    stale-drill alert firing with nothing left to drill."""
    from bot.services.drills import find

    labels = set()
    for drill in policy.drills:
        try:
            labels.add(find(policy, drill.resource, drill.level)[1].label)
        except Exception:  # checked when the policy loaded; one odd entry must not cost the others their series
            log.warning("metrics: cannot name the drill of %s", drill.resource)
    return labels


def _drill_successes(session: Session) -> dict[str, datetime]:
    """The drills' own query, where the drills change is installed; nothing where it is not (yet)."""
    try:
        from bot.store import drills  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return {}
    try:
        found: dict[str, datetime] = drills.last_successes(session)
    except Exception as error:  # an unmigrated table, say: the other gauges still stand
        log.warning("metrics: could not read the last drills (%s)", type(error).__name__)
        return {}
    return found
