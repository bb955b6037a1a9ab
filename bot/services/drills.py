"""Drills: the emergency path run for real, on a schedule or on demand, so a broken path is found before an incident.

A drill stores an emergency request for the policy's drill principal (``drills:``), marked ``drill``, and takes the
same path a person's broken glass takes: ``pending -> approved -> granting`` in one transaction with its alert owed,
the grant through the claim path (``access.finish_grant``), then the normal revoke (``claims.claim_revoke`` and
``revoking.finish_revoke``, which ``revoke_confirmed`` checks with the backend). Around those it asks the backend
itself, through ``Verifies``, that the access existed and then that it is gone, and it looks at the outbox for the
alert. A drill that cannot ask the backend does not pass: it says "cannot verify".

A drill never leaves access behind: whatever step fails, the revoke is claimed in the end unless the request already
ended; a revoke that fails stays ``revoke_failed`` and is retried by the sweep like any other, and alerted. A drill's
request owes no review, its audit events carry ``drill: true``, and it tells no person: its one report goes to the
audit channel, calling on ``review.reviewers`` when it failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.adapters import principal
from bot.adapters.base import Adapter, Receipt, Verifies
from bot.domain.actions import AuditAction
from bot.domain.live import live_key, scope
from bot.domain.rules import Forbidden, Refused
from bot.domain.states import FINAL, Status
from bot.policy import Policy, Resource
from bot.policy.drills import Drill
from bot.services import access, claims, guard, revoking, tell
from bot.services.backend import call_backend
from bot.services.common import grant_context, view
from bot.services.deps import Deps
from bot.store import audit, drills, queries
from bot.store.models import OutboxMessage, Request
from bot.store.outbox import Kind, Outcome, owe

log = logging.getLogger("breakglass.drills")

HOLD = timedelta(minutes=10)  # how long a drill's grant lasts at most: if the drill dies, expiry ends it soon
REQUESTER_NAME = "Breakglass drill"


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    CLI = "cli"
    SLACK = "slack"


@dataclass(frozen=True)
class StepResult:
    name: str  # grant, verify, revoke, verify_gone, alerts
    seconds: float  # measured with a monotonic timer
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    label: str
    trigger: Trigger
    actor: str
    principal: str
    started_at: datetime
    finished_at: datetime | None = None
    request_id: int | None = None
    run_id: int | None = None
    steps: list[StepResult] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)  # called on when it failed: review.reviewers

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    def to_data(self) -> dict[str, Any]:
        """Plain JSON: the report owed to the audit channel."""
        return {
            "label": self.label,
            "trigger": self.trigger.value,
            "actor": self.actor,
            "principal": self.principal,
            "request_id": self.request_id,
            "run_id": self.run_id,
            "passed": self.passed,
            "seconds": round(self.seconds, 6),
            "steps": [asdict(step) for step in self.steps],
            "mentions": self.mentions if not self.passed else [],
        }


@dataclass(frozen=True)
class _MadeUnder:
    """What ``Deps.adapter_for`` needs to find a drill's adapter in the policy version it runs under."""

    resource: str
    level: str | None
    policy_version: str | None


def find(
    policy: Policy, resource: str, level: str | None = None, may: Callable[[Drill], bool] | None = None
) -> tuple[Drill, Resource]:
    """The policy's drill of ``resource`` (at ``level``, or its only or first-level drill) and the resource as it is
    drilled; Refused, saying what can be drilled, when there is none. ``may``: the drills the asker may run, the only
    ones a refusal lists; Forbidden, listing nothing, when they may run none (a stranger learns no names)."""
    base = policy.resources.get(resource)
    mine = [] if base is None else [d for d in policy.drills if d.resource == resource]
    if base is not None and mine:
        first = base.level_names[0] if base.level_names else None
        if level is not None:
            mine = [d for d in mine if (d.level or first) == level]
        elif len(mine) > 1:
            mine = [d for d in mine if (d.level or first) == first] or mine[:1]
    if base is None or not mine:
        shown = [d for d in policy.drills if may is None or may(d)]
        if may is not None and not shown:
            raise Forbidden(f"There is no drill of '{resource}' that you may run; nothing was done.")
        drilled = ", ".join(sorted({d.resource for d in shown})) or "none"
        if base is None:
            raise Refused(f"There is no resource '{resource}' in the policy. Drilled resources: {drilled}.")
        at = f" at level {level}" if level else ""
        raise Refused(f"The policy's `drills:` has no drill of {resource}{at}. Drilled resources: {drilled}.")
    drill = mine[0]
    viewed = policy.resource(resource, drill.level)
    assert viewed is not None, "drills are checked against the resources when the policy loads"
    return drill, viewed


