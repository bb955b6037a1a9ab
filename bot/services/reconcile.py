"""Reconciliation: access a backend holds that no live grant covers is taken back, and the audit channel hears of it.

Every ``BREAKGLASS_RECONCILE_EVERY`` one replica (``store/schedules.py``) compares each resource's backend with the
bot's records. An adapter that ``Lists`` says who holds the resource's access: by default only what it can tell the
bot made (temporary logins, labelled bindings, tagged policies), or, with the resource's ``reconcile: all``, every
holder of its role or group. An adapter that only ``Verifies`` (command, webhook) is asked about each principal the
bot granted the resource to in the last 30 days. A holding whose principal has no live grant of the resource (live:
pending, approved, granting, active, revoking, revoke_failed) is revoked, the revoke verified where it can be, and
the find audited (``reconcile_revoked``) and announced. ``reconcile: off`` leaves a resource alone.

The race that matters: a holding is found, and meanwhile a new grant for the same principal becomes live and its
backend grant lands before our revoke. So live grants are read again right before each revoke (one appeared: the
holding is now covered, nothing is done) and right after it (one appeared meanwhile: our revoke may have removed
what it granted, so its grant is applied again, idempotently, under its own grant id, and audited as
``reconcile_regranted``). A grant that becomes live after the revoke returned is granted after it, and keeps its
access.

A failure on one resource (a backend that cannot be listed or asked) is logged and audited once per run as
``reconcile_failed`` and never stops the others.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.adapters.base import Adapter, AdapterError, GrantContext, Holding, Lists, Person, Receipt, Verifies
from bot.domain.actions import AuditAction
from bot.domain.live import twins
from bot.domain.states import Status
from bot.policy import Resource
from bot.services import tell
from bot.services.backend import adapter_error, call_backend, revoke_confirmed, scrubbed
from bot.services.common import grant_context, view
from bot.services.deps import Deps
from bot.store import audit, holders, schedules
from bot.store.models import Request

log = logging.getLogger("breakglass.reconcile")

SCHEDULE = "reconcile"
# Re-applied after our revoke if one of these appeared meanwhile: their backend grant may be what we just removed.
# Pending and approved grants have not reached the backend yet, so they grant after us anyway.
GRANTED = (Status.GRANTING, Status.ACTIVE)


@dataclass(frozen=True)
class Find:
    """Access found on a backend that no live grant covers."""

    resource: str
    principal: str
    found: str  # what it is, for people: "a temporary login the bot made", "access from request #12"
    data: dict[str, Any] = field(default_factory=dict)  # what the backend listed (plain JSON, no secrets)


@dataclass
class ReconcileReport:
    """What one run did."""

    resources: int = 0  # resources looked at
    holdings: int = 0  # holdings found (or principals found still holding access)
    revoked: list[Find] = field(default_factory=list)
    found: list[Find] = field(default_factory=list)  # reported, left alone: verify-only backends without `all`
    regranted: list[int] = field(default_factory=list)  # request ids whose grant was applied again
    failed: list[str] = field(default_factory=list)  # resources whose backend could not be read or fixed
    unchecked: list[str] = field(default_factory=list)  # adapters that can neither list nor verify

    def fail(self, resource: str) -> None:
        if resource not in self.failed:
            self.failed.append(resource)


class Reconciler:
    """The scheduler's job: every replica calls ``tick`` often, and one of them runs per period."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def tick(self) -> ReconcileReport | None:
        deps = self.deps
        now = deps.now()
        if not schedules.take_turn(deps.db, SCHEDULE, now, deps.tuning.reconcile_every, deps.tuning.instance):
            return None
        report = reconcile(deps)
        if report.revoked or report.failed or report.regranted:
            log.warning(
                "reconcile: %s taken back, %s re-granted, %s resources failed (%s)",
                len(report.revoked),
                len(report.regranted),
                len(report.failed),
                ", ".join(report.failed) or "none",
            )
        return report


def reconcile(deps: Deps) -> ReconcileReport:
    """One run over every resource, now."""
    report = ReconcileReport()
    # Each level is its own configured adapter; a live grant of any level of a resource covers its principal there,
    # since a principal holds one level of a resource at a time (bot/domain/live.py).
    for resource in deps.policy.grantables():
        name = resource.label
        if resource.reconcile == "off":
            continue
        adapter = deps.adapters.get(name)
        if adapter is None:
            continue
        if not isinstance(adapter, Lists | Verifies):
            # Said once per run in the log; the README lists which adapters can be reconciled.
            log.info("reconcile: %s (adapter %s) can neither list nor verify; not reconciled", name, resource.adapter)
            report.unchecked.append(name)
            continue
        report.resources += 1
        try:
            if isinstance(adapter, Lists):
                _by_listing(deps, resource, adapter, report)
            else:
                _by_asking(deps, resource, adapter, report)
        except Exception as raised:  # one resource's trouble never stops the others
            _failed(deps, name, scrubbed(deps, adapter_error(raised)))
            report.fail(name)
    return report


def _by_listing(deps: Deps, resource: Resource, adapter: Adapter, report: ReconcileReport) -> None:
    assert isinstance(adapter, Lists)
    everything = resource.reconcile == "all"
    found: list[Holding] = call_backend(deps, adapter.holdings, everything)
    if not everything:
        found = [holding for holding in found if holding.made_by_bot]  # standing access is never ours to take
    report.holdings += len(found)
    with deps.db.transaction() as session:
        live = holders.live_principals(session, twins(deps.policy, resource.name))
    for holding in found:
        if holding.principal in live:
            continue
        what = "access the bot made" if holding.made_by_bot else "standing access (reconcile: all)"
        data = deps.redactor.scrub_data(holding.data)
        find = Find(resource.name, holding.principal, what, data)
        ctx = _stranger(deps, resource, holding.principal)
        _take_back(deps, adapter, find, ctx, Receipt(data=dict(holding.data)), report, ask_first=True)


