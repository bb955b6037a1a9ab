"""`/breakglass extend <id> <duration>`: more time on access that is active now.

An extension is a new approval, so another approver gives it; only the holder of an emergency grant may extend
their own, as they could break the glass again anyway. The whole grant stays within the resource's longest
duration. Where the backend ends access by itself (adapters that implement ``ExtendsExpiry``), its end moves too,
or the extension is undone: the bot and the backend never disagree about when access ends in the backend's favour.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.adapters.base import AdapterError, ExtendsExpiry, Receipt
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.rules import Refused, check_extender, check_extension, check_still_requester
from bot.domain.states import Status
from bot.services.access import adapter_error, call_backend, scrubbed
from bot.services.common import existing, grant_context, refuse, view
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice
from bot.services.views import RequestView
from bot.store import audit, queries

log = logging.getLogger("breakglass.extensions")


def extend(deps: Deps, actor: str, request_id: int, typed: str) -> RequestView:
    current = existing(deps, request_id)
    resource = deps.policy.resource(current.resource)
    holder = current.requester_id
    try:
        check_extender(
            actor=actor,
            holder=holder,
            is_approver=deps.is_approver(actor, current.resource),
            emergency=current.emergency,
            # Asked again now: a holder who could not break the glass today does not get more of it.
            may_break_glass=actor == holder and deps.may_break_glass(actor, resource),
            request_id=request_id,
        )
    except Refused as refusal:
        refuse(deps, actor, current, "extend_refused", str(refusal))
        raise
    if resource is None:
        raise Refused(f"{current.resource} is no longer in the policy, so its access cannot be extended.")
    now = deps.now()
    if current.status is not Status.ACTIVE or current.expires_at is None or current.granted_at is None:
        raise Refused(f"{outcome(current)} Only active access can be extended; nothing was done.")
    if current.expires_at <= now:  # ended, though the sweep has not taken it back yet: it must not come back
        raise Refused(
            f"Request #{request_id} expired at {current.expires_at:%H:%M} UTC and is being revoked; "
            "nothing was done. Ask for access again."
        )
    check_still_requester(resource=resource.name, allowed=deps.may_request(holder, resource), request_id=request_id)
    try:
        extra = parse_duration(typed)
    except DurationError as error:
        raise Refused(f"{error}. Say how much longer, e.g. `30m` or `1h`.") from None
    check_extension(granted_for=current.expires_at - current.granted_at, extra=extra, resource=resource)

    before, after = current.expires_at, current.expires_at + extra
    me = deps.tuning.instance
    with deps.db.transaction() as session:
        now = deps.now()
        # Held for longer than the backend call may take, so the hold cannot run out while the call is under way.
        until = now + max(deps.tuning.lease, 2 * timedelta(seconds=deps.tuning.call_timeout))
        if not queries.hold_for_extension(session, request_id, before, after, now, me, until):
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
            return _undo(deps, request_id, actor, before, scrubbed(deps, adapter_error(error)))

    with deps.db.transaction() as session:
        released = queries.release_extension(session, request_id, me, after)
        request = queries.get(session, request_id)
        assert request is not None
        extended = view(deps, session, request)
    if not released:  # our hold ran out during a slow backend call and the request moved on without us
        log.warning("extension of request %s outlived its hold; the request is now %s", request_id, extended.status)
        raise Refused(f"{outcome(extended)} The extension could not be confirmed; `/breakglass mine` shows it.")
    deps.alarms.wake_at(after)
    deps.alarms.wake_at(after - deps.tuning.expiry_warning)
    deps.notifier.refresh(extended)
    deps.notifier.tell_requester(extended, Notice.EXTENDED)
    if extended.emergency:  # glass broken longer: security hears it as loudly as the first time
        deps.notifier.tell_channel(deps.policy.channels.audit, extended, Notice.EXTENDED)
    return extended


def _undo(deps: Deps, request_id: int, actor: str, before: datetime, error: AdapterError) -> RequestView:
    """The backend did not move its end: neither does the row, so the bot never believes in more time than the
    backend gives."""
    with deps.db.transaction() as session:
        restored = queries.release_extension(session, request_id, deps.tuning.instance, before)
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, "extend_failed", at=deps.now(), actor=actor, request=request, error=str(error))
        current = view(deps, session, request)
    if not restored:
        raise Refused(
            f"The backend could not extend request #{request_id} ({error}), and the request changed meanwhile: "
            f"{outcome(current)}"
        )
    raise Refused(
        f"The backend could not extend request #{request_id} ({error}); access still ends when it did. "
        "Nothing else was changed."
    )
