"""The bot's own use cases, without Slack: ``Deps`` on a SQLite file, a policy of one resource, a notifier that
records what it was asked to send, and a directory of fixed people. For tests that follow a request through the
services to a real backend (``OneLiveGrantContract``) and for tests of a use case on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.adapters.base import Adapter, GrantContext, Person, Receipt
from bot.clock import ManualClock
from bot.domain.commands import Ask
from bot.domain.states import Status
from bot.policy import Policy
from bot.services import decisions, requests
from bot.services.activity_notes import ActivityNote
from bot.services.common import grant_context
from bot.services.deps import Deps, Tuning
from bot.services.ports import MessageRef, Notice
from bot.services.snapshots import RequestView
from bot.store import queries, schema
from bot.store.db import Database

REQUESTER = Person("U0REQUEST1", "zoe.requester@example.com", "Zoë Requester", "zoe")
APPROVER = Person("U0APPROVE1", "ada.approver@example.com", "Ada Approver", "ada")
APPROVALS, AUDIT = "C0APPROVALS", "C0SECURITY"


class CountingAdapter:
    """The adapter under test, unchanged, with a count of the calls that reach it: a refused request must make
    none. Everything else (its name, its optional capabilities) is the adapter's own."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter
        self.calls: list[str] = []

    def grant(self, ctx: GrantContext) -> Receipt:
        self.calls.append("grant")
        return self._adapter.grant(ctx)

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        self.calls.append("revoke")
        self._adapter.revoke(ctx, receipt)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


