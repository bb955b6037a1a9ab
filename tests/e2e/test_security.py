"""Attacks on the doors: forged and replayed requests, other workspaces, self-approval, floods, stale buttons.

Each test plays the attacker against the real bot over HTTP and checks both that nothing happened and that the
attempt is on the audit trail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.devtools.local_bot import SIGNING_SECRET, LocalBot
from bot.devtools.slack_requests import block_action, sign, signed_headers, slash_command
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent, Decision, Request
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, channel_texts, view

SECURITY = "C0SECURITY"


def events(bot: LocalBot, action: str) -> list[AuditEvent]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def count_rows(bot: LocalBot, model: Any) -> int:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return len(session.scalars(select(model)).all())


def ack_text(response: Any) -> str:
    """What the person sees in the acknowledgement: Bolt answers with JSON or with plain text."""
    try:
        return str(response.json().get("text", ""))
    except ValueError:
        return str(response.text)


def refusal_alerts(bot: LocalBot) -> list[str]:
    return [text for text in channel_texts(bot, SECURITY) if "refused attempts" in text]


# -- signatures and replays ----------------------------------------------------------------------------------


def test_forged_stale_and_unsigned_requests_are_refused_and_written_down(bot: LocalBot) -> None:
    body = slash_command(text="orders-db 30m INC-1 forged", user_id=BOB)
    now = int(time.time())
    attempts = {
        "wrong secret": signed_headers("not-the-signing-secret", body),
        # A minute past Slack's five-minute window, either way: a margin a busy machine cannot eat (one second was,
        # between taking `now` and the request being checked).
        "stale": signed_headers(SIGNING_SECRET, body, timestamp=now - 360),
        "future": signed_headers(SIGNING_SECRET, body, timestamp=now + 360),
        "unsigned": {"Content-Type": "application/x-www-form-urlencoded"},
        "garbage": {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=zz"},
    }
    tampered = signed_headers(SIGNING_SECRET, body)

    statuses = {name: bot.sender.post_raw(body, headers).status_code for name, headers in attempts.items()}
    statuses["tampered body"] = bot.sender.post_raw(body.replace("forged", "forgex"), tampered).status_code

    assert set(statuses.values()) == {401}, statuses
    assert count_rows(bot, Request) == 0
    written = events(bot, "signature_refused")
    assert len(written) == 1  # throttled: one event per ten seconds, with the count of what came since
    assert written[0].actor == "unverified" and written[0].detail["count"] == 1

    bot.clock.advance(timedelta(seconds=11))
    bot.sender.post_raw(body, attempts["wrong secret"])
    written = events(bot, "signature_refused")
    assert [event.detail["count"] for event in written] == [1, 6]


def test_a_replayed_request_is_answered_and_changes_nothing(bot: LocalBot) -> None:
    body = slash_command(text="orders-db 30m INC-1 replay me", user_id=BOB)
    headers = signed_headers(SIGNING_SECRET, body)

    first = bot.sender.post_raw(body, headers)
    replays = [bot.sender.post_raw(body, headers) for _ in range(3)]

    assert first.status_code == 200 and "Asking for" in ack_text(first)
    assert [r.status_code for r in replays] == [200, 200, 200] and all(not r.content for r in replays)
    bot.slack.wait_for(lambda s: s.posts_to("C0APPROVALS"))
    assert count_rows(bot, Request) == 1
    assert audit_actions(bot, 1) == [("requested", BOB)]


def test_a_replayed_approval_grants_once(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    message = bot.request_message(1)
    assert message is not None
    body = block_action(ActionId.APPROVE.value, "1", ALICE, "C0APPROVALS", message["ts"], message=message)
    headers = signed_headers(SIGNING_SECRET, body)

    for _ in range(3):
        bot.sender.post_raw(body, headers)

    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    assert [a for a in audit_actions(bot, 1) if a[0] == "approved"] == [("approved", ALICE)]
    assert len(receiver.events("grant")) == 1


def test_oversized_bodies_are_refused_before_anything_reads_them(bot: LocalBot) -> None:
    body = slash_command(text="x" * 300_000, user_id=BOB)
    assert bot.sender.post(body).status_code == 413
    assert count_rows(bot, Request) == 0


# -- other workspaces ----------------------------------------------------------------------------------------


def test_requests_from_another_workspace_are_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    command = bot.sender.command("orders-db 30m INC-2 from afar", user_id="U0MALLORY", team_id="T0OTHER")
    message = bot.request_message(1)
    assert message is not None
    click = bot.sender.post(
        block_action(ActionId.APPROVE.value, "1", ALICE, "C0APPROVALS", message["ts"], team_id="T0OTHER")
    )

    assert command.status_code == 200 and "serves another Slack workspace" in ack_text(command)
    assert click.status_code == 200
    assert count_rows(bot, Request) == 1 and view(bot, 1).status is Status.PENDING
    assert count_rows(bot, Decision) == 0
    refused = events(bot, "workspace_refused")
    assert len(refused) == 2 and {event.detail["team"] for event in refused} == {"T0OTHER"}
    assert receiver.calls == []


# -- who may decide ------------------------------------------------------------------------------------------


def test_self_approval_and_strangers_are_refused_counted_and_announced(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    replies = [bot.click(BOB, ActionId.APPROVE, 1) for _ in range(2)]
    replies += [bot.click(DAVE, ActionId.APPROVE, 1) for _ in range(2)]

    assert all("cannot decide on your own request" in (r.answer or "") for r in replies[:2])
    assert all("not an approver for orders-db" in (r.answer or "") for r in replies[2:])
    assert view(bot, 1).status is Status.PENDING and count_rows(bot, Decision) == 0
    assert [(e.actor, e.request_id) for e in events(bot, "decision_refused")] == [(BOB, 1)] * 2 + [(DAVE, 1)] * 2
    assert refusal_alerts(bot) == []

    for _ in range(3):  # Dave reaches five refusals in ten minutes: the audit channel hears it, once
        bot.deny(DAVE, 1, "not during the freeze")
    bot.slack.wait_for(lambda _: refusal_alerts(bot))
    assert len(refusal_alerts(bot)) == 1 and "<@U0DAVE> had 5 refused attempts" in refusal_alerts(bot)[0]

    for _ in range(4):  # six to nine: quiet
        bot.deny(DAVE, 1, "not during the freeze")
    assert len(refusal_alerts(bot)) == 1
    bot.deny(DAVE, 1, "not during the freeze")  # ten: twice the threshold, heard again
    bot.slack.wait_for(lambda s: len(refusal_alerts(bot)) == 2)


def test_approvers_are_checked_against_current_group_membership(bot: LocalBot) -> None:
    bot.command(BOB, "payments-admin 30m refunds stuck")
    assert "is recorded" in (bot.click(CAROL, ActionId.APPROVE, 1).answer or "")

    bot.slack.set_group("S0SRELEADS", ["U0CAROL"])  # Alice leaves the team
    bot.clock.advance(timedelta(seconds=61))  # membership is never trusted for longer than a minute

    refused = bot.click(ALICE, ActionId.APPROVE, 1)
    assert "not an approver for payments-admin" in (refused.answer or "")
    assert view(bot, 1).status is Status.PENDING


def test_a_double_click_decides_once_and_edits_the_message_once(bot: LocalBot) -> None:
    bot.command(BOB, "payments-admin 30m refunds stuck")  # two approvals needed: the first leaves it pending
    message = bot.request_message(1)
    assert message is not None
    updates_before = message["updates"]

    first = bot.click(ALICE, ActionId.APPROVE, 1)
    second = bot.click(ALICE, ActionId.APPROVE, 1)

    assert "is recorded" in (first.answer or "")
    assert "already decided" in (second.answer or "") and "nothing was done" in (second.answer or "")
    assert [a for a in audit_actions(bot, 1) if a[0] == "approved"] == [("approved", ALICE)]
    message = bot.request_message(1)
    assert message is not None and message["updates"] == updates_before + 1
    assert "1 of 2" in json.dumps(message["blocks"])


def test_buttons_of_requests_that_no_longer_exist_say_so(bot: LocalBot) -> None:
    reply = bot.click(ALICE, ActionId.REVOKE, 12345)
    assert "There is no request #12345; nothing was done" in (reply.answer or "")


def test_old_revoke_buttons_say_who_revoked(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    receiver.wait_for(1)
    bot.command(CAROL, "revoke 1")

    again = bot.click(ALICE, ActionId.REVOKE, 1)

    assert "access was revoked by <@U0CAROL>" in (again.answer or "") and "Nothing was done" in (again.answer or "")
    assert len(receiver.events("revoke")) == 1


# -- revoke, review and mine are limited to the people the policy allows ---------------------------------------


def test_strangers_cannot_revoke_or_review_and_it_is_written_down(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    receiver.wait_for(1)

    assert "Only the holder or an approver" in bot.command(DAVE, "revoke 1").text
    assert "Only the holder or an approver" in (bot.click(DAVE, ActionId.REVOKE, 1).answer or "")
    assert "Only the holder of request #1 writes its review" in bot.command(DAVE, "review 1 nothing to see").text

    assert view(bot, 1).status is Status.ACTIVE
    assert [e.actor for e in events(bot, "revoke_refused")] == [DAVE, DAVE]
    assert [e.actor for e in events(bot, "review_refused")] == [DAVE]


def test_mine_shows_only_your_own_and_what_waits_for_you(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 secret incident")
    bot.command(BOB, "payments-admin 30m refunds stuck")

    dave = bot.command(DAVE, "mine").text
    alice = bot.command(ALICE, "mine").text
    bob = bot.command(BOB, "mine").text

    assert "#1" not in dave and "#2" not in dave and "secret incident" not in dave
    assert "Waiting for your decision" in alice and "#1" in alice and "#2" in alice
    assert "Your open requests" in bob and "Waiting for your decision" not in bob
    bot.click(ALICE, ActionId.APPROVE, 2)
    assert "#2" not in bot.command(ALICE, "mine").text.split("Waiting for your decision")[-1]


# -- rate limits ------------------------------------------------------------------------------------------------


def test_a_flood_of_clicks_and_commands_is_slowed_down(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, actions_per_minute=3))

    replies = [bot.command(DAVE, "list") for _ in range(3)]
    slowed = bot.command(DAVE, "list")
    click = bot.click(DAVE, ActionId.APPROVE, 1)

    assert all("Resources you may request" in r.text for r in replies)
    assert "Slow down: at most 3 Breakglass actions a minute" in slowed.text
    assert "Slow down" in (click.answer or "")
    assert "Resources you may request" in bot.command(ALICE, "list").text  # others are not held up
    assert [e.actor for e in events(bot, "rate_limited")] == [DAVE]  # one event per burst

    bot.clock.advance(timedelta(seconds=20))  # one action a 20 s at this limit
    assert "Resources you may request" in bot.command(DAVE, "list").text


def test_requests_per_hour_are_capped_across_the_database(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, requests_per_hour=2))

    for n in range(2):
        assert "is with the approvers" in bot.command(BOB, f"orders-db 30m INC-{n} fix").text
        bot.command(BOB, f"revoke {n + 1}")  # withdrawn: one live request at a time, yet each one counts
    refused = bot.command(BOB, "orders-db 30m INC-3 fix")

    assert "2 requests in the last hour; the limit is 2" in refused.text
    assert count_rows(bot, Request) == 2  # the transaction that counted is the one that would have stored it
    assert audit_actions(bot).count(("rate_limited", BOB)) == 1
    bot.clock.advance(timedelta(minutes=61))
    assert "is with the approvers" in bot.command(BOB, "orders-db 30m INC-4 fix").text


def test_a_capped_requester_is_refused_before_anything_is_looked_up(
    make_bot: Callable[..., LocalBot], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood from someone over the cap costs a count each, not a directory, review or on-call lookup."""
    from bot.services import reviews, triggers

    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, requests_per_hour=1))
    assert bot.runtime is not None
    deps = bot.runtime.deps
    assert "is with the approvers" in bot.command(BOB, "orders-db 30m INC-0 fix").text
    bot.command(BOB, "revoke 1")
    looked: list[str] = []
    person, blocked, on_call = deps.directory.person, reviews.check_not_blocked, triggers.on_call
    monkeypatch.setattr(deps.directory, "person", lambda *a: looked.append("directory") or person(*a))
    monkeypatch.setattr(reviews, "check_not_blocked", lambda *a: looked.append("reviews") or blocked(*a))
    monkeypatch.setattr(triggers, "on_call", lambda *a: looked.append("on-call") or on_call(*a))

    for n in range(3):
        assert "the limit is 1" in bot.command(BOB, f"orders-db 30m INC-{n + 1} fix").text

    assert looked == []
    assert audit_actions(bot).count(("rate_limited", BOB)) == 3


