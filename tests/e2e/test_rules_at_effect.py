"""Every rule holds at the moment it takes effect, not only when it was asked.

Each test plays what an attacker or a careless user would do against the real bot over HTTP, on SQLite and on
PostgreSQL. Races are forced, not hoped for: ``first_write_of`` runs a competing action to completion at the exact
moment one person's action is about to write its first row, which is the widest window a real race could have.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.commands import Ask
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services import requests
from bot.services.deps import Deps, Tuning
from bot.services.ports import MembershipUnknown
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent, Decision
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, channel_texts, view

SECURITY = "C0SECURITY"
GROUP_CACHE = timedelta(seconds=61)  # past the longest a group's membership is cached


def deps_of(bot: LocalBot) -> Deps:
    assert bot.runtime is not None
    return bot.runtime.deps


def actions(bot: LocalBot, request_id: int) -> list[str]:
    return [action for action, _ in audit_actions(bot, request_id)]


def events(bot: LocalBot, action: str) -> list[AuditEvent]:
    with deps_of(bot).db.transaction() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def remove_from_oncall(bot: LocalBot) -> None:
    """Bob is offboarded from the requesters' group, and the bot's cached membership has gone stale."""
    bot.slack.set_group("S0ONCALL", [])
    bot.clock.advance(GROUP_CACHE)


def active(bot: LocalBot, text: str = "orders-db 30m INC-1 fix") -> int:
    bot.command(BOB, text)
    bot.click(ALICE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE
    return 1


@contextmanager
def first_write_of(
    bot: LocalBot, actor: str, then: Callable[[], object], *, at: int = 1, wait: float | None = None
) -> Iterator[list[Any]]:
    """While inside, the first (or ``at``-th) INSERT/UPDATE/DELETE made for ``actor``'s action (the thread that
    asked whether ``actor`` is listed as an approver) waits until ``then()`` has finished, in a thread of its own,
    or ``wait`` seconds have passed (where a row lock makes ``then`` wait for the action instead). Yields
    ``then``'s result once known."""
    deps = deps_of(bot)
    marked: set[int] = set()
    writes: list[str] = []
    result: list[Any] = []
    fired = threading.Event()
    original = deps.is_listed

    def is_listed(user_id: str, ids: list[str]) -> bool:
        if user_id == actor:
            marked.add(threading.get_ident())
        return original(user_id, ids)

    def before_execute(*args: Any) -> None:
        statement = str(args[2]).lstrip().upper()
        if threading.get_ident() not in marked or fired.is_set():
            return
        if statement.startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement)
            if len(writes) < at:
                return
            fired.set()
            racer = threading.Thread(target=lambda: result.append(then()), daemon=True)
            racer.start()
            racer.join(wait)

    deps.is_listed = is_listed  # type: ignore[method-assign]
    event.listen(deps.db.engine, "before_cursor_execute", before_execute)
    try:
        yield result
    finally:
        event.remove(deps.db.engine, "before_cursor_execute", before_execute)
        deps.is_listed = original  # type: ignore[method-assign]
    assert fired.is_set(), "the race was never run: the action wrote nothing"


# -- 1. the requester is checked again at approval, before the grant, and at extension ---------------------------


