"""The courier: sends what the outbox owes, once, in order, whatever happens to Slack or to this process.

Each row is claimed by compare-and-set before its call and marked done in the transaction that records where the
message went (for the request's own messages, on the request, so the buttons can be edited later). What a request
owes at once (its message, the requester's DM, a thread reply) is one run: claimed together, sent in order from one
reading of the request, and marked done together. The claim marks
a post "in doubt" before it is made; a post that then times out, loses its connection, or whose sender dies, is
looked for in the channel by its mark before it is posted again, and adopted if Slack has it. A sender that died
mid-call is known by its heartbeat (bot/services/heartbeat.py), or at worst by its claim's lease. A failure that Slack
did not act on is retried after 1, 2, 4… s, at most a minute apart, for as long as it takes. A message Slack will
never take (a deleted channel) is given up and logged, so it cannot hold back the request's later messages.

A person's thread delivers its request's messages itself, so they see the effect in Slack before the bot answers;
background work hands them to one delivery thread (bot/services/delivery_thread.py), so a Slack outage never holds
up a revoke.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session

from bot.domain.actions import AuditAction
from bot.services import heartbeat
from bot.services.activity_notes import ActivityNote
from bot.services.common import load_view, read_view
from bot.services.deps import Deps
from bot.services.ports import Held, MessageRef, Notice, NotSent
from bot.services.snapshots import RequestView, from_data
from bot.store import audit, outbox, queries
from bot.store.outbox import POSTS, Kind, Outcome, Owed

log = logging.getLogger("breakglass.delivery")

# Longer than one Slack call with all its retries (a 10 s timeout, four 429 waits of up to 30 s): a live sender keeps
# its row. A sender that dies is known sooner, by its heartbeat.
LEASE = timedelta(minutes=5)
RETRY_FIRST = timedelta(seconds=1)
RETRY_MAX = timedelta(minutes=1)
BATCH = 100


def retry_wait(attempts: int) -> timedelta:
    return min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_MAX)


_SHOWN = (Kind.REQUEST, Kind.ALERT, Kind.REFRESH)  # rows that show the request as it stands, not as it was owed
_READS_REQUEST = (*_SHOWN, Kind.THREAD, Kind.ACTIVITY)  # and rows that need to know where its messages are


class _Done(NamedTuple):
    owed: Owed
    outcome: Outcome
    ref: MessageRef | None
    link: str | None


class _Sent(NamedTuple):
    done: int  # rows of the run marked done
    stop: bool  # Slack is not taking messages: try nothing more now


class _Idle(NamedTuple):
    view: RequestView | None  # the request as it stands, when asked for: read where nothing was left to send


class _Held(NamedTuple):
    """A request's rows, claimed in the transaction that owed them (the one that created it, or recorded its grant),
    with the request as it stood there."""

    request_id: int
    view: RequestView
    run: list[Owed]


class _Request:
    """The request a run is about, read once when first needed (after the claim, so as fresh as what the run owes),
    then told where the run's own posts went: a later row of the run threads under them and links to them."""

    def __init__(self, deps: Deps, request_id: int | None, view: RequestView | None = None) -> None:
        self._deps, self._id = deps, request_id
        self._view = view  # given when read already: in the transaction that owed the run and claimed it
        self._read = view is not None
        self.shown: set[MessageRef] = set()  # messages this run posted from this reading: nothing to edit in them

    def read_in(self, session: Session) -> None:
        """Read it in the transaction that claimed the run: as fresh, without a transaction of its own."""
        assert self._id is not None, "only a request's rows ask for its view"
        self._view, self._read = read_view(self._deps, session, self._id), True

    def view(self) -> RequestView | None:
        if not self._read:
            assert self._id is not None, "only a request's rows ask for its view"
            self._view, self._read = load_view(self._deps, self._id), True
        return self._view

    def known(self) -> RequestView | None:
        """The view, if it was read: never read just to be asked."""
        return self._view

    def learn(self, done: _Done) -> None:
        """Where a post of the run went. Read first if need be: a post found in Slack (an earlier try's) was not
        rendered from the request, yet the rows after it must thread under it and link to it."""
        if done.ref is None or done.owed.kind not in (Kind.REQUEST, Kind.ALERT) or self.view() is None:
            return
        assert self._view is not None
        if done.outcome is Outcome.SENT:  # rendered from this reading (one found in Slack was not)
            self.shown.add(done.ref)
        if done.owed.kind is Kind.REQUEST:
            self._view = replace(self._view, approval_channel=done.ref.channel, approval_ts=done.ref.ts)
        elif done.owed.kind is Kind.ALERT:
            self._view = replace(self._view, alert_channel=done.ref.channel, alert_ts=done.ref.ts)
        if done.link is not None:
            self._view = replace(self._view, approval_link=done.link)