# -- signatures made the way Slack makes them are the only way in ------------------------------------------------


@pytest.mark.parametrize("secret", ["", SIGNING_SECRET[:-1], SIGNING_SECRET + "x"])
def test_near_miss_secrets_do_not_verify(bot: LocalBot, secret: str) -> None:
    body = slash_command(text="list", user_id=BOB)
    timestamp = int(time.time())
    headers = {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(secret, timestamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert bot.sender.post_raw(body, headers).status_code == 401


# -- extend -------------------------------------------------------------------------------------------------------


def active(bot: LocalBot, text: str = "orders-db 30m INC-1 fix") -> int:
    bot.command(BOB, text)
    request_id = max(count_rows(bot, Request), 1)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    bot.slack.wait_for(lambda _: view(bot, request_id).status is Status.ACTIVE)
    return request_id


def test_an_approver_extends_and_access_lasts_until_the_new_end(bot: LocalBot, receiver: WebhookReceiver) -> None:
    request_id = active(bot)
    before = view(bot, request_id).expires_at
    assert before is not None

    reply = bot.command(CAROL, f"extend {request_id} 45m")

    assert "now lasts until" in reply.text
    after = view(bot, request_id).expires_at
    assert after == before + timedelta(minutes=45)
    assert ("extended", CAROL) in audit_actions(bot, request_id)
    bot.slack.wait_for(lambda _: any("now lasts until" in t for t in dm_texts_of(bot)))
    bot.advance(timedelta(minutes=31))  # past the original end: still active
    assert view(bot, request_id).status is Status.ACTIVE
    bot.advance(timedelta(minutes=45))
    assert view(bot, request_id).status is Status.EXPIRED
    assert len(receiver.events("revoke")) == 1


def dm_texts_of(bot: LocalBot) -> list[str]:
    return [str(call.args.get("text")) for call in bot.slack.dms(BOB)]


def test_who_may_extend(bot: LocalBot) -> None:
    request_id = active(bot)

    own = bot.command(BOB, f"extend {request_id} 10m").text
    stranger = bot.command(DAVE, f"extend {request_id} 10m").text

    # The holder's own extend is an ask for the approvers (as "Ask for more time" is), never more time by itself.
    assert "You asked for 10m more" in own and view(bot, request_id).extension_seconds == 600
    assert "Only an approver may extend" in stranger
    assert [e.actor for e in events(bot, "extend_refused")] == [DAVE]
    unchanged = view(bot, request_id)
    assert unchanged.granted_at is not None and unchanged.expires_at == unchanged.granted_at + timedelta(minutes=30)


def test_an_emergency_holder_extends_their_own_and_security_hears_it(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-9 on fire --emergency")
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)

    reply = bot.command(BOB, "extend 1 30m").text

    assert "now lasts until" in reply
    bot.slack.wait_for(lambda _: any("was extended" in t for t in channel_texts(bot, SECURITY)))


def test_extensions_stay_within_the_longest_duration_and_need_active_access(bot: LocalBot) -> None:
    request_id = active(bot, "orders-db 1h30m INC-1 fix")  # orders-db allows 2h in all

    too_long = bot.command(CAROL, f"extend {request_id} 45m").text
    nonsense = bot.command(CAROL, f"extend {request_id} soon").text
    assert "orders-db allows 2h in all; this grant has had 1h30m, so at most 30m more" in too_long
    assert "Say how much longer" in nonsense
    assert "now lasts until" in bot.command(CAROL, f"extend {request_id} 30m").text

    bot.command(ALICE, f"revoke {request_id}")
    ended = bot.command(CAROL, f"extend {request_id} 5m").text
    assert "access was revoked by <@U0ALICE01>" in ended and "Only active access can be extended" in ended
