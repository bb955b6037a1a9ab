"""The on-call schedule's part in a request: what may break the glass, who is approved at once, and who is paged.

``emergency: {when: incident}`` lets the glass be broken only during a real emergency: an incident open in the on-call
service (of the listed services, serious enough) or a command typed in an incident channel. An on-call service that
cannot answer never keeps the glass whole (an outage is when it is needed most): it breaks, and the alert and the
trail say the incident could not be checked. An on-call requester is approved at once only when the service says
they are on call now; no answer means the listed approvers decide, and the thread says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.domain.actions import AuditAction
from bot.domain.rules import Refused
from bot.oncall.base import Page
from bot.policy import Resource
from bot.services import tell
from bot.services.common import load_view
from bot.services.deps import Deps
from bot.services.oncall import Emergency
from bot.services.ports import Notice
from bot.store import audit, queries

log = logging.getLogger("breakglass.triggers")


def check(deps: Deps, actor: str, resource: Resource, in_incident: bool) -> Emergency | None:
    """Whether the glass on ``resource`` may be broken now; Forbidden (with how to ask instead) when it may not. None
    when the resource asks nothing more than being allowed to."""
    trigger = resource.emergency_trigger
    if trigger is None:
        return None
    if in_incident:
        return Emergency(True, channel=True)
    # Without an on-call service only incident channels can show an emergency.
    found = Emergency(False) if deps.oncall is None else deps.oncall.emergency(trigger)
    if found.allowed or found.unknown:
        return found
    wanted = "an open incident"
    if trigger.services:
        wanted += " of " + ", ".join(f"`{s}`" for s in trigger.services)
    if trigger.urgency == "high":
        wanted += " of high urgency"
    if trigger.priority:
        wanted += f" of priority {trigger.priority} or higher"
    where = " or a command typed in an incident channel" if deps.policy.channels.incidents is not None else ""
    why = (
        f"The glass on {resource.label} may be broken only during an emergency: {wanted}{where}. None was found, so "
        f"the glass stays whole. Ask normally instead: `/breakglass {resource.label} <duration> <reason>`; its "
        "approvers are called on at once."
    )
    with deps.db.transaction() as session:  # not an attempt on something forbidden, but the trail has it
        audit.record(
            session, AuditAction.REQUEST_REFUSED, at=deps.now(), actor=actor, resource=resource.name, reason=why
        )
    raise Refused(why)


def said(found: Emergency | None) -> dict[str, Any]:
    """What the trail records of why the glass could be broken."""
    if found is None:
        return {}
    if found.channel:
        return {"trigger": "incident_channel"}
    if found.incident is not None:
        return {"trigger": "incident", "incident": found.incident.id, "incident_url": found.incident.url}
    return {"trigger": "unverified", "why": found.unknown}


@dataclass(frozen=True)
class OnCallNow:
    """Who is on call for a resource's schedule, as asked when the request is made."""

    schedule: str | None = None
    people: frozenset[str] = frozenset()
    auto: bool = False
    unknown: str | None = None  # the service could not say

    def auto_approves(self, actor: str) -> bool:
        return self.auto and actor in self.people

    def said(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "on_call": sorted(self.people)}


def on_call(deps: Deps, resource: Resource) -> OnCallNow:
    rule = resource.oncall
    if rule is None or deps.oncall is None or not (rule.may_approve or rule.auto_approve):
        return OnCallNow()
    people = deps.oncall.on_call_or_why(rule.schedule)
    if isinstance(people, str):
        return OnCallNow(rule.schedule, unknown=people)
    return OnCallNow(rule.schedule, people, rule.auto_approve)


def page(deps: Deps, resource: Resource, request_id: int) -> bool:
    """Breaking the glass pages the schedule's on-call (``page_on_emergency``); the page, or why there is none, is in
    the trail and in the alert's thread, shown in the audit channel. False when there was nobody to page (and so
    nothing owed)."""
    rule = resource.oncall
    if rule is None or not rule.page_on_emergency or deps.oncall is None:
        return False
    current = load_view(deps, request_id)
    if current is None:
        return False
    summary = f"Break-glass: {current.requester_name or current.requester_id} on {current.label}: {current.reason}"
    details = {"request": str(current.id), "resource": current.label, "requester": current.requester_id}
    sent = deps.oncall.page(rule.schedule, deps.redactor.scrub(summary), f"breakglass-{current.uid}", details)
    note: dict[str, Any] = {"schedule": rule.schedule}
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        if isinstance(sent, Page):
            note.update(key=sent.key, url=sent.url)
            audit.record(
                session,
                AuditAction.PAGED,
                at=deps.now(),
                request=request,
                schedule=rule.schedule,
                key=sent.key,
                url=sent.url,
            )
        else:
            note["failed"] = sent
            audit.record(
                session, AuditAction.PAGE_FAILED, at=deps.now(), request=request, schedule=rule.schedule, why=sent
            )
        tell.thread(deps, session, current, Notice.PAGED, note, on_alert=True)
    return True