def _by_asking(deps: Deps, resource: Resource, adapter: Adapter, report: ReconcileReport) -> None:
    assert isinstance(adapter, Verifies)
    since = deps.now() - deps.tuning.reconcile_lookback
    with deps.db.transaction() as session:
        live = holders.live_principals(session, twins(deps.policy, resource.name))
        grants = holders.ended_grants(session, resource.name, since)
        ended = [r for r in grants if r.principal not in live and r.level == resource.level]
        asks = [(r.id, grant_context(deps, r, r.expires_at or r.ended_at or deps.now()), _receipt(r)) for r in ended]
    for request_id, ctx, receipt in asks:
        if call_backend(deps, adapter.verify, ctx, receipt) is not True:
            continue  # gone; an error here is raised, and counts for the whole resource
        report.holdings += 1
        find = Find(resource.name, ctx.principal, f"access from ended request #{request_id}")
        if resource.reconcile == "all":
            _take_back(deps, adapter, find, ctx, receipt, report)
        else:
            _report_only(deps, find, request_id, report)


def _report_only(deps: Deps, find: Find, request_id: int, report: ReconcileReport) -> None:
    """A backend that can only be asked cannot tell access the bot made from the same access given by hand since (a
    standing membership added the next day): it is standing access until the resource says ``reconcile: all``, so
    it is reported, once per ended request, and left alone."""
    with deps.db.transaction() as session:
        if holders.reported(session, request_id):
            return
        audit.record(
            session,
            AuditAction.RECONCILE_FOUND,
            at=deps.now(),
            request_id=request_id,
            resource=find.resource,
            principal=find.principal,
            found=find.found,
        )
        tell.reconciled(deps, session, find.resource, find.principal, find.found, taken=False)
    deps.courier.deliver(None)
    report.found.append(find)


def _take_back(
    deps: Deps,
    adapter: Adapter,
    find: Find,
    ctx: GrantContext,
    receipt: Receipt,
    report: ReconcileReport,
    *,
    ask_first: bool = False,
) -> None:
    if _live_grants(deps, find):
        return  # a grant became live since the listing: the holding is covered now
    try:
        # A listing is a moment ago: the bot's own revoke of a grant that just ended may have finished since, and
        # taking that back again would announce a find that is none.
        if ask_first and isinstance(adapter, Verifies) and call_backend(deps, adapter.verify, ctx, receipt) is False:
            return
        revoke_confirmed(deps, adapter, ctx, receipt)
    except Exception as raised:
        error = scrubbed(deps, adapter_error(raised))
        _failed(deps, find.resource, error, principal=find.principal)
        report.fail(find.resource)
        return
    now = deps.now()
    with deps.db.transaction() as session:
        audit.record(
            session,
            AuditAction.RECONCILE_REVOKED,
            at=now,
            resource=find.resource,
            principal=find.principal,
            found=find.found,
            holding=find.data or None,
        )
        tell.reconciled(deps, session, find.resource, find.principal, find.found)
    deps.courier.deliver(None)
    report.revoked.append(find)
    for request in _live_grants(deps, find):
        if Status(request.status) in GRANTED:
            _regrant(deps, adapter, request, report)


def _regrant(deps: Deps, adapter: Adapter, request: Request, report: ReconcileReport) -> None:
    """Apply again a grant that became live while we revoked: our revoke may have taken what it gave."""
    assert request.expires_at is not None, "a granting or active request has its expiry fixed"
    ctx = grant_context(deps, request, request.expires_at)
    try:
        again = call_backend(deps, adapter.grant, ctx)
    except Exception as raised:
        error = scrubbed(deps, adapter_error(raised))
        log.error("reconcile: re-granting request %s failed: %s", request.id, error)
        _failed(deps, request.resource, error, principal=ctx.principal, request_id=request.id)
        report.fail(request.resource)
        return
    with deps.db.transaction() as session:
        audit.record(session, AuditAction.RECONCILE_REGRANTED, at=deps.now(), request=request, principal=ctx.principal)
        current = view(deps, session, request)
    report.regranted.append(request.id)
    if again.credentials:  # a temporary login made anew has a new password; the old one no longer works
        deps.notifier.send_credentials(current, again.credentials)


def _live_grants(deps: Deps, find: Find) -> list[Request]:
    with deps.db.transaction() as session:
        return list(holders.live_grants(session, twins(deps.policy, find.resource), find.principal))


def _stranger(deps: Deps, resource: Resource, principal: str) -> GrantContext:
    """The context of a revoke for a holding no request of ours stands behind: a grant id of its own, and the
    holding's data as the receipt (enough to end it, by the ``Lists`` contract)."""
    return GrantContext(
        grant_id=f"reconcile-{uuid.uuid4()}",
        request_number=0,
        resource=resource.name,
        level=resource.level,
        user=Person(slack_id=""),
        expires_at=deps.now(),
        principal=principal,
        reason="reconciliation: access no live grant covers",
    )


def _receipt(request: Request) -> Receipt:
    return Receipt(data=dict(request.receipt or {}), instructions=request.instructions)


def _failed(deps: Deps, resource: str, error: AdapterError, **detail: Any) -> None:
    log.warning("reconcile: %s: %s", resource, error)
    with deps.db.transaction() as session:
        audit.record(
            session, AuditAction.RECONCILE_FAILED, at=deps.now(), resource=resource, error=str(error), **detail
        )


def next_run(deps: Deps) -> datetime | None:
    return schedules.next_run(deps.db, SCHEDULE)
