"""Every Slack message the bot owes is delivered once, in order: through dropped connections, Slack outages of any
length, crashes mid-post and restarts. Time is moved, never waited for; Slack is the stand-in on loopback."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.devtools.local_bot import LocalBot
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.delivery import LEASE, Courier
from bot.services.ports import NoCourier
from bot.slack.ids import ActionId
from bot.slack.notifier import MARK_EVENT
from bot.slack.retry import SlackRetry
from bot.store import outbox, replicas
from bot.store.models import OutboxMessage
from tests.e2e.helpers import ALICE, BOB, dm_texts, state, view

APPROVALS, SECURITY = "C0APPROVALS", "C0SECURITY"
# What a Slack outage takes away from the bot's messages. Membership lookups are left working: without them nobody
# could ask or approve at all, which the directory's own tests cover.
MESSAGING = ("chat.postMessage", "chat.update", "conversations.history", "conversations.open")


def no_retry_waits(bot: LocalBot) -> None:
    """Slack's own retries of one call wait in real time; an outage test moves time instead."""
    assert bot.runtime is not None
    for handler in bot.runtime.deps.notifier.client.retry_handlers:  # type: ignore[attr-defined]
        assert isinstance(handler, SlackRetry)
        handler.sleep = lambda _seconds: None


def owed(bot: LocalBot) -> list[OutboxMessage]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def marks_posted(slack: SlackStandIn) -> Counter[str]:
    """How many times Slack took a post with each outbox mark: a duplicate shows as a count above one."""
    marks: Counter[str] = Counter()
    for call in slack.calls("chat.postMessage"):
        metadata = call.args.get("metadata") or {}
        if call.ok and metadata.get("event_type") == MARK_EVENT:
            marks[metadata["event_payload"]["mark"]] += 1
    return marks


def assert_each_delivered_once(bot: LocalBot, slack: SlackStandIn | None = None) -> None:
    rows = owed(bot)
    assert rows and all(row.done_at is not None for row in rows), [(r.id, r.kind, r.failure) for r in rows]
    assert {row.outcome for row in rows} <= {"sent", "found", "skipped"}
    posted = marks_posted(slack or bot.slack)
    assert max(posted.values()) == 1, "a message was posted twice"
    posts = {row.uid for row in rows if row.kind in {k.value for k in outbox.POSTS}}
    assert posts == set(posted), "a message owed was never posted, or one was posted that nobody owed"


def test_every_post_carries_its_outbox_mark(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)

    assert all(
        (call.args.get("metadata") or {}).get("event_type") == MARK_EVENT
        for call in bot.slack.calls("chat.postMessage")
    )
    assert_each_delivered_once(bot)


def test_an_approval_post_whose_connection_dropped_is_found_not_posted_twice_and_approving_edits_it(
    bot: LocalBot,
) -> None:
    bot.slack.drop_next("chat.postMessage")  # Slack posts the approval message; the bot never hears back

    bot.command(BOB, "orders-db 30m INC-1 checkout failing")

    assert len(bot.slack.messages(APPROVALS)) == 1
    assert view(bot, 1).approval_ts is None  # the bot does not know where it is yet
    assert dm_texts(bot, BOB) == []  # the request's later messages wait for it: order is kept

    bot.advance(timedelta(seconds=1))  # the retry looks in the channel first

    [message] = bot.slack.messages(APPROVALS)
    assert view(bot, 1).approval_ts == message.ts  # adopted
    assert bot.slack.calls("conversations.history")
    [received] = dm_texts(bot, BOB)  # "is with the approvers", now that the approval message is out
    assert "|Open request #1>" in received  # linked to the message found, though the run did not render it

    assert "recorded" in bot.click(ALICE, ActionId.APPROVE, 1).text

    [edited] = bot.slack.messages(APPROVALS)
    assert edited.ts == message.ts and edited.updates >= 1
    assert view(bot, 1).status is Status.ACTIVE
    assert "Active" in state(bot.request_message(1))
    assert_each_delivered_once(bot)


