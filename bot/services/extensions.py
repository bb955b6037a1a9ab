"""`/breakglass extend <id> <duration>`: more time on access that is active now.

An extension is a new approval, so another approver gives it; only the holder of an emergency grant may extend
their own, as they could break the glass again anyway. The whole grant stays within the resource's longest
duration. Where the backend ends access by itself (adapters that implement ``ExtendsExpiry``), its end moves too,
or the extension is undone: the bot and the backend never disagree about when access ends in the backend's favour.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.adapters.base import AdapterError, ExtendsExpiry, Receipt
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.rules import Refused, check_extender, check_extension
from bot.domain.states import Status
from bot.services.access import adapter_error, call_backend, scrubbed
from bot.services.common import existing, grant_context, refuse, view
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice
from bot.services.views import RequestView
from bot.store import audit, queries
from bot.store.models import Request


def extend(deps: Deps, actor: str, request_id: int, typed: str) -> RequestView:
    current = existing(deps, request_id)
    try:
        check_extender(
            actor=actor,
            holder=current.requester_id,
            is_approver=deps.is_approver(actor, current.resource),
            emergency=current.emergency,
            request_id=request_id,
        )
    except Refused as refusal:
        refuse(deps, actor, current, "extend_refused", str(refusal))
        raise
    resource = deps.policy.resource(current.resource)
    if resource is None:
        raise Refused(f"{current.resource} is no longer in the policy, so its access cannot be extended.")
    if current.status is not Status.ACTIVE or current.expires_at is None or current.granted_at is None:
        raise Refused(f"{outcome(current)} Only active access can be extended; nothing was done.")
    try:
        extra = parse_duration(typed)
    except DurationError as error:
        raise Refused(f"{error}. Say how much longer, e.g. `30m` or `1h`.") from None
    check_extension(granted_for=current.expires_at - current.granted_at, extra=extra, resource=resource)

    before, after = current.expires_at, current.expires_at + extra
    now = deps.now()
    with deps.db.transaction() as session:
        if not _move_expiry(session, request_id, before, after):
            raise Refused(f"Request #{request_id} changed just now; nothing was done. `/breakglass mine` shows it.")
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(
            session,
            "extended",
            at=now,
            actor=actor,
            request=request,
            by=format_duration(extra),
            expires_at=after.isoformat(),
            was=before.isoformat(),
        )
        ctx = grant_context(deps, request, after)
        receipt = Receipt(data=dict(request.receipt or {}), instructions=request.instructions)

    adapter = deps.adapters.get(current.resource)
    if isinstance(adapter, ExtendsExpiry):
        try:
            call_backend(deps, adapter.extend, ctx, receipt)
        except Exception as error:
            return _undo(deps, request_id, actor, before, after, scrubbed(deps, adapter_error(error)))

    deps.alarms.wake_at(after)
    deps.alarms.wake_at(after - deps.tuning.expiry_warning)
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        extended = view(deps, session, request)
    deps.notifier.refresh(extended)
    deps.notifier.tell_requester(extended, Notice.EXTENDED)
    if extended.emergency:  # glass broken longer: security hears it as loudly as the first time
        deps.notifier.tell_channel(deps.policy.channels.audit, extended, Notice.EXTENDED)
    return extended


def _move_expiry(session: Session, request_id: int, before: datetime, after: datetime) -> bool:
    """Only from the expiry we read: of two extensions at once, or an extension racing the revoke, one wins."""
    statement = (
        update(Request)
        .where(Request.id == request_id, Request.status == Status.ACTIVE.value, Request.expires_at == before)
        .values(expires_at=after, warned_at=None)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


def _undo(
    deps: Deps, request_id: int, actor: str, before: datetime, after: datetime, error: AdapterError
) -> RequestView:
    with deps.db.transaction() as session:
        _move_expiry(session, request_id, after, before)
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, "extend_failed", at=deps.now(), actor=actor, request=request, error=str(error))
    raise Refused(
        f"The backend could not extend request #{request_id} ({error}); access still ends when it did. "
        "Nothing else was changed."
    )