@dataclass
class RecordingNotifier:
    """Records every message it is asked to put in Slack, in order, and never fails. Credentials are kept apart (by
    request number) so a test can use them as the requester would, and nowhere else. Without a courier (``Deps``'s
    default) messages stay owed in the outbox; credentials never go through it and arrive here at once."""

    sent: list[tuple[str, int, str]] = field(default_factory=list)  # (kind, request number, detail)
    credentials: dict[int, str] = field(default_factory=dict, repr=False)
    activity: list[tuple[str, str | None, ActivityNote]] = field(default_factory=list)  # (channel, thread, note)
    drills: list[dict[str, Any]] = field(default_factory=list)  # each drill report, as owed
    policy: list[dict[str, Any]] = field(default_factory=list)  # each policy reload report, as owed
    _posted: int = 0

    def _ref(self, channel: str) -> MessageRef:
        self._posted += 1
        return MessageRef(channel, f"1700000000.{self._posted:06d}")

    def post_request(self, channel: str, view: RequestView, mark: str, *, alert: bool = False) -> MessageRef:
        self.sent.append(("post", view.id, channel))
        return self._ref(channel)

    def update_request(self, ref: MessageRef, view: RequestView, *, alert: bool = False) -> None:
        self.sent.append(("update", view.id, view.status.value))

    def reply_in_thread(
        self, channel: str, thread_ts: str, view: RequestView, notice: Notice, note: dict[str, Any], mark: str
    ) -> MessageRef:
        self.sent.append(("thread", view.id, notice.value))
        return self._ref(channel)

    def permalink(self, ref: MessageRef) -> str | None:
        return f"https://example.slack.com/archives/{ref.channel}/p{ref.ts.replace('.', '')}"

    def tell_requester(self, view: RequestView, notice: Notice, mark: str) -> MessageRef:
        self.sent.append(("requester", view.id, notice.value))
        return self._ref(view.requester_id)

    def tell_channel(self, channel: str, view: RequestView, notice: Notice, mark: str) -> MessageRef:
        self.sent.append(("channel", view.id, notice.value))
        return self._ref(channel)

    def warn_refusals(
        self, channel: str, actor: str, count: int, window: timedelta, latest: str, mark: str
    ) -> MessageRef:
        self.sent.append(("refusals", 0, actor))
        return self._ref(channel)

    def tell_reconciled(
        self, channel: str, resource: str, principal: str, found: str, mark: str, *, taken: bool = True
    ) -> MessageRef:
        self.sent.append(("reconciled" if taken else "found", 0, principal))
        return self._ref(channel)

    def tell_activity(
        self, channel: str, thread_ts: str | None, view: RequestView, note: ActivityNote, mark: str
    ) -> MessageRef:
        self.sent.append(("activity", view.id, note.note.value))
        self.activity.append((channel, thread_ts, note))
        return self._ref(channel)

    def tell_drill(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        self.sent.append(("drill", report.get("request_id") or 0, "passed" if report["passed"] else "failed"))
        self.drills.append(report)
        return self._ref(channel)

    def tell_audit_sink(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        self.sent.append(("audit_sink", 0, f"{report['sink']}:{report['state']}"))
        return self._ref(channel)

    def tell_policy(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        self.sent.append(("policy", 0, str(report["outcome"])))
        self.policy.append(report)
        return self._ref(channel)

    def find(self, channel: str, mark: str, thread_ts: str | None = None) -> MessageRef | None:
        return None

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        self.credentials[view.id] = credentials
        self.sent.append(("credentials", view.id, "sent"))


class FixedDirectory:
    """People by Slack id; user groups by id."""

    def __init__(self, people: Iterable[Person], groups: dict[str, list[str]] | None = None) -> None:
        self.people = {person.slack_id: person for person in people}
        self.groups = groups or {}

    def person(self, user_id: str) -> Person:
        return self.people.get(user_id, Person(user_id))

    def members(self, group_ids: list[str]) -> frozenset[str]:
        return frozenset(member for group in group_ids for member in self.groups.get(group, []))

    def by_email(self, email: str) -> str | None:
        wanted = email.strip().lower()
        return next((p.slack_id for p in self.people.values() if (p.email or "").lower() == wanted), None)


def one_resource_policy(resource: str, adapter: str, users: dict[str, str], **settings: Any) -> Policy:
    """A policy with one resource, approved by ``APPROVER``, on which ``users`` map Slack ids to principals."""
    entry = {"adapter": adapter, "users": users, "approvers": [APPROVER.slack_id], "emergency": True, **settings}
    return Policy.model_validate({"channels": {"approvals": APPROVALS, "audit": AUDIT}, "resources": {resource: entry}})


@dataclass
class Services:
    """The use cases over one resource, as its requester and its approver reach them."""

    deps: Deps
    notifier: RecordingNotifier
    clock: ManualClock
    resource: str

    def ask(self, duration: str = "30m", *, emergency: bool = False, actor: str = REQUESTER.slack_id) -> RequestView:
        ask = Ask(self.resource, duration, "INC-4211 the overlapping grants test", emergency)
        return requests.submit(self.deps, actor, ask, None)

    def approve(self, request_id: int) -> RequestView:
        return decisions.decide(self.deps, APPROVER.slack_id, request_id, approve=True)

    def revoke(self, request_id: int) -> RequestView:
        return requests.end_early(self.deps, APPROVER.slack_id, request_id)

    def status(self, request_id: int) -> Status:
        with self.deps.db.transaction() as session:
            request = queries.get(session, request_id)
            assert request is not None
            return Status(request.status)

    def request_count(self) -> int:
        with self.deps.db.transaction() as session:
            return len(queries.open_for_user(session, REQUESTER.slack_id))

    def shown_active(self) -> list[int]:
        """The requests the bot shows as active, as `/breakglass mine` lists them."""
        return [v.id for v in requests.mine(self.deps, REQUESTER.slack_id).open if v.status is Status.ACTIVE]

    def access_of(self, request_id: int) -> tuple[GrantContext, Receipt]:
        """What the requester holds through a request: its grant as the backend saw it, the receipt as the bot stores
        it, and the one-time credentials they were sent."""
        with self.deps.db.transaction() as session:
            request = queries.get(session, request_id)
            assert request is not None and request.expires_at is not None
            ctx = grant_context(self.deps, request, request.expires_at)
            stored = Receipt(data=json.loads(json.dumps(request.receipt or {})), instructions=request.instructions)
        return ctx, replace(stored, credentials=self.notifier.credentials.get(request_id))

    def close(self) -> None:
        self.deps.db.dispose()


def services(
    directory: Path, resource: str, adapter: Adapter, principal: str, clock: ManualClock, **settings: Any
) -> Services:
    """The services over one resource served by ``adapter``, on a fresh SQLite file in ``directory``; the requester
    is ``principal`` on the backend."""
    db = Database.from_url(f"sqlite:///{directory / 'breakglass.db'}")
    schema.upgrade(db.engine)
    notifier = RecordingNotifier()
    policy = one_resource_policy(resource, adapter.name, {REQUESTER.slack_id: principal}, **settings)
    deps = Deps(
        db=db,
        policy=policy,
        adapters={resource: adapter},
        notifier=notifier,
        directory=FixedDirectory([REQUESTER, APPROVER]),
        clock=clock,
        tuning=Tuning(grant_retry_pause=0.01),
    )
    return Services(deps, notifier, clock, resource)