def test_an_offboarded_requesters_pending_request_cannot_be_approved(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    remove_from_oncall(bot)

    assert "no resource 'orders-db' you may request" in bot.command(BOB, "orders-db 30m INC-2 again").text
    reply = bot.click(ALICE, ActionId.APPROVE, 1)

    assert "The requester of #1 is no longer among the people who may request orders-db" in reply.text
    assert "approval was not recorded" in reply.text
    assert view(bot, 1).status is Status.PENDING and view(bot, 1).decisions == ()
    assert receiver.events("grant") == []
    assert actions(bot, 1) == ["requested", "approval_blocked"]  # written down, not counted against Alice
    assert [e.actor for e in events(bot, "decision_refused")] == []


def test_a_requester_offboarded_between_the_approval_and_the_grant_gets_nothing(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease longer than the group cache, so moving time past the cache does not also hand the claim to nobody.
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, lease=timedelta(minutes=5)))
    bot.command(BOB, "orders-db 30m INC-1 fix")
    deps = deps_of(bot)
    original = deps.may_request
    asked: list[str] = []

    def may_request(user_id: str, resource: Any) -> bool:
        allowed = original(user_id, resource)
        if user_id == BOB and not asked:  # the approval's look is the last one Bob passes
            asked.append(user_id)
            remove_from_oncall(bot)
        return allowed

    monkeypatch.setattr(deps, "may_request", may_request)
    reply = bot.click(ALICE, ActionId.APPROVE, 1)

    assert asked == [BOB], "the approval never asked whether Bob may still request orders-db"
    assert view(bot, 1).status is Status.GRANT_FAILED
    assert "no longer among the people who may request orders-db" in (view(bot, 1).failure or "")
    assert receiver.events("grant") == [] and not receiver.has_access("bob")
    assert "active" not in reply.text


def test_access_of_an_offboarded_requester_is_not_extended(bot: LocalBot, receiver: WebhookReceiver) -> None:
    request_id = active(bot)
    remove_from_oncall(bot)

    reply = bot.command(CAROL, f"extend {request_id} 15m").text

    assert "The requester of #1 is no longer among the people who may request orders-db" in reply
    assert receiver.events("extend") == []
    granted = view(bot, request_id)
    assert granted.granted_at is not None and granted.expires_at == granted.granted_at + timedelta(minutes=30)


