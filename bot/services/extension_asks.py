"""More time asked for by the holder, and decided by the approvers: "Ask for more time" and `/breakglass extend`.

The holder of emergency access (or of access approved at once because they were on call, while they still are)
extends it at once, as they could break the glass again anyway. Any other holder's ask opens an extension round
that waits for the request's own steps: approvers approve it (``extensions.extend`` with the asked duration, every
rule checked again at that moment) or deny it. One extension waits at a time; it is dropped when access ends. Every
check is made again whenever something takes effect, so a form kept open or a button clicked late changes nothing
the moment no longer allows, and says what happened instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.domain.actions import AuditAction
from bot.domain.durations import DurationError, format_duration, parse_duration
from bot.domain.rules import Refused, check_extension, check_still_requester
from bot.domain.states import Status
from bot.policy import Resource
from bot.services import approvers, extensions, tell
from bot.services.common import existing, refuse, same_identity, view
from bot.services.deps import Deps
from bot.services.outcome import outcome
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.store import audit, extension_asks, queries
from bot.store.models import Decision

MAX_WHY = 500  # characters of why more time is needed: a sentence or three, shown in full to the approvers


@dataclass(frozen=True)
class Room:
    """What the holder may ask for now: the grant, and how much more its limits leave."""

    current: RequestView
    limits: Resource  # the resource as the grant was made under: its limits are the ones that apply
    left: timedelta
    at_once: bool  # the holder's ask extends at once (emergency, or on call): no approver is asked

    def seconds(self, typed: str) -> int:
        """The seconds ``typed`` asks for, or Refused in the words `/breakglass extend` uses."""
        try:
            extra = parse_duration(typed)
        except DurationError as error:
            raise Refused(f"{error}. Say how much longer, e.g. `30m` or `1h`.") from None
        current = self.current
        assert current.expires_at is not None and current.granted_at is not None  # active: see ``room``
        check_extension(granted_for=current.expires_at - current.granted_at, extra=extra, resource=self.limits)
        return int(extra.total_seconds())


def room(deps: Deps, holder: str, request_id: int) -> Room:
    """How much more time ``holder`` may ask for on their grant, or Refused saying why they can ask for none: checked
    when the form opens, again when it is submitted, and again by the ask itself."""
    current = existing(deps, request_id)
    if holder != current.requester_id:
        why = f"Only the holder of request #{request_id} may ask for more time on it; nothing was done."
        refuse(deps, holder, current, AuditAction.EXTEND_REFUSED, why)
        raise Refused(why)
    _check_live(deps, current)
    resource = deps.resource(current.resource, current.level)
    if resource is None:
        raise Refused(f"{current.label} is no longer in the policy, so its access cannot be extended.")
    check_still_requester(resource=resource.label, allowed=deps.may_request(holder, resource), request_id=request_id)
    assert current.expires_at is not None and current.granted_at is not None  # active, checked above
    granted = deps.resource_for(current) or resource  # the limits it was granted under, as `extend` applies them
    _, _, longest = granted.limits
    left = max(longest - (current.expires_at - current.granted_at), timedelta(0))
    if left < timedelta(minutes=1):
        raise Refused(
            f"{granted.label} allows {format_duration(longest)} in all, and request #{request_id} has had all of it; "
            "no more time can be given. Ask for access again when it ends."
        )
    return Room(current, granted, left, extensions.extends_own(deps, current, resource))


def _check_live(deps: Deps, current: RequestView) -> None:
    if current.drill:  # its few minutes are what keep a drill that dies from leaving access behind for long
        raise Refused(f"Request #{current.id} is a drill: its access ends with the drill and is never extended.")
    if current.status is not Status.ACTIVE or current.expires_at is None or current.granted_at is None:
        raise Refused(f"{outcome(current)} Only active access can be extended; nothing was done.")
    if current.expires_at <= deps.now():
        raise Refused(
            f"Request #{current.id} expired at {current.expires_at:%H:%M} UTC and is being revoked; nothing was done. "
            "Ask for access again."
        )


def more_time(deps: Deps, actor: str, request_id: int, typed: str, why: str | None = None) -> RequestView:
    """`/breakglass extend <id> <duration>` and the more-time form: the holder asks (or, where their own ask takes
    effect at once, extends); anyone else approves, as an approver of the request would."""
    current = existing(deps, request_id)
    # Whoever is not the holder approves; a holder whose own ask counts extends (every rule, theirs too, in extend).
    if actor != current.requester_id or extensions.extends_own(deps, current, _resource(deps, current)):
        return extensions.extend(deps, actor, request_id, typed)
    return ask(deps, actor, request_id, typed, why)


def _resource(deps: Deps, current: RequestView) -> Resource | None:
    return deps.resource(current.resource, current.level)


def ask(deps: Deps, holder: str, request_id: int, typed: str, why: str | None = None) -> RequestView:
    """Open an extension round for ``typed`` more, to be approved like the request itself: its approvers are called
    on in the request's thread, with buttons to approve or deny it."""
    mine = room(deps, holder, request_id)
    current = mine.current
    if current.extension_seconds is not None:
        raise Refused(already_waiting(current))
    seconds = mine.seconds(typed)
    more = format_duration(timedelta(seconds=seconds))
    why = deps.redactor.scrub(why) if why else None  # a pasted credential is not kept, nor shown
    name = deps.directory.person(holder).name  # named in the thread, not called on
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.lock_active(session, request_id, now):
            raise Refused(f"Request #{request_id} changed just now; nothing was done. `/breakglass mine` shows it.")
        opened = extension_asks.open_extension(
            session, request_id, round_read=current.extension_round, seconds=seconds, by=holder, now=now
        )
        request = queries.get(session, request_id)
        assert request is not None
        if not opened:
            raise Refused(already_waiting(view(deps, session, request)))
        audit.record(
            session,
            AuditAction.EXTENSION_ASKED,
            at=now,
            actor=holder,
            request=request,
            by=more,
            round=request.extension_round,
            why=why,
        )
        waiting = view(deps, session, request)
        note = {"actor": holder, "actor_name": name, "mentions": list(waiting.asking), "words": why}
        tell.thread(deps, session, waiting, Notice.EXTENSION_ASKED, note)
        tell.refresh(deps, session, waiting)
    deps.courier.deliver(request_id)
    return waiting


