"""`/breakglass extend <id> <duration>`: more time on access that is active now.

An extension is a new approval, so another approver gives it; only the holder of an emergency grant may extend
their own, as they could break the glass again anyway. Any other holder asks (``extension_asks.ask``: "Ask for more
time", or the same typed command), and the approvers approve that ask here. The whole grant stays within the
resource's longest duration. Where the backend ends access by itself (adapters that implement ``ExtendsExpiry``),
its end moves too, or the extension is undone: the bot and the backend never disagree about when access ends in the
backend's favour.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.adapters.base import Adapter, AdapterError, ExtendsExpiry, GrantContext, Receipt
from bot.domain.actions import AuditAction
from bot.domain.approvals import standing
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.rules import Refused, check_extender, check_extension, check_still_requester
from bot.domain.states import Status
from bot.policy import Resource
from bot.services import approvers, tell, triggers
from bot.services.backend import adapter_error, revoke_confirmed, scrubbed, within
from bot.services.common import existing, grant_context, load_view, refuse, same_identity, twin_decided, view
from bot.services.deadline import Overdue
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.store import audit, queries
from bot.store.models import Decision

log = logging.getLogger("breakglass.extensions")


class Settled(Refused):
    """The extension an approver meant to approve (``asked_round``) no longer waits: decided, dropped or replaced."""


def extend(deps: Deps, actor: str, request_id: int, typed: str, *, asked_round: int | None = None) -> RequestView:
    """More time on ``request_id``, by ``actor``: an approver's approval (of the extension that waits, or of a new
    one), or the holder's own where it counts. ``asked_round``: only the extension of that round, which must still
    wait (an approver's click on its button); it never becomes a new extension of the approver's own."""
    current = existing(deps, request_id)
    if current.drill:  # its few minutes are what keep a drill that dies from leaving access behind for long
        raise Refused(f"Request #{request_id} is a drill: its access ends with the drill and is never extended.")
    resource = deps.resource(current.resource, current.level)
    holder = current.requester_id
    auto = actor == holder and on_call_holder(deps, current, resource)
    try:
        check_extender(
            actor=actor,
            holder=holder,
            # Whoever may decide a step of the request may approve its extension: listed, or on call now.
            is_approver=actor != holder and approvers.may_decide_any(deps, actor, resource, escalated=False),
            emergency=current.emergency or auto,
            # Asked again now: a holder who could not break the glass today does not get more of it.
            may_break_glass=actor == holder and (auto or deps.may_break_glass(actor, resource)),
            request_id=request_id,
        )
    except Refused as refusal:
        refuse(deps, actor, current, AuditAction.EXTEND_REFUSED, str(refusal))
        raise
    if resource is None:
        raise Refused(f"{current.label} is no longer in the policy, so its access cannot be extended.")
    if same_identity(deps, actor, current):  # the holder through another Slack account: still their own access
        why = (
            f"You are the same backend identity as the holder of #{request_id} (`{current.principal}`), so this is "
            "your own access; another approver has to extend it."
        )
        refuse(deps, actor, current, AuditAction.EXTEND_REFUSED, why)
        raise Refused(why)
    now = deps.now()
    if current.status is not Status.ACTIVE or current.expires_at is None or current.granted_at is None:
        raise Refused(f"{outcome(current)} Only active access can be extended; nothing was done.")
    if current.expires_at <= now:  # ended, though the sweep has not taken it back yet: it must not come back
        raise Refused(
            f"Request #{request_id} expired at {current.expires_at:%H:%M} UTC and is being revoked; "
            "nothing was done. Ask for access again."
        )
    check_still_requester(resource=resource.label, allowed=deps.may_request(holder, resource), request_id=request_id)
    try:
        extra = parse_duration(typed)
    except DurationError as error:
        raise Refused(f"{error}. Say how much longer, e.g. `30m` or `1h`.") from None
    # The limits it was granted under: a reload that lowered max_duration does not take back what was allowed.
    granted = deps.resource_for(current) or resource
    check_extension(granted_for=current.expires_at - current.granted_at, extra=extra, resource=granted)
    if actor != holder:  # approved like the request itself: the level's steps and counts
        waiting = _approve(deps, actor, current, resource, extra, asked_round)
        if waiting is not None:
            return waiting
        current = existing(deps, request_id)
    assert current.expires_at is not None  # active, checked above; re-read after the approval

    before, after = current.expires_at, current.expires_at + extra
    me = deps.tuning.instance
    with deps.db.transaction() as session:
        now = deps.now()
        # Held for longer than the backend call may take, so the hold cannot run out while the call is under way.
        until = now + max(deps.tuning.lease, 2 * timedelta(seconds=deps.tuning.call_timeout))
        request = queries.get(session, request_id)
        assert request is not None
        hold = _Hold(until, before, request.warned_at)
        if not queries.hold_for_extension(session, request_id, before, after, now, me, until):
            raise Refused(f"Request #{request_id} changed just now; nothing was done. `/breakglass mine` shows it.")
        audit.record(
            session,
            AuditAction.EXTENDED,
            at=now,
            actor=actor,
            request=request,
            by=format_duration(extra),
            expires_at=after.isoformat(),
            was=before.isoformat(),
        )
        ctx = grant_context(deps, request, after)
        receipt = Receipt(data=dict(request.receipt or {}), instructions=request.instructions)

    adapter = deps.adapter_for(current)  # the backend it was granted on, with that version's params
    if isinstance(adapter, ExtendsExpiry):
        try:
            within(deps, adapter.extend, ctx, receipt)  # timed and counted like every backend call
        except Overdue as overdue:
            _watch_abandoned(deps, overdue, adapter, ctx, receipt)
            error = AdapterError(f"the backend gave {overdue}", retryable=True)
            return _undo(deps, request_id, actor, hold, error)
        except Exception as error:
            return _undo(deps, request_id, actor, hold, scrubbed(deps, adapter_error(error)))

    with deps.db.transaction() as session:
        released = queries.release_extension(session, request_id, me, until, after)
        request = queries.get(session, request_id)
        assert request is not None
        extended = view(deps, session, request)
        if released:
            tell.refresh(deps, session, extended)
            tell.announce(deps, session, extended, Notice.EXTENDED)
            if extended.emergency:  # glass broken longer: security hears it as loudly as the first time
                tell.audit_channel(deps, session, extended, Notice.EXTENDED)
    deps.courier.deliver(request_id)
    if not released:  # our hold ran out during a slow backend call and the request moved on without us
        log.warning("extension of request %s outlived its hold; the request is now %s", request_id, extended.status)
        raise Refused(f"{outcome(extended)} The extension could not be confirmed; `/breakglass mine` shows it.")
    deps.alarms.wake_at(after)
    deps.alarms.wake_at(after - deps.tuning.expiry_warning)
    return extended


def on_call_holder(deps: Deps, current: RequestView, resource: Resource | None) -> bool:
    """Approved at once because the holder was on call: so is their extension, while they still are (asked now)."""
    holder = current.requester_id
    return (
        current.auto_approved
        and resource is not None
        and deps.may_request(holder, resource)
        and triggers.on_call(deps, resource).auto_approves(holder)
    )


def extends_own(deps: Deps, current: RequestView, resource: Resource | None) -> bool:
    """Whether the holder's own ask takes effect at once, as `/breakglass extend` by them does: glass broken, or
    approved at once because they were (and still are) on call. Anyone else's ask waits for the approvers."""
    return current.emergency or on_call_holder(deps, current, resource)


def _approve(
    deps: Deps, actor: str, current: RequestView, resource: Resource, extra: timedelta, asked_round: int | None
) -> RequestView | None:
    """Record ``actor``'s approval of an extension by ``extra`` in its own round; None once the extension has all its
    steps' approvals (the caller applies it), else the request with the extension waiting, its next deciders called
    on in the thread. One extension waits at a time; it is dropped when access ends."""
    request_id, seconds = current.id, int(extra.total_seconds())
    if asked_round is not None and (current.extension_seconds is None or current.extension_round != asked_round):
        raise Settled(f"The extension of #{request_id} was settled just now; nothing was done.")
    if current.extension_seconds is not None and current.extension_seconds != seconds:
        asked = format_duration(timedelta(seconds=current.extension_seconds))
        raise Refused(
            f"An extension of #{request_id} by {asked} waits for its approvals; approve that one with "
            f"`/breakglass extend {request_id} {asked}`, or ask for another once it is settled. Nothing was recorded."
        )
    round_ = current.extension_round if current.extension_seconds is not None else current.extension_round + 1
    recorded = approvers.recorded(current.decisions, round_)
    if any(cast.person == actor for cast in recorded):
        raise Refused(f"You approved this extension of #{request_id} already; it waits for the other approvals.")
    twin = twin_decided(deps, actor, resource, [cast.person for cast in recorded])
    if twin is not None:
        raise Refused(
            f"Another Slack account mapped to your backend identity (`{twin}`) approved this extension of "
            f"#{request_id} already; one person approves once. Nothing was recorded."
        )
    mine = approvers.ways(deps, actor, resource, escalated=False)
    before = approvers.counting(deps, resource, False, current.requester_id, recorded)
    step = approvers.step_for(request_id, before, mine, approve=True)
    counts = approvers.recount(recorded, before)
    name = deps.directory.person(actor).name  # named in the thread, not called on
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.lock_active(session, request_id, now):
            raise Refused(f"Request #{request_id} changed just now; nothing was done. `/breakglass mine` shows it.")
        request = queries.get(session, request_id)
        assert request is not None
        expected = (request.extension_round, request.extension_seconds)
        if expected != ((round_, seconds) if current.extension_seconds is not None else (round_ - 1, None)):
            if asked_round is not None:  # a click on a button: say what became of the extension it was for
                raise Settled(f"The extension of #{request_id} was settled just now; nothing was done.")
            raise Refused(f"The extension of #{request_id} changed just now; nothing was done. Try again.")
        session.add(
            Decision(
                request_id=request_id, approver_id=actor, approve=True, at=now, step=step, via=mine[step], round=round_
            )
        )
        session.flush()
        after = standing(resource.steps, approvers.casts(queries.decisions(session, request_id), round_), counts)
        if after.complete:  # applied by the caller, in its own hold
            queries.set_fields(
                session,
                request_id,
                extension_round=round_,
                extension_seconds=None,
                extension_by=None,
                extension_asked_at=None,
            )
            return None
        queries.set_fields(
            session,
            request_id,
            extension_round=round_,
            extension_seconds=seconds,
            extension_by=request.extension_by or actor,
            extension_asked_at=request.extension_asked_at or now,
        )
        audit.record(
            session,
            AuditAction.EXTENSION_APPROVED,
            at=now,
            actor=actor,
            request=request,
            by=format_duration(extra),
            step=step,
            round=round_,
        )
        waiting = view(deps, session, queries.get(session, request_id) or request)
        note = {"actor": actor, "actor_name": name, "mentions": list(waiting.asking), "approved": True}
        tell.thread(deps, session, waiting, Notice.EXTENSION_ASKED, note)
        tell.refresh(deps, session, waiting)
    deps.courier.deliver(request_id)
    return waiting


@dataclass(frozen=True)
class _Hold:
    """What an extension's hold needs to let go of exactly itself and put the row back as it was."""

    until: datetime  # the hold's lease end: also its token, so a lapsed hold cannot release a newer one
    expires_at: datetime
    warned_at: datetime | None


def _undo(deps: Deps, request_id: int, actor: str, hold: _Hold, error: AdapterError) -> RequestView:
    """The backend did not move its end: neither does the row, so the bot never believes in more time than the
    backend gives."""
    me = deps.tuning.instance
    with deps.db.transaction() as session:
        restored = queries.release_extension(
            session, request_id, me, hold.until, hold.expires_at, warned_at=hold.warned_at
        )
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, AuditAction.EXTEND_FAILED, at=deps.now(), actor=actor, request=request, error=str(error))
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