def test_a_dm_whose_connection_dropped_is_found_in_the_dm_and_not_sent_twice(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.slack.drop_next("chat.postMessage")  # the "approved" DM arrives; the answer does not

    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.advance(timedelta(seconds=1))

    texts = dm_texts(bot, BOB)
    assert sum("was approved" in text for text in texts) == 1
    assert any("is active" in text for text in texts)  # the notices after it went out once it was found
    assert_each_delivered_once(bot)


def test_messages_owed_through_a_slack_outage_of_minutes_arrive_once_and_in_order(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    no_retry_waits(bot)
    bot.slack.outage(methods=MESSAGING)

    bot.command(BOB, "orders-db 30m INC-7 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE  # Slack being down delays no decision and no grant
    for _ in range(40):  # forty minutes of outage, a sweep a minute: the grant expires and is revoked meanwhile
        bot.advance(timedelta(minutes=1))
    assert view(bot, 1).status is Status.EXPIRED
    assert [event.event for event in receiver.events()] == ["grant", "revoke"]
    assert [call for call in bot.slack.calls("chat.postMessage") if call.ok] == []
    attempts_in_outage = len(bot.slack.calls())

    bot.slack.outage(False)
    bot.advance(timedelta(minutes=1))  # the longest wait between two tries

    texts = dm_texts(bot, BOB)
    order = ["is with the approvers", "was approved", "is active", "⏰", "has expired"]
    positions = [next((i for i, text in enumerate(texts) if phrase in text), -1) for phrase in order]
    assert -1 not in positions and positions == sorted(positions) and len(texts) == len(order), texts
    [message] = bot.slack.messages(APPROVALS)
    assert "Expired" in state(bot.request_message(1)) and message.ts == view(bot, 1).approval_ts
    assert_each_delivered_once(bot)
    # One failed try per sweep (each with the client's own retries), not one per owed message: 40 sweeps, 12 messages.
    assert attempts_in_outage <= 45 * (1 + SlackRetry().max_retry_count)


def test_a_sender_that_died_after_slack_took_its_post_is_adopted_after_its_lease(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bot.runtime is not None
    deps = bot.runtime.deps
    monkeypatch.setattr(deps, "courier", NoCourier())  # the request's thread sends nothing
    bot.command(BOB, "orders-db 30m INC-1 fix")
    first = owed(bot)[0]
    assert first.kind == "request"
    with deps.db.transaction() as session:  # another replica claims it, posts it, and dies before writing it down
        claimed = outbox.claim(session, first.id, "dead-replica", deps.now(), deps.now() + LEASE)
    assert claimed is not None
    deps.notifier.post_request(APPROVALS, view(bot, 1), claimed.uid)

    assert bot.advance(LEASE / 2).delivered == 0  # its lease still holds: nobody else touches it

    bot.advance(LEASE / 2)
    [message] = bot.slack.messages(APPROVALS)
    assert view(bot, 1).approval_ts == message.ts
    assert len(dm_texts(bot, BOB)) == 1
    assert_each_delivered_once(bot)


def test_a_sender_whose_heartbeat_stopped_is_taken_over_without_waiting_for_its_lease(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bot.runtime is not None
    deps = bot.runtime.deps
    monkeypatch.setattr(deps, "courier", NoCourier())
    bot.command(BOB, "orders-db 30m INC-1 fix")
    with deps.db.transaction() as session:  # a live replica claims the post, then is killed mid-call
        replicas.beat(session, "killed-replica", deps.now())
        assert outbox.claim(session, owed(bot)[0].id, "killed-replica", deps.now(), deps.now() + LEASE) is not None

    assert bot.advance(deps.tuning.dead_after / 2).delivered == 0  # its heartbeat is recent: it may still be posting
    bot.advance(deps.tuning.dead_after / 2)

    assert deps.tuning.dead_after < LEASE
    assert len(bot.slack.messages(APPROVALS)) == 1
    assert_each_delivered_once(bot)


def test_a_sender_that_died_before_slack_took_its_post_is_followed_by_one_post(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bot.runtime is not None
    deps = bot.runtime.deps
    monkeypatch.setattr(deps, "courier", NoCourier())
    bot.command(BOB, "orders-db 30m INC-1 fix")
    with deps.db.transaction() as session:
        assert outbox.claim(session, owed(bot)[0].id, "dead-replica", deps.now(), deps.now() + LEASE) is not None

    bot.advance(LEASE)

    assert len(bot.slack.messages(APPROVALS)) == 1
    assert bot.slack.calls("conversations.history")  # it looked before posting
    assert_each_delivered_once(bot)


def test_a_restart_delivers_what_a_stopped_bot_still_owed(make_bot: Callable[..., LocalBot]) -> None:
    first = make_bot()
    no_retry_waits(first)
    first.slack.outage(methods=MESSAGING)
    first.command(BOB, "orders-db 30m INC-1 fix")
    first.click(ALICE, ActionId.APPROVE, 1)
    first.stop()

    second = make_bot(clock=first.clock)  # the same database; Slack is back
    second.advance(timedelta(seconds=1))

    assert len(second.slack.messages(APPROVALS)) == 1
    assert len(dm_texts(second, BOB)) == 3  # with the approvers, approved, active
    assert_each_delivered_once(second)


def test_a_message_slack_refuses_for_good_is_given_up_and_does_not_hold_back_the_rest(
    bot: LocalBot, policy: Any
) -> None:
    bot.slack.error_next("chat.postMessage", "channel_not_found")  # the approvals channel was deleted

    bot.command(BOB, "orders-db 30m INC-1 fix")

    rows = owed(bot)
    assert rows[0].outcome == "undeliverable" and "channel_not_found" in (rows[0].failure or "")
    assert len(dm_texts(bot, BOB)) == 1  # the requester still hears, and nothing waits forever


def test_a_request_s_messages_go_as_one_run_and_a_failure_hands_back_the_rest_untried(bot: LocalBot) -> None:
    no_retry_waits(bot)
    bot.slack.fail_next("chat.postMessage", status=503, channel=BOB)  # the requester's DM fails, this time

    bot.command(BOB, "orders-db 30m INC-3 fix from the incident")

    approval, dm, incident = owed(bot)  # in the order they were owed: the message, the DM, the incident channel
    assert (approval.kind, dm.kind, incident.kind) == ("request", "requester", "channel")
    assert approval.outcome == "sent" and approval.done_at is not None
    assert dm.done_at is None and dm.attempts == 1 and dm.claimed_by is None and dm.due_at > bot.clock.now()
    # Claimed with the others, never tried: as it was before the run took it, so no look in Slack comes first.
    assert incident.done_at is None and incident.attempts == 0 and not incident.in_doubt
    assert incident.claimed_by is None and incident.lease_until is None
    assert [call.args["channel"] for call in bot.slack.calls("chat.postMessage") if call.ok] == [APPROVALS]

    bot.advance(timedelta(seconds=2))  # Slack takes DMs again; the retry is due

    assert [call.args["channel"] for call in bot.slack.calls("chat.postMessage") if call.ok] == [
        APPROVALS,
        BOB,
        "C0INCIDENT",
    ]
    assert_each_delivered_once(bot)


def test_a_run_part_held_by_a_live_sender_is_left_whole_to_it(bot: LocalBot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request's thread claims its run with one read and one compare-and-set. When a live sender holds the
    first row (claimed alone), the later rows look free: the claim that got them is rolled back, not kept."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    deliver = deps.courier.deliver
    monkeypatch.setattr(deps, "courier", NoCourier())
    bot.command(BOB, "orders-db 30m INC-1 fix")
    first, *rest = owed(bot)
    assert rest, "a request owes its message and the requester's DM"
    with deps.db.transaction() as session:
        replicas.beat(session, "live-replica", deps.now())
        assert outbox.claim(session, first.id, "live-replica", deps.now(), deps.now() + LEASE) is not None
    fell_back: list[int] = []
    claim_run = outbox.claim_run
    monkeypatch.setattr(
        outbox, "claim_run", lambda session, first, *a: fell_back.append(first) or claim_run(session, first, *a)
    )

    deliver(1)

    assert fell_back == [first.id]  # the one-statement claim got only the later rows, and was undone
    assert not bot.slack.calls("chat.postMessage")
    assert [(row.claimed_by, row.attempts) for row in owed(bot)] == [("live-replica", 1)] + [(None, 0)] * len(rest)
    with deps.db.transaction() as session:  # the live sender lets go: the whole run is ours, in one claim
        outbox.unclaim(session, outbox.Owed(**_owed_fields(first)), "live-replica")
    deliver(1)
    assert fell_back == [first.id]
    assert_each_delivered_once(bot)


def _owed_fields(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "uid": row.uid,
        "request_id": row.request_id,
        "kind": outbox.Kind(row.kind),
        "channel": row.channel,
        "notice": row.notice,
        "payload": dict(row.payload or {}),
        "created_at": row.created_at,
        "attempts": row.attempts,
        "in_doubt": row.in_doubt,
    }


def test_finishing_a_run_marks_done_only_the_rows_still_ours(bot: LocalBot, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run is finished by one statement; when a lease ran out meanwhile and another sender took a row, only the
    rows still ours are marked done, and only they say where their messages went."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    monkeypatch.setattr(deps, "courier", NoCourier())
    bot.command(BOB, "orders-db 30m INC-1 fix")
    now = deps.now()
    with deps.db.transaction() as session:
        run = outbox.claim_request_run(session, 1, "me", now, now + LEASE)
    assert len(run) >= 2
    taken, kept = run[0], run[1:]
    with deps.db.transaction() as session:  # our lease ran out; another sender took the first row
        session.execute(outbox.update(OutboxMessage).where(OutboxMessage.id == taken.id).values(claimed_by="other"))
    sent = [(owed.id, outbox.Outcome.SENT, "C0SOMEWHERE", f"100.{owed.id}") for owed in run]

    with deps.db.transaction() as session:
        ours = outbox.finish_run(session, "me", now, sent)

    assert ours == {owed.id for owed in kept}
    rows = {row.id: row for row in owed(bot)}
    assert rows[taken.id].done_at is None and rows[taken.id].claimed_by == "other"
    assert all(rows[o.id].done_at is not None and rows[o.id].sent_ts == f"100.{o.id}" for o in kept)


def test_the_answer_shows_what_others_did_while_the_request_s_messages_went(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The person is answered with the request as delivery last read it, once nothing is left to send: an approval
    made (and delivered by the approver's own thread) between this thread's run and its last look is in it."""
    assert bot.runtime is not None
    finish = Courier._finish
    approved: list[str] = []

    def then_approve(self: Courier, done: Any) -> None:
        finish(self, done)
        if done and not approved:
            approved.append(bot.click(ALICE, ActionId.APPROVE, 1).text)

    monkeypatch.setattr(Courier, "_finish", then_approve)

    answer = bot.command(BOB, "orders-db 30m INC-1 fix").text

    assert approved and view(bot, 1).status is Status.ACTIVE
    assert "is active" in answer, answer
    assert "Active" in state(bot.request_message(1))
    assert_each_delivered_once(bot)


def test_an_emergency_s_messages_are_posted_as_granted_and_a_later_change_still_edits_them(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh in the run that just posted the message is skipped; one owed after the run's reading is not."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    post = deps.notifier.post_request
    revoked: list[str] = []

    def revoke_meanwhile(channel: str, current: Any, mark: str, **options: Any) -> Any:
        posted = post(channel, current, mark, **options)
        if not revoked:  # committed after the run read the request, before the run ends
            revoked.append(bot.click(ALICE, ActionId.REVOKE, 1, channel=SECURITY).text)
        return posted

    monkeypatch.setattr(deps.notifier, "post_request", revoke_meanwhile)

    bot.command(BOB, "orders-db 30m INC-1 outage --emergency")

    assert revoked and view(bot, 1).status is Status.REVOKED
    for channel in (SECURITY, APPROVALS):
        assert "Revoked by <@U0ALICE01>" in state(bot.request_message(1, channel))
    assert_each_delivered_once(bot)


def test_a_new_request_s_messages_are_written_claimed_by_the_thread_that_sends_them(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction that stores a request claims what it owes for the thread that commits it: nobody else may take
    those rows while that thread lives, and it sends them without finding and claiming them again."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    deliver = deps.courier.deliver
    seen: list[list[tuple[str | None, int, bool]]] = []

    def deliver_later(request_id: int | None, held: Any = None) -> Any:
        seen.append([(row.claimed_by, row.attempts, row.in_doubt) for row in owed(bot)])
        with deps.db.transaction() as session:  # held by a live sender: another replica gets nothing
            replicas.beat(session, "other-replica", deps.now())
            assert outbox.claim_request_run(session, 1, "other-replica", deps.now(), deps.now() + LEASE) == []
        assert held is not None
        return deliver(request_id, held)

    claims: list[int] = []
    claim_request_run = outbox.claim_request_run
    monkeypatch.setattr(
        outbox,
        "claim_request_run",
        lambda session, request_id, *a: claims.append(request_id) or claim_request_run(session, request_id, *a),
    )
    monkeypatch.setattr(deps.courier, "deliver", deliver_later)

    answer = bot.command(BOB, "orders-db 30m INC-1 fix").text

    [rows] = seen
    assert len(rows) >= 2 and rows == [(deps.tuning.instance, 1, True)] * len(rows)
    assert claims == [1, 1]  # the other replica's try, then the last look that finds nothing left and reads the answer
    assert "with the approvers" in answer or "waiting" in answer.lower(), answer
    assert len(bot.slack.messages(APPROVALS)) == 1 and len(dm_texts(bot, BOB)) == 1
    assert_each_delivered_once(bot)


def test_a_new_request_whose_thread_never_sent_it_is_delivered_once_its_claim_runs_out(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that stored a request and died before sending what it claimed: the rows wait for the claim's lease
    (or the holder's heartbeat) as after any claim, then go once."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    monkeypatch.setattr(deps.courier, "deliver", lambda request_id, held=None: None)  # the thread dies after its commit

    bot.command(BOB, "orders-db 30m INC-1 fix")
    assert all(row.claimed_by == deps.tuning.instance for row in owed(bot))
    assert bot.advance(LEASE / 2).delivered == 0  # its holder still looks alive: nobody else posts meanwhile

    bot.advance(LEASE / 2)
    assert len(bot.slack.messages(APPROVALS)) == 1
    assert len(dm_texts(bot, BOB)) == 1
    assert_each_delivered_once(bot)


def test_a_grant_claims_what_the_request_owes_unless_a_live_sender_holds_part_of_it(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grant's transaction claims the request's rows for its thread, the alert owed when the glass broke with
    the grant's own. When a live sender took the alert meanwhile, the claim is undone whole (a savepoint): the rows
    the grant owed stay free, and go with the rest once that sender lets go."""
    from bot.services import access

    assert bot.runtime is not None
    deps = bot.runtime.deps
    check = access._check_still_allowed
    taken: list[int] = []

    def sender_takes_the_alert(deps_: Any, ctx: Any) -> None:
        check(deps_, ctx)
        first = owed(bot)[0]
        with deps.db.transaction() as session:
            replicas.beat(session, "live-replica", deps.now())
            assert outbox.claim(session, first.id, "live-replica", deps.now(), deps.now() + LEASE) is not None
        taken.append(first.id)

    monkeypatch.setattr(access, "_check_still_allowed", sender_takes_the_alert)

    bot.command(BOB, "orders-db 30m INC-1 outage --emergency")

    rows = owed(bot)
    assert taken and rows[0].kind == "alert" and rows[0].claimed_by == "live-replica"
    assert all(row.done_at is None for row in rows)  # the sender holds the first row: the rest wait for it
    assert [(row.claimed_by, row.attempts) for row in rows[1:]] == [(None, 0)] * (len(rows) - 1)
    with deps.db.transaction() as session:  # the sender dies without posting
        session.execute(
            outbox.update(OutboxMessage).where(OutboxMessage.id == rows[0].id).values(lease_until=deps.now())
        )
    bot.advance(timedelta(seconds=1))
    assert "Active" in state(bot.request_message(1, SECURITY))
    assert_each_delivered_once(bot)


def test_a_grant_s_messages_go_from_its_own_claim_without_another_read(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grant's transaction claims the run and hands over the request as it read it: the run posts it as granted
    with no read of its own, and the last look alone reads it again (for the answer)."""
    from bot.services import delivery

    reads: list[int] = []
    read_in = delivery._Request.read_in
    monkeypatch.setattr(delivery._Request, "read_in", lambda self, session: reads.append(1) or read_in(self, session))

    bot.command(BOB, "orders-db 30m INC-1 outage --emergency")

    assert len(reads) == 1  # the last look, which reads the answer; the run itself went from the grant's reading
    assert not bot.slack.calls("chat.update")
    assert "Active" in state(bot.request_message(1, SECURITY)) and "Active" in state(bot.request_message(1))
    assert_each_delivered_once(bot)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_grant_does_not_wait_for_a_sender_recording_a_row_of_its_run(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that looks dead (its heartbeat is old) yet still runs posts the alert and records it: it locks the
    alert's row, then waits for the request's row, which the grant's transaction holds. The grant's claim must not
    wait for the alert's row in turn (a deadlock, one of the two transactions killed): it leaves the run to
    delivery after its commit."""
    import threading

    from bot.services import access, tell
    from bot.store import queries

    assert bot.runtime is not None
    deps = bot.runtime.deps
    check = access._check_still_allowed
    alert: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def stale_sender_claims_the_alert(deps_: Any, ctx: Any) -> None:
        check(deps_, ctx)
        alert.append(owed(bot)[0].id)
        with deps.db.transaction() as session:
            replicas.beat(session, "stale-replica", deps.now() - timedelta(hours=1))
            assert outbox.claim(session, alert[0], "stale-replica", deps.now(), deps.now() + LEASE) is not None

    def stale_sender_records_it() -> None:
        try:
            with deps.db.transaction() as session:
                sent = [(alert[0], outbox.Outcome.SENT, SECURITY, "1.000001")]
                assert outbox.finish_run(session, "stale-replica", deps.now(), sent) == {alert[0]}
                recorded.set()  # the alert's row is locked by this transaction from here to its commit
                queries.set_fields(session, 1, alert_channel=SECURITY, alert_ts="1.000001")
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    recorded = threading.Event()
    announce = tell.announce

    def while_the_grant_holds_the_request(*args: Any, **kwargs: Any) -> Any:
        threading.Thread(target=stale_sender_records_it, daemon=True).start()
        assert recorded.wait(10)
        return announce(*args, **kwargs)

    monkeypatch.setattr(access, "_check_still_allowed", stale_sender_claims_the_alert)
    monkeypatch.setattr(tell, "announce", while_the_grant_holds_the_request)

    bot.command(BOB, "orders-db 30m INC-1 outage --emergency")

    assert done.wait(10) and not errors, errors
    assert view(bot, 1).status is Status.ACTIVE and view(bot, 1).alert_ts == "1.000001"
    bot.advance(timedelta(seconds=1))
    assert all(row.done_at is not None for row in owed(bot))