def already_waiting(current: RequestView) -> str:
    asked = format_duration(timedelta(seconds=current.extension_seconds or 0))
    return (
        f"An extension of #{current.id} by {asked} already waits for its approvers; one extension waits at a time, "
        "so nothing was asked. Ask again once it is decided."
    )


def approve(deps: Deps, actor: str, request_id: int, round_: int | None = None) -> RequestView:
    """An approver's "Approve extension": `/breakglass extend` with the duration the holder asked for, every rule
    checked again now. ``round_``: the round the button was made for (a click on an older one is stale)."""
    current = existing(deps, request_id)
    _check_decider(deps, actor, current)
    seconds = _waiting(deps, current, round_)
    asked, more = current.extension_round, format_duration(timedelta(seconds=seconds))
    try:
        return extensions.extend(deps, actor, request_id, more, asked_round=asked)
    except extensions.Settled:  # decided by someone else meanwhile: never a new extension of this approver's own
        raise Refused(f"{_settled(existing(deps, request_id), asked)} Nothing was done.") from None


def decidable(deps: Deps, actor: str, request_id: int, round_: int | None = None) -> RequestView:
    """The grant whose waiting extension ``actor`` may decide now, or Refused as the decision itself would be (and
    audited likewise): checked before the deny form asks for a reason the denial would refuse anyway."""
    current = existing(deps, request_id)
    _check_decider(deps, actor, current)
    _waiting(deps, current, round_)
    return current