def _notice(owed: Owed) -> Notice:
    """The notice a message about a request carries: every kind that shows a request is owed with one."""
    if owed.notice is None:
        raise ValueError(f"outbox row {owed.id} ({owed.kind.value}) was owed without a notice")
    return Notice(owed.notice)


class Courier:
    """Sends due rows in the calling thread."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def hold(self, session: Session, current: RequestView, created: bool = True) -> Held | None:
        deps = self.deps
        now = deps.now()
        if created:
            run = outbox.hold(session, current.id, deps.tuning.instance, now + LEASE)
        else:
            dead_before = heartbeat.dead_before(deps, now)
            run = outbox.hold_run(session, current.id, deps.tuning.instance, now, now + LEASE, dead_before)
        return _Held(current.id, current, run) if run else None

    def deliver(self, request_id: int | None, held: Held | None = None) -> RequestView | None:
        if request_id is None:
            self.drain(None)
            return None
        if isinstance(held, _Held) and held.run:
            assert held.request_id == request_id, "held rows are delivered with their own request"
            sent = self._send_run(held.run, _Request(self.deps, request_id, held.view))
            if sent.stop:
                return None
        return self._drain_request(request_id, answer=True)[1]

    def drain(self, request_id: int | None = outbox.ALL) -> int:
        """Send every row that can go now (only this request's, or with None those of no request); stop at the first
        failure that says Slack is not taking messages. Returns how many rows were done."""
        if request_id is not None and request_id != outbox.ALL:
            return self._drain_request(request_id, answer=False)[0]
        done = 0
        while True:
            now = self.deps.now()
            with self.deps.db.transaction() as session:
                due = outbox.due_ids(session, now, BATCH, request_id, heartbeat.dead_before(self.deps, now))
            if not due:
                return done
            progressed = False
            for message_id in due:
                sent = self._run(message_id)
                if sent is None:
                    continue  # someone else has it, or it must wait for an earlier message
                done += sent.done
                if sent.stop:
                    return done
                progressed = True
            if not progressed:
                return done

    def _drain_request(self, request_id: int, answer: bool) -> tuple[int, RequestView | None]:
        """``drain`` for one request, whose person waits: each run found, claimed and read in one transaction. With
        ``answer``, the count comes with the request as it stands once nothing is left to send, read in the
        transaction that found nothing (what the person is answered with, without a transaction of its own); None
        when delivery stopped short (the caller reads it)."""
        done = 0
        while True:
            sent = self._run_request(request_id, answer)
            if isinstance(sent, _Idle):
                return done, sent.view
            if sent is None:  # someone else holds the request's first row: they send the rest
                return done, None
            done += sent.done
            if sent.stop:
                return done, None

    def _run_request(self, request_id: int, answer: bool) -> _Sent | _Idle | None:
        deps = self.deps
        now = deps.now()
        request = _Request(deps, request_id)
        try:
            with deps.db.transaction() as session:
                dead_before = heartbeat.dead_before(deps, now)
                run = outbox.claim_request_run(session, request_id, deps.tuning.instance, now, now + LEASE, dead_before)
                if any(owed.kind in _READS_REQUEST for owed in run) or (answer and not run):
                    request.read_in(session)
        except outbox.Contended as contended:  # rolled back: claim what can be had, as the sweep would
            return self._run(contended.first)
        return self._send_run(run, request) if run else _Idle(request.known())

    def _run(self, message_id: int) -> _Sent | None:
        """Send the rows a request owes from ``message_id`` on, in order, up to the first that fails (the rest are
        handed back untried). None if the first was not ours to send."""
        deps = self.deps
        now = deps.now()
        with deps.db.transaction() as session:
            dead_before = heartbeat.dead_before(deps, now)
            run = outbox.claim_run(session, message_id, deps.tuning.instance, now, now + LEASE, dead_before)
        return self._send_run(run, _Request(deps, run[0].request_id)) if run else None

    def _send_run(self, run: list[Owed], request: _Request) -> _Sent:
        deps = self.deps
        request_id = run[0].request_id
        if request_id is not None and any(owed.kind in _SHOWN for owed in run):
            # Owed whenever a request changes, after its commit: the Home tabs it is on follow, whatever Slack
            # makes of the message (handed to a thread of their own; this never waits).
            deps.homes.changed(request_id)
        done: list[_Done] = []
        for at, owed in enumerate(run):
            looked = False
            try:
                ref = None
                if owed.in_doubt and owed.kind in POSTS:
                    ref = self._found(owed, request)
                    looked = True
                outcome = Outcome.FOUND if ref is not None else Outcome.SENT
                if ref is None:
                    ref = self._send(owed, request)
                    if ref is None:
                        outcome = Outcome.SKIPPED
            except NotSent as failure:
                # A post stays in doubt until it is found or posted cleanly: an earlier attempt nobody could look
                # for, or this one, may have reached Slack.
                doubt = owed.kind in POSTS and (failure.in_doubt or (owed.in_doubt and not looked))
                self._finish(done)
                self._hand_back(run[at + 1 :])
                return _Sent(len(done), stop=not self._failed(owed, failure, doubt))
            done.append(_Done(owed, outcome, ref, self._link(owed, ref)))
            request.learn(done[-1])
        self._finish(done)
        return _Sent(len(done), stop=False)

    def _found(self, owed: Owed, request: _Request) -> MessageRef | None:
        channel, thread = self._channel(owed), None
        if owed.kind is Kind.THREAD or (owed.kind is Kind.ACTIVITY and owed.channel is None):
            place = self._thread_of(
                owed, request
            )  # a reply is looked for in its thread, never in the channel's history
            if place is None and owed.kind is Kind.THREAD:
                return None  # never posted: there was no thread to post it in
            channel, thread = place or (self.deps.policy.channels.approvals, None)
        try:
            return self.deps.notifier.find(channel, owed.uid, thread)
        except NotSent as failure:
            if not failure.permanent:
                raise
            # The bot may not read the channel: post again rather than hold this and every later message forever.
            log.error("cannot tell whether message %s reached Slack (%s); posting it again", owed.id, failure)
            return None

    def _channel(self, owed: Owed) -> str:
        return owed.channel or self.deps.policy.channels.audit

    def _send(self, owed: Owed, request: _Request) -> MessageRef | None:
        notifier = self.deps.notifier
        if owed.kind in _SHOWN:
            current = request.view()
            if current is None:
                return None
            if owed.kind is not Kind.REFRESH:
                return notifier.post_request(self._channel(owed), current, owed.uid, alert=owed.kind is Kind.ALERT)
            # A message this run has just posted already shows the request as this run read it (where its
            # messages are is not part of it): editing it would change nothing.
            refs = [
                MessageRef(channel, ts)
                for channel, ts in (
                    (current.approval_channel, current.approval_ts),
                    (current.alert_channel, current.alert_ts),
                )
                if channel and ts and MessageRef(channel, ts) not in request.shown
            ]
            for ref in refs:
                try:
                    notifier.update_request(ref, current, alert=ref.ts == current.alert_ts)
                except NotSent as failure:
                    if not failure.permanent:
                        raise
                    log.warning("request %s: message %s can no longer be edited (%s)", current.id, ref.ts, failure)
            return refs[0] if refs else None
        if owed.kind is Kind.RECONCILED:
            p = owed.payload
            channel, taken = self._channel(owed), bool(p.get("taken", True))
            return notifier.tell_reconciled(channel, p["resource"], p["principal"], p["found"], owed.uid, taken=taken)
        if owed.kind is Kind.ACTIVITY:
            return self._activity(owed, request)
        if owed.kind is Kind.DRILL:
            return notifier.tell_drill(self._channel(owed), owed.payload, owed.uid)
        if owed.kind is Kind.SINK:
            return notifier.tell_audit_sink(self._channel(owed), owed.payload, owed.uid)
        if owed.kind is Kind.POLICY:
            return notifier.tell_policy(self._channel(owed), owed.payload, owed.uid)
        if owed.kind is Kind.THREAD:
            return self._thread(owed, request)
        if owed.kind is Kind.REFUSALS:
            p = owed.payload
            window = timedelta(seconds=float(p["window"]))
            return notifier.warn_refusals(
                self._channel(owed), p["actor"], int(p["count"]), window, p["latest"], owed.uid
            )
        view = self._linked(from_data(owed.payload), request)
        notice = _notice(owed)
        if owed.kind is Kind.REQUESTER:
            return notifier.tell_requester(view, notice, owed.uid)
        return notifier.tell_channel(self._channel(owed), view, notice, owed.uid)

    def _linked(self, view: RequestView, request: _Request) -> RequestView:
        """The notice as it was owed, with the approval message's link as it is now: the message is posted, and its
        link learnt, after the first notices were owed (rows of a request go in order, so it exists by now)."""
        if view.approval_link is not None:
            return view
        current = request.view()
        return replace(view, approval_link=current.approval_link) if current is not None else view

    @staticmethod
    def _thread_of(owed: Owed, request: _Request) -> tuple[str, str] | None:
        """Where a reply about a request goes: the thread of its approval message, or of its emergency alert (first,
        for a reply ``on_alert``); None when neither made it to Slack."""
        current = request.view()
        if current is None:
            return None
        places = [(current.approval_channel, current.approval_ts), (current.alert_channel, current.alert_ts)]
        if owed.payload.get("on_alert"):
            places.reverse()
        return next(((c, t) for c, t in places if c and t), None)

    def _thread(self, owed: Owed, request: _Request) -> MessageRef | None:
        view = from_data(owed.payload["view"])
        place = self._thread_of(owed, request)
        if place is None:
            return None  # its message never made it to Slack: no thread to reply in, and no stray top-level post
        note = dict(owed.payload.get("note") or {})
        note["broadcast"] = bool(owed.payload.get("on_alert"))
        linked = self._linked(view, request)
        return self.deps.notifier.reply_in_thread(place[0], place[1], linked, _notice(owed), note, owed.uid)

    def _activity(self, owed: Owed, request: _Request) -> MessageRef:
        note = ActivityNote.from_data(owed.payload["note"])
        view = from_data(owed.payload["view"])
        if owed.channel is not None:
            return self.deps.notifier.tell_activity(owed.channel, None, view, note, owed.uid)
        # The request's earlier messages went first (rows of a request go in order), so its approval message, or an
        # emergency's alert, has been posted by now; one that Slack refused for good leaves the approvals channel.
        place = self._thread_of(owed, request)
        channel, thread = place if place is not None else (self.deps.policy.channels.approvals, None)
        return self.deps.notifier.tell_activity(channel, thread, view, note, owed.uid)

    def _link(self, owed: Owed, ref: MessageRef | None) -> str | None:
        """The message people are pointed to from DMs and incident channels: the approval message, or for an
        emergency whose approvals and audit channels are one, its alert (never an alert elsewhere: the requester
        may not be in the audit channel). One chat.getPermalink per request."""
        channels = self.deps.policy.channels
        linked = owed.kind is Kind.REQUEST or (owed.kind is Kind.ALERT and channels.approvals == channels.audit)
        if ref is None or not linked or owed.request_id is None:
            return None
        return self.deps.notifier.permalink(ref)

    def _finish(self, done: list[_Done]) -> None:
        """Mark the run's sent rows done, and where the request's own messages went, in one transaction."""
        if not done:
            return
        deps = self.deps
        with deps.db.transaction() as session:
            now = deps.now()
            sent = [(d.owed.id, d.outcome, d.ref.channel if d.ref else None, d.ref.ts if d.ref else None) for d in done]
            ours = outbox.finish_run(session, deps.tuning.instance, now, sent)
            learnt: dict[int, dict[str, str]] = {}  # where each request's messages went: one UPDATE a request
            for owed, _, ref, link in done:
                if owed.id in ours and ref is not None and owed.request_id is not None:
                    fields = learnt.setdefault(owed.request_id, {})
                    if owed.kind is Kind.REQUEST:
                        fields |= {"approval_channel": ref.channel, "approval_ts": ref.ts}
                    elif owed.kind is Kind.ALERT:
                        fields |= {"alert_channel": ref.channel, "alert_ts": ref.ts}
                    if link is not None:
                        fields["approval_link"] = link
            for request_id, fields in learnt.items():
                if fields:
                    queries.set_fields(session, request_id, **fields)
        for owed, outcome, ref, _ in done:
            if outcome is Outcome.FOUND:
                log.info("message %s was in Slack already (%s %s); adopted, not posted again", owed.id, ref, owed.kind)

    def _hand_back(self, untried: list[Owed]) -> None:
        if not untried:
            return
        with self.deps.db.transaction() as session:
            for owed in untried:
                outbox.unclaim(session, owed, self.deps.tuning.instance)

    def _failed(self, owed: Owed, failure: NotSent, doubt: bool) -> bool:
        deps = self.deps
        now = deps.now()
        with deps.db.transaction() as session:
            if failure.permanent:
                outbox.finish(session, owed.id, deps.tuning.instance, now, Outcome.UNDELIVERABLE, failure=str(failure))
            else:
                due = now + retry_wait(owed.attempts + 1)
                outbox.retry_at(session, owed.id, deps.tuning.instance, due, in_doubt=doubt, failure=str(failure))
                if owed.kind is Kind.ALERT and owed.attempts == 0 and owed.request_id is not None:
                    # Security did not hear of a broken glass at once: that is part of the record (once, not at
                    # every retry of a long outage).
                    request = queries.get(session, owed.request_id)
                    if request is not None:
                        audit.record(
                            session, AuditAction.ALERT_FAILED, at=now, request=request, retry_at=due.isoformat()
                        )
        if failure.permanent:
            log.error("gave up message %s (%s, request %s): %s", owed.id, owed.kind, owed.request_id, failure)
            return True
        log.warning("message %s (%s) not delivered: %s; retrying from %s", owed.id, owed.kind, failure, due)
        deps.alarms.wake_at(due)
        return False