def from_slack(deps: Deps, actor: str, resource: str, level: str | None) -> DrillResult:
    """`/breakglass drill`: only an approver of the resource (at the drilled level) may run its drill; anyone else is
    refused, and the attempt counted like other refusals.

    The check asks Slack (group membership), and a reload may land meanwhile: the drill then runs only if the policy
    it was checked against is still the one in force, and runs under exactly that policy."""
    for _ in range(3):
        policy = deps.policy  # read once: the check and the drill must be of one policy

        def approves(drill: Drill, policy: Policy = policy) -> bool:
            return _approves(deps, policy, actor, drill.resource, drill.level)

        try:
            chosen, drilled = find(policy, resource, level, may=approves)
            allowed = approves(chosen)
        except Forbidden as refusal:
            guard.refused(deps, actor, AuditAction.DRILL_REFUSED, str(refusal), resource=resource)
            raise
        if deps.policy is not policy:  # reloaded while Slack answered: check again under the policy now in force
            continue
        if not allowed:
            why = f"Only an approver of {drilled.label} may run its drill; nothing was done."
            guard.refused(deps, actor, AuditAction.DRILL_REFUSED, why, resource=drilled.name)
            raise Forbidden(why)
        return run_drill(deps, drilled.name, drilled.level, Trigger.SLACK, actor, policy=policy)
    raise Refused("The policy was being reloaded while your drill was checked; nothing was done. Try again.")


def _approves(deps: Deps, policy: Policy, actor: str, resource: str, level: str | None) -> bool:
    """``Deps.is_approver``, asked of a given policy rather than of the one in force at the moment of asking."""
    viewed = policy.resource(resource, level)
    return viewed is not None and deps.is_listed(actor, viewed.approvers)


def run_drill(
    deps: Deps, resource: str, level: str | None, trigger: Trigger, actor: str, policy: Policy | None = None
) -> DrillResult:
    """Run the drill of ``resource`` now, record it, and owe its report to the audit channel. Refused (nothing done)
    when there is no such drill, its adapter is missing, or the drill principal holds access right now.

    ``policy``: the one who may run it was checked against (the policy in force when None). The drill's request
    records its version, so its grant and its revoke reach the same backend whatever a reload does meanwhile."""
    policy = deps.policy if policy is None else policy
    drill, drilled = find(policy, resource, level)
    adapter = deps.adapter_for(_MadeUnder(drilled.name, drilled.level, deps.version_of(policy)))
    if adapter is None:
        raise Refused(f"{drilled.label} has no adapter configured; nothing was done.")
    if problem := principal.problem(adapter, drill.principal):
        raise Refused(f"The drill principal of {drilled.label} cannot be used: {problem}. Nothing was done.")
    result = DrillResult(drilled.label, trigger, actor, drill.principal, deps.now())
    result.mentions = list(policy.review.reviewers)
    try:
        result.request_id = _store(deps, drilled, drill, trigger, actor, policy)
        _steps(deps, adapter, result)
    finally:
        if result.request_id is not None:
            _never_leave_access(deps, result.request_id, actor)
    result.finished_at = deps.now()
    _record(deps, drilled, result)
    log.log(logging.INFO if result.passed else logging.ERROR, "drill of %s %s", result.label, _said(result))
    return result


