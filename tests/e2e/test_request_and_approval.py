"""Request, decide, grant: the real app over HTTP, Slack's signatures, a real webhook backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from bot.adapters.webhook import verify
from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.slack.ids import ActionId
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, buttons, channel_texts, dm_texts, state, view


def test_request_posts_an_approval_message_and_tells_the_requester(bot: LocalBot) -> None:
    reply = bot.command(BOB, "orders-db 30m INC-4211 checkout failing", channel="C0INCIDENT")

    assert reply.status == 200
    assert "Asking for `orders-db`" in reply.ack  # its limits are checked once Bob's group membership is known
    assert "Request #1 for `orders-db` (30m)" in (reply.answer or "")
    message = bot.request_message(1)
    assert buttons(message) == [ActionId.APPROVE, ActionId.APPROVE_WITH_COMMENT, ActionId.DENY]
    # The requester is named, not mentioned: the message calls on its deciders and nobody else.
    assert "Bob Oncall" in str(message["blocks"]) and "<@U0BOB>" not in str(message["blocks"])
    assert "INC-4211 checkout failing" in str(message["blocks"])
    assert "Waiting for approval (0 of 1)" in state(message)
    assert any("is with the approvers" in text for text in dm_texts(bot, BOB))
    assert any("asked for access to *orders-db*" in text for text in channel_texts(bot, "C0INCIDENT"))
    assert view(bot, 1).status is Status.PENDING
    assert audit_actions(bot, 1) == [("requested", BOB)]


def test_requester_cannot_approve_and_non_approver_is_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    own = bot.click(BOB, ActionId.APPROVE, 1)
    stranger = bot.click(DAVE, ActionId.APPROVE, 1)

    assert own.status == 200 and "cannot decide on your own request" in (own.answer or "")
    assert stranger.status == 200 and "not an approver for orders-db" in (stranger.answer or "")
    assert view(bot, 1).status is Status.PENDING
    assert bot.request_message(1)["updates"] == 0  # type: ignore[index]
    assert receiver.calls == []
    assert ("decision_refused", BOB) in audit_actions(bot, 1) and ("decision_refused", DAVE) in audit_actions(bot, 1)


def test_approval_grants_through_the_webhook_and_edits_the_message(bot: LocalBot, receiver: WebhookReceiver) -> None:
    receiver.respond_with(body={"instructions": "psql -h orders.internal -U bob"})
    bot.command(BOB, "orders-db 30m INC-4211 checkout failing")

    reply = bot.click(CAROL, ActionId.APPROVE, 1)  # carol approves as a member of S0SRELEADS

    assert "approval of request #1 is recorded" in (reply.answer or "")
    [grant] = receiver.wait_for(1)
    assert grant.valid and grant.event == "grant"
    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert grant.body == {
        "event": "grant",
        "grant_id": current.uid,
        "resource": "orders-db",
        "level": None,  # the resource declares no levels
        "user": {"slack_id": BOB, "email": "bob@example.com", "name": "Bob Oncall"},
        "principal": "bob",
        "expires_at": current.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),  # type: ignore[union-attr]
        "reason": "INC-4211 checkout failing",
        "emergency": False,
    }
    assert verify(
        WEBHOOK_SECRET,
        grant.headers["X-Breakglass-Timestamp"],
        grant.headers["X-Breakglass-Signature"],
        __import__("json").dumps(grant.body, separators=(",", ":"), ensure_ascii=False).encode(),
        now_unix=float(grant.headers["X-Breakglass-Timestamp"]),
    )
    message = bot.request_message(1)
    assert ActionId.APPROVE not in buttons(message) and buttons(message) == [ActionId.REVOKE]
    assert "Active until" in state(message) and "approved by <@U0CAROL>" in state(message)
    assert any("is active until" in t and "psql -h orders.internal -U bob" in t for t in dm_texts(bot, BOB))
    assert [action for action, _ in audit_actions(bot, 1)] == ["requested", "approved", "granted"]


def test_n_of_m_needs_distinct_approvers(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "payments-admin 30m refunds stuck")

    bot.click(ALICE, ActionId.APPROVE, 1)
    again = bot.click(ALICE, ActionId.APPROVE, 1)

    assert "already decided" in (again.answer or "")
    assert view(bot, 1).status is Status.PENDING
    assert "(1 of 2)" in state(bot.request_message(1)) and "<@U0ALICE01>" in state(bot.request_message(1))
    assert receiver.calls == []

    bot.click(CAROL, ActionId.APPROVE, 1)

    receiver.wait_for(1)
    assert view(bot, 1).status is Status.ACTIVE
    assert "approved by <@U0ALICE01>, <@U0CAROL>" in state(bot.request_message(1))


def test_one_deny_ends_the_request(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "payments-admin 30m refunds stuck")
    bot.click(ALICE, ActionId.APPROVE, 1)

    bot.deny(CAROL, 1, "not during the freeze")
    late = bot.click(ALICE, ActionId.APPROVE, 1)
    outsider = bot.click(DAVE, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.DENIED
    message = bot.request_message(1)
    assert buttons(message) == [] and "Denied by <@U0CAROL>" in state(message)
    assert any("was denied by <@U0CAROL>" in text for text in dm_texts(bot, BOB))
    assert "was denied by <@U0CAROL>" in (late.answer or "") and "Nothing was done" in (late.answer or "")
    assert "not an approver" in (outsider.answer or "")
    assert receiver.calls == []


def test_requests_from_the_approvals_channel_get_no_extra_notice(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix", channel="C0APPROVALS")

    assert len(channel_texts(bot, "C0APPROVALS")) == 1  # only the approval message itself


def test_grant_failure_is_reported_and_never_shown_as_active(bot: LocalBot, receiver: WebhookReceiver) -> None:
    receiver.fail_next(3, status=503)
    bot.command(BOB, "orders-db 30m INC-1 fix")

    bot.click(ALICE, ActionId.APPROVE, 1)

    current = view(bot, 1)
    assert current.status is Status.GRANT_FAILED
    assert len(receiver.events("grant")) == 3  # retried: 503 can be retried
    # A 503 leaves doubt whether the backend acted, so the grant is undone before the request settles.
    assert len(receiver.events("revoke")) == 1
    assert ("grant_undone", "breakglass") in audit_actions(bot, 1)
    assert "503" in (current.failure or "")
    message = bot.request_message(1)
    assert buttons(message) == [] and "grant failed" in state(message)
    assert any("You do *not* have access" in text for text in dm_texts(bot, BOB))
    assert any("failed" in text for text in channel_texts(bot, "C0SECURITY"))
    assert ("grant_failed", "breakglass") in audit_actions(bot, 1)


def test_a_failed_grant_whose_undo_fails_keeps_being_undone(bot: LocalBot, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=503)
    bot.command(BOB, "orders-db 30m INC-1 fix")

    bot.click(ALICE, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.REVOKE_FAILED
    assert "grant failed" in state(bot.request_message(1))
    assert any("You do *not* have access" in text for text in dm_texts(bot, BOB))

    receiver.respond_with(status=200)
    bot.advance(timedelta(minutes=1))
    assert view(bot, 1).status is Status.GRANT_FAILED
    assert view(bot, 1).review is None  # nothing was granted, so nothing to review


def test_a_rejected_grant_is_not_retried(bot: LocalBot, receiver: WebhookReceiver) -> None:
    receiver.respond_with(status=403)
    bot.command(BOB, "orders-db 30m INC-1 fix")

    bot.click(ALICE, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.GRANT_FAILED
    assert len(receiver.events("grant")) == 1


@pytest.mark.parametrize("user", [BOB, DAVE, ALICE, CAROL])
def test_stale_buttons_explain_what_happened_and_do_nothing(bot: LocalBot, user: str) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    messages_before = bot.request_message(1)

    reply = bot.deny(user, 1, "not during the freeze")

    assert "Request #1 was approved by <@U0ALICE01>; access is active until" in (reply.answer or "")
    assert view(bot, 1).status is Status.ACTIVE
    assert bot.request_message(1) == messages_before  # no edit either


def test_buttons_for_requests_that_do_not_exist(bot: LocalBot) -> None:
    assert "no request #99" in (bot.click(ALICE, ActionId.APPROVE, 99).answer or "")
    assert "does not belong" in (bot.click(ALICE, ActionId.APPROVE, "x'; drop table").answer or "")


def test_unsigned_and_forged_requests_are_rejected(bot: LocalBot) -> None:
    from bot.devtools.slack_requests import signed_headers, slash_command

    body = slash_command(text="orders-db 30m INC-1 fix", user_id=BOB)
    forged = signed_headers("not-the-secret", body)
    assert bot.sender.post_raw(body, forged).status_code == 401
    assert bot.sender.post_raw(body, {"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
    stale = bot.sender.post(body, timestamp=1_000_000_000)
    assert stale.status_code == 401
    assert bot.slack.calls("chat.postMessage") == []


def test_user_text_cannot_ping_or_forge_links(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 <!channel> see <https://evil.example|the runbook> & <@U0ALICE01>")

    blocks = str(bot.request_message(1)["blocks"])  # type: ignore[index]
    assert "<!channel>" not in blocks and "<https://evil.example" not in blocks
    assert "&lt;!channel&gt;" in blocks and "&amp;" in blocks and "&lt;@U0ALICE01&gt;" in blocks


def test_healthz(bot: LocalBot) -> None:
    import requests

    response = requests.get(f"{bot.base_url}/healthz", timeout=5)
    assert response.status_code == 200 and response.json() == {"ok": True, "database": "up", "slack": "up"}


def test_two_approvers_racing_grant_once(make_bot: Callable[..., LocalBot], receiver: WebhookReceiver) -> None:
    bot = make_bot()
    bot.command(BOB, "payments-admin 30m refunds stuck")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda user: bot.click(user, ActionId.APPROVE, 1), [ALICE, CAROL]))

    receiver.wait_for(1)
    assert view(bot, 1).status is Status.ACTIVE
    assert len(receiver.events("grant")) == 1
