"""Small pieces the use cases share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from bot.adapters import principal
from bot.adapters.base import GrantContext, Person
from bot.domain.actions import AuditAction
from bot.domain.approvals import standing
from bot.domain.rules import Refused, plainly_requester
from bot.domain.states import Status
from bot.policy import Resource
from bot.services import guard
from bot.services.approvers import asking, casts
from bot.services.deps import Deps
from bot.services.snapshots import Approval, RequestView, StepView, snapshot
from bot.store import queries
from bot.store.models import Decision, Request


def view(deps: Deps, session: Session, request: Request, *, new: bool = False) -> RequestView:
    """The request as it stands. ``new``: created in this transaction, so nothing is decided or reviewed yet and
    neither is looked for (nor are the transaction's pending writes flushed early to answer)."""
    resource = deps.resource(request.resource, request.level)
    lesser: tuple[str, ...] = ()
    if resource is not None and request.level is not None:  # what the requester could have asked for instead
        base = deps.policy.resources[request.resource]
        lesser = tuple(
            lv for lv in resource.lesser() if plainly_requester(request.requester_id, base.at(lv)) is not False
        )
    # Read once: the steps and the list of decisions both show them.
    decided = () if new else queries.decisions(session, request.id)
    return snapshot(
        session,
        request,
        deps.approvals_required(request.resource, request.level),
        lesser,
        approval_of(deps, session, request, resource, decided),
        decided,
        unreviewed=new,
    )


def approval_of(
    deps: Deps, session: Session, request: Request, resource: Resource | None, decided: Sequence[Decision] | None = None
) -> Approval:
    """The approval steps as they stand for the round in question: the request's own while it waits or once decided,
    an extension's while one waits. Counted as recorded (no lookups): a snapshot is rendered, not decided on."""
    mention = deps.policy.channels.audit_mention
    audit_mentions = (mention,) if mention else tuple(deps.policy.review.reviewers)
    if request.drill:  # a drill's alert is posted, and calls on nobody: only a failed drill's report does
        audit_mentions = ()
    if resource is None:
        return Approval(audit_mentions=audit_mentions)
    round = request.extension_round if request.extension_seconds is not None else 0
    now = standing(resource.steps, casts(queries.decisions(session, request.id) if decided is None else decided, round))
    steps = tuple(StepView(s.name, s.required, now.approved[i]) for i, s in enumerate(resource.steps))
    waiting = request.status == Status.PENDING.value or (
        request.status == Status.ACTIVE.value and request.extension_seconds is not None
    )
    return Approval(
        steps=steps,
        waiting_step=now.waiting if waiting else None,
        asking=asking(resource, request, now) if waiting else (),
        audit_mentions=audit_mentions,
    )


def load_view(deps: Deps, request_id: int) -> RequestView | None:
    with deps.db.transaction() as session:
        return read_view(deps, session, request_id)


def read_view(deps: Deps, session: Session, request_id: int) -> RequestView | None:
    """``load_view`` in a transaction the caller already has."""
    request = queries.get(session, request_id)
    return view(deps, session, request) if request else None


def existing(deps: Deps, request_id: int) -> RequestView:
    found = load_view(deps, request_id)
    if found is None:
        raise Refused(f"There is no request #{request_id}; nothing was done. `/breakglass mine` lists yours.")
    return found


def grant_context(deps: Deps, request: Request, expires_at: datetime) -> GrantContext:
    person = Person(request.requester_id, request.requester_email, request.requester_name)
    return GrantContext(
        grant_id=request.uid,
        request_number=request.id,
        resource=request.resource,
        user=person,
        principal=request.principal or _unstored_principal(deps, request.resource, person),
        expires_at=expires_at,
        reason=request.reason,
        emergency=request.emergency,
        level=request.level,
    )


def principal_for(deps: Deps, resource: Resource, person: Person) -> str:
    """The person's identity on the resource's backend; Unmappable says why there is none."""
    adapter = deps.adapter(resource.name, resource.level)
    return principal.for_resource(person, resource.name, resource.principal, resource.users, adapter)


def _unstored_principal(deps: Deps, resource_name: str, person: Person) -> str:
    # Requests made before principals were stored: map them now, as the revoke of such a grant must still go out.
    resource = deps.policy.resource(resource_name)
    if resource is None:
        return person.slack_id
    try:
        return principal_for(deps, resource, person)
    except principal.Unmappable:
        return person.slack_id


def same_identity(deps: Deps, actor: str, current: RequestView) -> bool:
    """Whether ``actor`` (not the requester) maps to the same backend identity as the requester on the request's
    resource: two Slack accounts mapped to one login are one person to the backend, so the second may neither decide
    on the first's request nor sign off its review. Asked only when the answer matters (a lookup of the actor)."""
    if actor == current.requester_id or current.principal is None:
        return False
    resource = deps.resource(current.resource, current.level)
    if resource is None:
        return False
    try:
        return principal_for(deps, resource, deps.directory.person(actor)) == current.principal
    except principal.Unmappable:
        return False


def twin_decided(deps: Deps, actor: str, resource: Resource, deciders: Iterable[str]) -> str | None:
    """The backend identity ``actor`` shares with another account among ``deciders`` on ``resource``, if any: two
    Slack accounts mapped to one login are one person, who decides once per round, so they never fill two places of
    a two-person rule or two steps. None when nobody else decided or an identity cannot be mapped."""
    others = [other for other in dict.fromkeys(deciders) if other != actor]
    if not others:
        return None
    try:
        mine = principal_for(deps, resource, deps.directory.person(actor))
    except principal.Unmappable:
        return None
    for other in others:
        try:
            if principal_for(deps, resource, deps.directory.person(other)) == mine:
                return mine
        except principal.Unmappable:
            continue
    return None


def approver_unless_holder(deps: Deps, actor: str, current: RequestView) -> bool:
    """Whether ``actor`` is an approver of the request's resource, asked only of someone other than its requester:
    what the holder may do to their own request never depends on a group lookup, so it still works while Slack
    cannot list a group."""
    return actor != current.requester_id and deps.is_approver(actor, current.resource, current.level)


def refuse(deps: Deps, actor: str, current: RequestView, action: AuditAction, why: str) -> None:
    """Refused attempts are part of the trail too, and counted: see guard.refused."""
    guard.refused(deps, actor, action, why, request_id=current.id, resource=current.resource)


def refuse_outsider(
    deps: Deps, actor: str, current: RequestView, is_approver: bool, action: AuditAction, why: str
) -> None:
    """Count a refusal only when it is an attempt on someone else's request: the holder or an approver asking at the
    wrong moment is not probing."""
    if actor != current.requester_id and not is_approver:
        refuse(deps, actor, current, action, why)