def test_a_group_lookup_slack_cannot_answer_decides_nothing_and_is_not_called_offboarding(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.clock.advance(GROUP_CACHE)
    bot.slack.error_next("usergroups.users.list", "fatal_error", n=10)

    reply = bot.click(ALICE, ActionId.APPROVE, 1).text
    ask = bot.command(BOB, "orders-db 30m INC-2 again").text

    for answer in (reply, ask):
        assert "could not check user-group membership with Slack" in answer and "nothing was done" in answer
        assert "no longer among" not in answer and "not among" not in answer
    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []
    assert actions(bot, 1) == ["requested"]
    assert events(bot, "request_refused") == [] and events(bot, "decision_refused") == []  # nobody counted as probing

    bot.slack.clear_faults()  # Slack is back: the same click works
    assert "approval of request #1 is recorded" in bot.click(ALICE, ActionId.APPROVE, 1).text
    assert view(bot, 1).status is Status.ACTIVE


def test_a_group_lookup_that_fails_before_the_grant_ends_it_honestly_without_touching_the_backend(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    bot.command(BOB, "orders-db 30m INC-1 fix")
    deps = deps_of(bot)
    original = deps.may_request
    asked: list[str] = []

    def may_request(user_id: str, resource: Any) -> bool:
        asked.append(user_id)
        if len(asked) > 1:  # the approval's look passes; Slack stops answering before the grant's
            raise MembershipUnknown("S0ONCALL")
        return original(user_id, resource)

    monkeypatch.setattr(deps, "may_request", may_request)
    bot.click(ALICE, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.GRANT_FAILED
    assert "could not confirm with Slack" in (view(bot, 1).failure or "")
    assert receiver.calls == []  # nothing was granted, so nothing is "undone" either
    assert "grant_undone" not in actions(bot, 1)


def test_the_holder_revokes_their_own_access_while_slack_cannot_list_a_group(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    request_id = active(bot)
    bot.clock.advance(GROUP_CACHE)
    bot.slack.error_next("usergroups.users.list", "fatal_error", n=20)

    assert "revoked" in bot.command(BOB, f"revoke {request_id}").text
    assert view(bot, request_id).status is Status.REVOKED and not receiver.has_access("bob")


# -- 2. a decision that loses its race says so, and the trail says nothing it did not do --------------------------


def test_a_deny_that_loses_to_an_approval_says_so_and_records_nothing(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot()
    bot.command(BOB, "orders-db 30m INC-1 fix")

    with first_write_of(bot, CAROL, lambda: bot.click(ALICE, ActionId.APPROVE, 1)):
        reply = bot.deny(CAROL, 1, "not during the freeze")

    assert "You denied" not in reply.text
    assert "was approved by <@U0ALICE01>" in reply.text and "Nothing was done" in reply.text
    assert view(bot, 1).status is Status.ACTIVE and receiver.has_access("bob")
    assert "denied" not in actions(bot, 1)
    with deps_of(bot).db.transaction() as session:
        assert [d.approver_id for d in session.scalars(select(Decision))] == [ALICE]
    assert not any("denied" in text for text in channel_texts(bot, "C0INCIDENT"))


def test_a_decision_holds_its_row_from_the_deciding_step_until_it_commits(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    # Alice clicks Approve while Carol's Deny has taken its deciding step and is writing the rest: Alice must wait
    # for Carol's commit (a row lock on PostgreSQL, the write lock on SQLite), then see the request denied.
    with first_write_of(bot, CAROL, lambda: bot.click(ALICE, ActionId.APPROVE, 1), at=2, wait=1.0) as approval:
        reply = bot.deny(CAROL, 1, "not during the freeze")
    bot.slack.wait_for(lambda _: approval, timeout=15)

    assert "You denied request #1" in reply.text
    assert "was denied by <@U0CAROL>" in approval[0].text and "Nothing was done" in approval[0].text
    assert view(bot, 1).status is Status.DENIED and receiver.events("grant") == []
    assert actions(bot, 1) == ["requested", "denied"]


def test_an_approval_that_loses_to_a_withdrawal_says_so_and_records_nothing(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    with first_write_of(bot, ALICE, lambda: bot.command(BOB, "revoke 1")) as withdrawal:
        reply = bot.click(ALICE, ActionId.APPROVE, 1)

    assert "withdrawn" in withdrawal[0].text
    assert "Your approval" not in reply.text and "was withdrawn by <@U0BOB>" in reply.text
    assert view(bot, 1).status is Status.CANCELLED
    assert actions(bot, 1) == ["requested", "cancelled"]
    assert receiver.events("grant") == []


def test_two_approvals_at_once_both_count_for_a_two_person_rule(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(DAVE, "payments-admin 30m refund stuck")

    with first_write_of(bot, CAROL, lambda: bot.click(ALICE, ActionId.APPROVE, 1)):
        reply = bot.click(CAROL, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.ACTIVE, reply.text
    assert actions(bot, 1).count("approved") == 2 and len(receiver.events("grant")) == 1


def test_an_approval_by_someone_no_longer_an_approver_does_not_count(bot: LocalBot) -> None:
    bot.command(DAVE, "payments-admin 30m refund stuck")  # needs two of S0SRELEADS
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.slack.set_group("S0SRELEADS", [CAROL, "U0ERIN"])  # Alice left the team
    bot.clock.advance(GROUP_CACHE)

    bot.click(CAROL, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.PENDING  # one approval from a current approver is not two
    bot.click("U0ERIN", ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE


# -- 3. an emergency holder extends their own grant only while they could break the glass again ------------------


def test_an_emergency_holder_who_may_no_longer_break_the_glass_cannot_extend_it(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-9 on fire --emergency")
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    remove_from_oncall(bot)

    reply = bot.command(BOB, "extend 1 30m").text

    assert "may no longer break the glass" in reply and "ask an approver" in reply
    assert [e.actor for e in events(bot, "extend_refused")] == [BOB]
    assert receiver.events("extend") == []


# -- 4. a lapsed request cannot be revived by a click before the sweep notices ------------------------------------


def test_a_request_past_its_pending_timeout_cannot_be_approved(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.clock.advance(timedelta(hours=24, seconds=1))  # the sweep has not run: the bot was down, or is behind

    reply = bot.click(ALICE, ActionId.APPROVE, 1)

    assert "lapsed" in reply.text and "Nothing was done" in reply.text
    assert view(bot, 1).status is Status.TIMED_OUT
    assert actions(bot, 1) == ["requested", "timed_out"]
    assert receiver.events("grant") == []


# -- 5. an emergency alert lost to a Slack outage is sent once Slack is back -----------------------------------


def test_an_emergency_alert_lost_to_a_slack_outage_is_sent_when_slack_returns(bot: LocalBot) -> None:
    bot.slack.fail_next("chat.postMessage", n=2, status=503, channel=SECURITY)  # the alert's post and its first retry
    for handler in deps_of(bot).notifier.client.retry_handlers:  # type: ignore[attr-defined]
        handler.sleep = lambda _seconds: None  # the client's own retries need not wait in real time here

    bot.command(BOB, "orders-db 30m INC-9 on fire --emergency", wait=False)
    # Slack's retries of the alert take several seconds; the grant does not wait for Slack.
    wait_until(lambda: "alert_failed" in actions(bot, 1), timeout=60)

    assert view(bot, 1).status is Status.ACTIVE
    assert [call for call in bot.slack.posts_to(SECURITY) if not call.failed] == []
    assert bot.request_message(1, "C0APPROVALS") is None  # a request's messages go out in order: the alert first

    assert bot.advance(timedelta(seconds=1)).delivered == 0  # the outbox retries after 1 s: Slack fails it again
    report = bot.advance(timedelta(seconds=2))  # then after 2 s, 4 s… at most a minute apart

    assert report.delivered >= 2
    alert = bot.request_message(1, SECURITY)
    assert alert is not None and ActionId.REVOKE in str(alert["blocks"])
    assert bot.request_message(1, "C0APPROVALS") is not None
    assert len([call for call in bot.slack.posts_to(SECURITY) if not call.failed]) == 1
    assert bot.advance(timedelta(minutes=5)).delivered == 0  # sent once, then owed no more
    assert actions(bot, 1).count("alert_failed") == 1


def test_a_slow_alert_post_is_not_posted_again_by_a_delivery_meanwhile(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = deps_of(bot)
    post = deps.notifier.post_request
    meanwhile: list[int] = []

    def slow_post(channel: str, current: Any, mark: str, **options: Any) -> Any:
        if channel == SECURITY and not meanwhile:  # Slack takes its time (retries, 429 waits) with the alert
            bot.clock.advance(timedelta(minutes=1))
            meanwhile.append(deps.courier.drain())  # the next sweep, or another replica
        return post(channel, current, mark, **options)

    monkeypatch.setattr(deps.notifier, "post_request", slow_post)
    bot.command(BOB, "orders-db 30m INC-9 on fire --emergency")

    assert meanwhile == [0]
    assert len([call for call in bot.slack.posts_to(SECURITY) if not call.failed]) == 1
    assert bot.request_message(1, SECURITY) is not None


# -- 6. ended access stays ended ----------------------------------------------------------------------------------


def test_an_expired_grant_the_sweep_has_not_revoked_cannot_be_extended(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    request_id = active(bot)
    bot.clock.advance(timedelta(minutes=31))  # past its end; the sweep has not run yet

    reply = bot.command(CAROL, f"extend {request_id} 30m").text

    assert "expired" in reply and "nothing was done" in reply
    assert receiver.events("extend") == []
    bot.sweep()
    ended = view(bot, request_id)
    assert ended.status is Status.EXPIRED
    assert ended.granted_at is not None and ended.expires_at == ended.granted_at + timedelta(minutes=30)


def test_an_extension_racing_the_expiry_sweep_of_a_replica_whose_clock_runs_ahead(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot()
    request_id = active(bot)
    ahead = make_bot()  # a second replica on the same database, its clock a few minutes ahead
    ahead.clock.advance(bot.clock.now() - ahead.clock.now() + timedelta(minutes=31))
    bot.clock.advance(timedelta(minutes=29))
    extended: list[str] = []

    deps = deps_of(ahead)
    fired = threading.Event()

    def before_execute(*args: Any) -> None:
        if not fired.is_set() and str(args[2]).lstrip().upper().startswith("UPDATE"):
            fired.set()  # the sweep read the grant as due; the extension commits before the sweep's move
            racer = threading.Thread(target=lambda: extended.append(bot.command(CAROL, "extend 1 30m").text))
            racer.start()
            racer.join(3)  # on PostgreSQL the sweep holds the row lock, so the extension waits for it instead

    event.listen(deps.db.engine, "before_cursor_execute", before_execute)
    try:
        ahead.sweep()
    finally:
        event.remove(deps.db.engine, "before_cursor_execute", before_execute)
    bot.slack.wait_for(lambda _: extended, timeout=10)

    final = view(bot, request_id)
    assert final.granted_at is not None
    if "now lasts until" in extended[0]:  # the extension won: the grant is still there, with its new end
        assert final.status is Status.ACTIVE
        assert final.expires_at == final.granted_at + timedelta(hours=1)
    else:  # the sweep won: the grant ended at its first end, and the holder was not told otherwise
        assert final.status is Status.EXPIRED, extended
        assert final.expires_at == final.granted_at + timedelta(minutes=30)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the backend call never started"
        time.sleep(0.005)


def in_background(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    return thread, result


# The backend holds a call until the test releases it: a hold of fixed length could end, on a busy machine, before
# the test's next command arrived. Adapter and bot wait longer than any hold, so a held call still succeeds.
HELD = 60.0
PATIENT = re.sub(r"timeout: \d+\n", "timeout: 90\n", POLICY)
PATIENT_TUNING = Tuning(grant_retry_pause=0.01, call_timeout=90.0)


def test_a_revoke_waits_for_an_extension_whose_backend_call_is_under_way(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(PATIENT), tuning=PATIENT_TUNING)
    request_id = active(bot)
    receiver.hang(HELD)  # the backend takes its time to move the end
    thread, extension = in_background(lambda: bot.command(CAROL, f"extend {request_id} 30m").text)
    wait_until(lambda: receiver.in_flight == 1)

    during = bot.command(BOB, f"revoke {request_id}").text
    receiver.release()
    thread.join(30)

    assert "being extended right now" in during  # a revoke and a backend extend never interleave
    assert "now lasts until" in extension[0]
    assert [call.event for call in receiver.calls] == ["grant", "extend"]
    assert "revoked" in bot.command(BOB, f"revoke {request_id}").text
    assert not receiver.has_access("bob") and view(bot, request_id).status is Status.REVOKED


def test_a_second_extension_waits_and_a_failed_one_leaves_the_end_where_it_was(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(PATIENT), tuning=PATIENT_TUNING)
    request_id = active(bot)
    first_end = view(bot, request_id).expires_at
    receiver.hang(HELD)
    receiver.fail_next(1, status=500)  # the first extension's backend call fails, after a while
    thread, first = in_background(lambda: bot.command(CAROL, f"extend {request_id} 30m").text)
    wait_until(lambda: receiver.in_flight == 1)

    second = bot.command(ALICE, f"extend {request_id} 15m").text
    receiver.release()
    thread.join(30)

    assert "changed just now" in second and "nothing was done" in second
    assert "could not extend" in first[0] and "access still ends when it did" in first[0]
    assert view(bot, request_id).expires_at == first_end
    assert actions(bot, request_id)[-2:] == ["extended", "extend_failed"]


def test_an_extend_the_bot_stopped_waiting_for_is_followed_by_a_revoke_if_it_lands_after_the_end(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(PATIENT), tuning=Tuning(grant_retry_pause=0.01, call_timeout=0.5))
    request_id = active(bot)
    receiver.hang(HELD)  # longer than the bot waits, shorter than the adapter's own timeout: it answers, late

    extension = bot.command(CAROL, f"extend {request_id} 30m").text
    receiver.hang(0)  # the revoke is answered at once; the extend stays held
    revoke = bot.command(BOB, f"revoke {request_id}").text
    receiver.release()  # the extend lands after the revoke

    assert "could not extend" in extension and "access still ends when it did" in extension
    assert "revoked" in revoke  # the hold was let go with the extension's failure
    wait_until(lambda: "late_extend_revoked" in actions(bot, request_id))
    assert [call.event for call in receiver.calls] == ["grant", "extend", "revoke", "revoke"]
    assert not receiver.has_access("bob")


# -- 7. a review is for access that was given ---------------------------------------------------------------------


def test_no_review_for_a_grant_that_failed_and_is_being_undone(bot: LocalBot, receiver: WebhookReceiver) -> None:
    receiver.fail_next(4, status=503)  # three grant attempts, then the undoing revoke, all fail
    bot.command(BOB, "orders-db 30m INC-9 on fire --emergency")
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.REVOKE_FAILED)

    reply = bot.command(BOB, "review 1 we fixed it").text

    assert "never granted access" in reply
    assert "review_written" not in actions(bot, 1)
    assert "never granted access" in bot.command(ALICE, "review 1").text  # nor is there a packet to read
    bot.advance(timedelta(minutes=5))  # the undo is retried, succeeds, and asks for no review
    assert view(bot, 1).status is Status.GRANT_FAILED and view(bot, 1).review is None


# -- 8. mine shows what waits for you, however much waits for others ---------------------------------------------

LEDGER = """
  ledger:
    adapter: log
    approvers: [U0CAROL]
"""


def test_mine_shows_the_request_you_must_decide_behind_fifty_you_do_not(
    make_bot: Callable[..., LocalBot], policy: Policy
) -> None:
    bot = make_bot(policy=parse_policy(POLICY + LEDGER), tuning=Tuning(grant_retry_pause=0.01, requests_per_hour=100))
    for number in range(50):  # older requests on a resource Alice does not approve, by fifty people (one live each)
        requests.submit(deps_of(bot), f"U0LEDGER{number:02d}", Ask("ledger", None, f"batch {number}", False), None)
    bot.command(BOB, "orders-db 30m INC-1 fix")

    mine = bot.command(ALICE, "mine").text

    assert "#51" in mine and "Waiting for your decision" in mine
    assert "ledger" not in mine
    carols = bot.command(CAROL, "mine").text
    assert "#25 `ledger`" in carols and "…and 26 more" in carols  # 51 wait for Carol; the oldest 25 are listed


# -- 9. nothing is told to people who may not request, and every forbidden attempt is written down ----------------


def test_a_non_requester_learns_nothing_about_a_resource_they_may_not_request(bot: LocalBot) -> None:
    typo = bot.command(DAVE, "ordes-db 30m INC-1 fix").text
    hidden = bot.command(DAVE, "orders-db 3h no ticket").text

    assert "There is no resource 'ordes-db' you may request. Resources you may request: payments-admin." in typo
    assert hidden == typo.replace("ordes-db", "orders-db")  # not even whether it exists; nor its limits or pattern
    assert [e.actor for e in events(bot, "request_refused")] == [DAVE]  # the typo is not counted, the attempt is
    # A member of the requesters' group is told everything they may request, the group's resources included.
    assert "Resources you may request: orders-db, payments-admin." in bot.command(BOB, "ordes-db 30m INC-1 x").text


def test_every_forbidden_emergency_attempt_is_written_down_and_counted(bot: LocalBot) -> None:
    for _ in range(6):
        reply = bot.command(DAVE, "payments-admin 30m refund --emergency")
        assert "does not allow emergency access" in reply.ack  # answered at once, before any lookup

    bot.slack.wait_for(lambda _: len(events(bot, "request_refused")) == 6)
    assert [e.resource for e in events(bot, "request_refused")] == ["payments-admin"] * 6
    alerts = bot.slack.wait_for(lambda _: [t for t in channel_texts(bot, SECURITY) if "refused attempts" in t])
    assert len(alerts) == 1 and "<@U0DAVE>" in alerts[0]
