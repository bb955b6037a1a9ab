"""What the services need from the outside world, as small interfaces. Slack implements them in bot/slack/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.orm import Session

from bot.adapters.base import Person
from bot.services.activity_notes import ActivityNote
from bot.services.snapshots import RequestView


class Notice(StrEnum):
    """Something a person should hear about a request."""

    RECEIVED = "received"
    APPROVED = "approved"
    DENIED = "denied"
    ACTIVE = "active"
    GRANT_FAILED = "grant_failed"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REVOKED = "revoked"
    CANCELLED = "cancelled"
    REVOKE_FAILED = "revoke_failed"
    REVOKE_RECOVERED = "revoke_recovered"
    EMERGENCY = "emergency"
    REVIEW_DUE = "review_due"
    REVIEW_REMINDER = "review_reminder"
    REVIEW_OVERDUE = "review_overdue"
    REVIEW_DONE = "review_done"
    REVIEW_WRITTEN = "review_written"  # the account is in; the sign-off side is called on
    REVIEW_SIGN_OFF = "review_sign_off"  # a reminder to the sign-off side
    EXTENDED = "extended"
    # Thread replies under the approval message (bot/services/tell.py: ``thread``):
    STEP_APPROVED = "step_approved"  # an approval that did not complete the request; who is asked next
    REMINDER = "reminder"  # approvers who have not decided are reminded
    ESCALATED = "escalated"  # the backups are asked
    AUTO_APPROVED = "auto_approved"  # the requester was on call: approved at once
    PAGED = "paged"  # breaking the glass paged the on-call
    EXTENSION_ASKED = "extension_asked"  # an extension waits for its approvals
    EXTENSION_DENIED = "extension_denied"  # an approver denied the extension the holder asked for
    EXTENSION_DROPPED = "extension_dropped"  # access ended before the extension it waited for was decided
    ONCALL_UNKNOWN = "oncall_unknown"  # the on-call service could not say who is on call: listed approvers decide


@dataclass(frozen=True)
class MessageRef:
    channel: str
    ts: str


class NotSent(Exception):
    """Slack did not certainly take a message. ``permanent``: it never will (a channel that is gone, a message it
    refuses); otherwise trying later may work. ``in_doubt``: the request may have reached Slack all the same (a
    timeout, a dropped connection), so the message must be looked for before it is posted again."""

    def __init__(self, why: str, *, permanent: bool = False, in_doubt: bool = False) -> None:
        super().__init__(why)
        self.permanent = permanent
        self.in_doubt = in_doubt


class Notifier(Protocol):
    """Puts the outbox's messages in Slack (bot/services/delivery.py is its only caller, apart from credentials).
    Every post carries ``mark``, the outbox row's id, so that ``find`` can tell whether a post in doubt arrived.
    Raises NotSent when a message did not certainly arrive."""

    def post_request(self, channel: str, view: RequestView, mark: str, *, alert: bool = False) -> MessageRef:
        """Post the request's message (approval buttons, or with ``alert`` the loud emergency alert, which calls on
        ``view.audit_mentions``) to a channel."""
        ...

    def update_request(self, ref: MessageRef, view: RequestView, *, alert: bool = False) -> None:
        """Edit one of the request's messages in place to show its current state."""
        ...

    def tell_requester(self, view: RequestView, notice: Notice, mark: str) -> MessageRef: ...

    def tell_channel(self, channel: str, view: RequestView, notice: Notice, mark: str) -> MessageRef: ...

    def warn_refusals(
        self, channel: str, actor: str, count: int, window: timedelta, latest: str, mark: str
    ) -> MessageRef:
        """Tell the audit channel that one person (or unsigned traffic) keeps being refused."""
        ...

    def tell_reconciled(
        self, channel: str, resource: str, principal: str, found: str, mark: str, *, taken: bool = True
    ) -> MessageRef:
        """Tell the audit channel that reconciliation took back access no live grant covered."""
        ...

    def tell_drill(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        """Tell the audit channel how a drill went: passed or failed, each step and its time (``report`` is
        ``drills.DrillResult.to_data``); a failure calls on ``report["mentions"]``."""
        ...

    def tell_policy(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        """Tell the audit channel that the policy file was reloaded (what changed) or refused (its problems);
        ``report`` is ``policy_reload.Outcome.to_data``."""
        ...

    def tell_audit_sink(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        """Tell the audit channel that an audit sink is failing (events wait for it, none is dropped) or recovered
        (``report`` is what bot/services/streaming.py records: sink, type, state, since, failures, waiting, error)."""
        ...

    def tell_activity(
        self, channel: str, thread_ts: str | None, view: RequestView, note: ActivityNote, mark: str
    ) -> MessageRef:
        """Say what a grant's principal did (or that capture is in trouble): a reply in the thread ``thread_ts`` of
        ``channel``, or with no ``thread_ts`` a message of its own there."""
        ...

    def reply_in_thread(
        self, channel: str, thread_ts: str, view: RequestView, notice: Notice, note: dict[str, Any], mark: str
    ) -> MessageRef:
        """Say what happened to a request in its approval message's thread; ``note`` carries who acted, their words
        and who is called on (``mentions``: user and group ids, the only mentions the reply may carry)."""
        ...

    def permalink(self, ref: MessageRef) -> str | None:
        """A link to a posted message (chat.getPermalink); None when Slack cannot give one now. Never raises."""
        ...

    def find(self, channel: str, mark: str, thread_ts: str | None = None) -> MessageRef | None:
        """The message posted with ``mark`` to ``channel`` (a user id means the DM with them), or with ``thread_ts``
        as a reply in that thread, if Slack has it."""
        ...

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        """Give the requester a one-time secret (a temporary password) privately, at once. Nothing keeps it, so it
        never goes through the outbox; never raises."""
        ...


class MembershipUnknown(Exception):
    """Slack could not say who is in a user group just now. Nothing that depends on membership may be decided on a
    guess: not "not a member" (that reads as offboarding, and refuses real requesters as probing), nor "member"."""


class Directory(Protocol):
    """Who people are, and who is in which user group."""

    def person(self, user_id: str) -> Person: ...

    def members(self, group_ids: list[str]) -> frozenset[str]:
        """Everyone in the groups; raises MembershipUnknown when a group cannot be read now."""
        ...

    def by_email(self, email: str) -> str | None:
        """The user id of the person with this email (how an on-call schedule's people are found in Slack); None when
        nobody has it, or Slack cannot say just now."""
        ...


class Alarms(Protocol):
    """Wakes the sweep at a moment when something falls due. Only an alarm: the sweep finds the work."""

    def wake_at(self, when: datetime) -> None: ...


class NoAlarms:
    def wake_at(self, when: datetime) -> None:
        pass


class Settled(StrEnum):
    """How a request's fate became known: each request is counted once, under one of these."""

    APPROVED = "approved"  # its last approval step was completed by approvers
    AUTO_APPROVED = "auto_approved"  # the requester was on call
    EMERGENCY = "emergency"  # the glass was broken: approved as it was made
    DENIED = "denied"
    LAPSED = "lapsed"  # nobody decided in time
    CANCELLED = "cancelled"  # withdrawn by the requester, or replaced by their emergency


class Metrics(Protocol):
    """Counts what happened at the seams, for /metrics. Never raises, and never takes free text: every label is a
    resource, level or adapter name from the policy, a step or method name, or one of a few fixed outcomes."""

    def request_settled(self, resource: str, level: str | None, outcome: Settled, waited: timedelta | None) -> None:
        """A request's fate is known; ``waited``, from made to decided, for a decision by approvers."""
        ...

    def revoked(self, resource: str, late_by: timedelta | None) -> None:
        """A revoke the backend confirmed; ``late_by``, how long after ``expires_at``, for an expiry."""
        ...

    def revoke_failed(self, resource: str) -> None: ...

    def backend_call(self, adapter: str, step: str, outcome: str, seconds: float) -> None:
        """One call into a backend (``step``: grant, revoke, verify, extend...); ``outcome``: ok, error or timeout."""
        ...

    def slack_call(self, method: str, outcome: str) -> None:
        """One Slack Web API call (``method``: chat.postMessage...), ok or the class of its failure."""
        ...


class NoMetrics:
    """Counts nothing: for tools and tests that serve no /metrics."""

    def request_settled(self, resource: str, level: str | None, outcome: Settled, waited: timedelta | None) -> None:
        pass

    def revoked(self, resource: str, late_by: timedelta | None) -> None:
        pass

    def revoke_failed(self, resource: str) -> None:
        pass

    def backend_call(self, adapter: str, step: str, outcome: str, seconds: float) -> None:
        pass

    def slack_call(self, method: str, outcome: str) -> None:
        pass


class Held(Protocol):
    """What a request owes, claimed in the transaction that owed it for its own thread to send once it commits
    (``Courier.hold``)."""

    @property
    def request_id(self) -> int: ...


class Courier(Protocol):
    """Delivers what the outbox owes once the transaction that owed it has committed."""

    def hold(self, session: Session, current: RequestView, created: bool = True) -> Held | None:
        """In a transaction that changed the request ``current`` shows (as it stands there), after everything the
        change owes was owed: claim what the request owes for this thread to send once the transaction commits
        (``deliver`` with it), so delivery need not find, read and claim it again. ``created``: the transaction
        created the request, so all it owes is this transaction's. None where delivery is not this thread's, or a
        live sender holds some of it."""
        ...

    def deliver(self, request_id: int | None, held: Held | None = None) -> RequestView | None:
        """Send what is owed for this request now, in this thread where the caller waits on Slack anyway (a person's
        click sees its effect before the answer), or hand it to the delivery thread (background work); ``held`` first,
        once its transaction has committed. Returns the request as it stands once nothing is left to send, read by
        delivery itself; else None."""
        ...


class NoCourier:
    """Until the runtime wires the real one: rows stay owed, and the sweep delivers them."""

    def hold(self, session: Session, current: RequestView, created: bool = True) -> Held | None:
        return None

    def deliver(self, request_id: int | None, held: Held | None = None) -> RequestView | None:
        return None


class Homes(Protocol):
    """Keeps people's Home tabs current (bot/slack/home_refresh.py). Never blocks the caller and never raises: the
    pages are published later, from a thread of their own, and a page that fails to publish is logged."""

    def opened(self, user_id: str) -> None:
        """``user_id`` opened their Home tab: remember it, and publish their page."""
        ...

    def changed(self, request_id: int) -> None:
        """A request changed (committed): re-publish the pages of the people it concerns who look at theirs."""
        ...


class NoHomes:
    """No Home tab (tools, the CLI's offline work): nothing is published."""

    def opened(self, user_id: str) -> None:
        pass

    def changed(self, request_id: int) -> None:
        pass