def _said(result: DrillResult) -> str:
    if result.passed:
        return "passed"
    return "failed: " + ", ".join(f"{s.name} ({s.detail})" for s in result.steps if not s.ok)


def _store(
    deps: Deps, resource: Resource, drill: Drill, trigger: Trigger, actor: str, policy: Policy | None = None
) -> int:
    """Store the drill's emergency request, approved and claimed for its grant, its alert owed: what ``submit`` does
    for broken glass, for a principal that is the policy's, not a person's. It records the version of ``policy`` (the
    one in force when None), as ``submit`` does: a revoke must go where the grant went, whatever a reload moved."""
    policy = deps.policy if policy is None else policy
    now = deps.now()
    low, _, high = resource.limits
    hold = max(low, min(high, HOLD))
    key = live_key(scope(policy, resource.name), drill.principal)
    reason = f"Drill of {resource.label} ({trigger.value}): grant, verify, revoke, verify gone; not an incident"
    try:
        with deps.db.transaction() as session:
            request = Request(
                uid=str(uuid.uuid4()),
                resource=resource.name,
                requester_id=actor[:32],
                requester_name=f"{REQUESTER_NAME} ({trigger.value})",
                principal=drill.principal,
                level=resource.level,
                reason=reason,
                duration_seconds=int(hold.total_seconds()),
                emergency=True,
                drill=True,
                status=Status.PENDING.value,
                created_at=now,
                revoke_attempts=0,
                live_key=key,
                policy_version=deps.version_of(policy),
            )
            session.add(request)
            session.flush()  # the principal holds access now (another drill, or a grant): IntegrityError
            audit.record(
                session, AuditAction.REQUESTED, at=now, actor=actor, request=request, emergency=True, trigger=trigger
            )
            queries.move(session, request.id, Status.PENDING, Status.APPROVED, decided_at=now)
            audit.record(session, AuditAction.EMERGENCY, at=now, actor=actor, request=request)
            approved = queries.get(session, request.id)
            assert approved is not None
            claims.claim(deps, session, approved, now)
            tell.alert(deps, session, view(deps, session, approved))
            return request.id
    except IntegrityError:
        raise Refused(
            f"{drill.principal} holds access to {resource.name} right now (another drill, or a grant): "
            "nothing was done; try again once it has ended."
        ) from None


def _timed(deps: Deps, result: DrillResult, name: str, step: Callable[[], tuple[bool, str]]) -> bool:
    started = time.monotonic()
    try:
        ok, detail = step()
    except Exception as error:  # a step that raises failed; the drill goes on to take the access back
        ok, detail = False, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    # A backend's words may quote a secret: they are stored, audited and posted.
    result.steps.append(StepResult(name, time.monotonic() - started, ok, deps.redactor.scrub(detail)))
    return ok


def _steps(deps: Deps, adapter: Adapter, result: DrillResult) -> None:
    request_id = result.request_id
    assert request_id is not None

    def grant() -> tuple[bool, str]:
        current = access.finish_grant(deps, request_id)
        status = current.status if current else _status(deps, request_id)
        if status is Status.ACTIVE:
            return True, ""
        return False, f"{status.value}: {_failure(deps, request_id)}"

    if not _timed(deps, result, "grant", grant):
        _timed(deps, result, "alerts", lambda: _alerts(deps, request_id))
        return
    deps.courier.deliver(request_id)  # the alert, now that access exists, as broken glass sends it
    _timed(deps, result, "verify", lambda: _verify(deps, adapter, request_id, expect=True))

    def revoke() -> tuple[bool, str]:
        actor = result.actor[:32]
        if not claims.claim_revoke(deps, request_id, end_reason="revoked", actor=actor):
            return False, f"could not claim the revoke ({_status(deps, request_id).value})"
        current = revoking.finish_revoke(deps, request_id)
        status = current.status if current else _status(deps, request_id)
        if status is Status.REVOKED:
            return True, ""
        return False, f"{status.value}: {_failure(deps, request_id)}"

    _timed(deps, result, "revoke", revoke)
    _timed(deps, result, "verify_gone", lambda: _verify(deps, adapter, request_id, expect=False))
    _timed(deps, result, "alerts", lambda: _alerts(deps, request_id))