def deny(deps: Deps, actor: str, request_id: int, round_: int | None = None, words: str | None = None) -> RequestView:
    """An approver's "Deny extension": the waiting extension is dropped and its asker told; access ends as before."""
    current = existing(deps, request_id)
    resource = _check_decider(deps, actor, current)
    seconds = _waiting(deps, current, round_)
    words = deps.redactor.scrub(words) if words else None  # as a request's denial reason
    round_ = current.extension_round
    recorded = approvers.recorded(current.decisions, round_)
    if any(cast.person == actor for cast in recorded):
        raise Refused(f"You approved this extension of #{request_id} already; nothing was recorded.")
    mine = approvers.ways(deps, actor, resource, escalated=False)
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.lock_active(session, request_id, now):
            raise Refused(f"{outcome(current)} Nothing was done.")
        if not extension_asks.settle_extension(session, request_id, round_=round_, seconds=seconds):
            request = queries.get(session, request_id)
            assert request is not None
            raise Refused(f"{_settled(view(deps, session, request), round_)} Nothing was done.")
        step = current.waiting_step if current.waiting_step in mine else min(mine)
        session.add(
            Decision(
                request_id=request_id,
                approver_id=actor,
                approve=False,
                at=now,
                step=step,
                via=mine[step],
                round=round_,
                comment=words,
            )
        )
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(
            session,
            AuditAction.EXTENSION_DENIED,
            at=now,
            actor=actor,
            request=request,
            by=format_duration(timedelta(seconds=seconds)),
            round=round_,
            comment=words,
        )
        denied = view(deps, session, request)
        tell.requester(deps, session, denied, Notice.EXTENSION_DENIED)  # and the thread, where the ask was
        tell.refresh(deps, session, denied)
    deps.courier.deliver(request_id)
    return denied


def _check_decider(deps: Deps, actor: str, current: RequestView) -> Resource:
    """Who may decide an extension, asked at the click: whoever may decide a step of the request, never its holder
    or the holder through another Slack account. A refusal is audited and counted."""
    resource = deps.resource(current.resource, current.level)
    why = None
    if actor == current.requester_id:
        why = f"You cannot approve or deny more time on your own access (#{current.id}); another approver decides."
    elif resource is None or not approvers.may_decide_any(deps, actor, resource, escalated=False):
        why = f"Only an approver may decide the extension of request #{current.id}."
    elif same_identity(deps, actor, current):
        why = (
            f"You are the same backend identity as the holder of #{current.id} (`{current.principal}`), so this is "
            "your own access; another approver decides its extension."
        )
    if why is not None:
        refuse(deps, actor, current, AuditAction.EXTEND_REFUSED, why)
        raise Refused(why)
    assert resource is not None
    return resource


def _waiting(deps: Deps, current: RequestView, round_: int | None) -> int:
    """The seconds of the extension that waits (the one the button was for), or Refused saying what became of it."""
    if current.status is not Status.ACTIVE or current.expires_at is None:
        raise Refused(f"{outcome(current)} There is no extension to decide; nothing was done.")
    if current.expires_at <= deps.now():
        raise Refused(
            f"Request #{current.id} expired at {current.expires_at:%H:%M} UTC and is being revoked; there is no "
            "extension to decide. Nothing was done."
        )
    if current.extension_seconds is None or (round_ is not None and round_ != current.extension_round):
        raise Refused(f"{_settled(current, round_ or current.extension_round)} Nothing was done.")
    return current.extension_seconds


def _settled(current: RequestView, round_: int) -> str:
    """What became of extension round ``round_``: the answer to a button clicked after it was decided."""
    decided = [d for d in current.decisions if d.round == round_]
    denial = next((d for d in decided if not d.approve), None)
    if current.extension_seconds is not None and current.extension_round != round_:
        asked = format_duration(timedelta(seconds=current.extension_seconds))
        waiting = f" Another extension ({asked} more) waits now; its buttons are in the request's thread."
    else:
        waiting = ""
    if denial is not None:
        head = f"The extension of #{current.id} was denied by <@{denial.approver_id}> at {denial.at:%H:%M} UTC."
    elif decided:
        by = ", ".join(f"<@{d.approver_id}>" for d in decided if d.approve)
        head = f"The extension of #{current.id} was approved by {by} already."
    else:
        head = f"No extension of #{current.id} waits for a decision."
    return head + waiting