def _watch_abandoned(deps: Deps, overdue: Overdue, adapter: Adapter, ctx: GrantContext, receipt: Receipt) -> None:
    """An extend we stopped waiting for may still land, after a revoke that ran once the hold was let go (a policy
    written back after it was deleted). If it lands once the request has ended, the revoke is sent again, so ended
    access stays ended; while the request is active, its own revoke comes later anyway."""

    def watch() -> None:
        if not overdue.wait_for_end():
            return
        current = load_view(deps, ctx.request_number)
        if current is None or current.status is Status.ACTIVE:
            return
        log.warning("a late extend of request %s landed after it ended; revoking again", ctx.request_number)
        try:
            revoke_confirmed(deps, adapter, ctx, receipt)
            failure = None
        except Exception as error:
            failure = str(scrubbed(deps, adapter_error(error)))
            log.error("revoking after the late extend of request %s failed: %s", ctx.request_number, failure)
        with deps.db.transaction() as session:
            request = queries.get(session, ctx.request_number)
            assert request is not None
            audit.record(session, AuditAction.LATE_EXTEND_REVOKED, at=deps.now(), request=request, error=failure)
            if failure is not None:
                tell.audit_channel(deps, session, current, Notice.REVOKE_FAILED)
        deps.courier.deliver(ctx.request_number)

    threading.Thread(target=watch, name="late-extend", daemon=True).start()