def _context(deps: Deps, request_id: int) -> tuple[Any, Receipt]:
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None and request.expires_at is not None
        ctx = grant_context(deps, request, request.expires_at)
        return ctx, Receipt(data=dict(request.receipt or {}), instructions=request.instructions)


def _verify(deps: Deps, adapter: Adapter, request_id: int, *, expect: bool) -> tuple[bool, str]:
    if not isinstance(adapter, Verifies):
        return False, "cannot verify: this adapter cannot be asked whether access exists"
    ctx, receipt = _context(deps, request_id)
    has = call_backend(deps, adapter.verify, ctx, receipt)
    if has is expect:
        return True, ""
    return False, f"{ctx.principal} {'does not have' if expect else 'still has'} access, the backend says"


def _alerts(deps: Deps, request_id: int) -> tuple[bool, str]:
    """The emergency alert to the audit channel: owed, and not refused by Slack (sent, or still queued where Slack was
    not tried yet, such as a CLI run while Slack is away)."""
    with deps.db.transaction() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.request_id == request_id, OutboxMessage.kind == Kind.ALERT.value)
        ).all()
    alert = next((row for row in rows if row.channel == deps.policy.channels.audit), None)
    if alert is None:
        return False, "no alert to the audit channel was owed"
    if alert.outcome in (Outcome.SENT.value, Outcome.FOUND.value):
        return True, "sent to the audit channel"
    if alert.done_at is not None:
        return False, f"Slack did not take the alert: {alert.outcome} ({alert.failure or 'no details'})"
    if alert.attempts:
        return False, f"the alert is not sent yet after {alert.attempts} attempts: {alert.failure or 'no details'}"
    return True, "queued for the audit channel (Slack not tried yet)"


def _status(deps: Deps, request_id: int) -> Status:
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        return Status(request.status)


def _failure(deps: Deps, request_id: int) -> str:
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        return (request.failure if request else None) or "no details"


def _never_leave_access(deps: Deps, request_id: int, actor: str) -> None:
    """Whatever failed, end the drill's access now if it has not ended; never raises (the report must still go)."""
    try:
        status = _status(deps, request_id)
        if status in FINAL or status is Status.REVOKE_FAILED:  # revoke_failed: the sweep retries it, and alerts
            return
        if claims.claim_revoke(deps, request_id, end_reason="revoked", actor=actor[:32]):
            revoking.finish_revoke(deps, request_id)
    except Exception:
        log.exception("drill request %s: could not end its access; the sweep will at its expiry", request_id)


def _record(deps: Deps, resource: Resource, result: DrillResult) -> None:
    """The run, its audit event and its one report to the audit channel, in one transaction."""
    assert result.finished_at is not None
    steps = [asdict(step) for step in result.steps]
    with deps.db.transaction() as session:
        run = drills.record(
            session,
            resource=resource.name,
            level=resource.level,
            label=resource.label,
            started_at=result.started_at,
            finished_at=result.finished_at,
            passed=result.passed,
            steps=steps,
            trigger=result.trigger.value,
            actor=result.actor,
            request_id=result.request_id,
        )
        result.run_id = run.id
        request = queries.get(session, result.request_id) if result.request_id is not None else None
        audit.record(
            session,
            AuditAction.DRILL_PASSED if result.passed else AuditAction.DRILL_FAILED,
            at=result.finished_at,
            actor=result.actor[:64],
            request=request,
            resource=resource.name,
            drill=True,
            run=run.id,
            trigger=result.trigger.value,
            steps=steps,
        )
        owe(
            session,
            deps.now(),
            Kind.DRILL,
            request_id=result.request_id,
            channel=deps.policy.channels.audit,
            payload=result.to_data(),
        )
    deps.courier.deliver(result.request_id)
