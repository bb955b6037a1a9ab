"""Deciding with words: Deny asks for a reason and Approve with comment for a comment, in a Slack form (a modal).

The real bot over HTTP: the click opens the form through the Slack stand-in's views.open, the submission is signed as
Slack signs it, and what is decided is read back from the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select

from bot.devtools.local_bot import LocalBot, Reply
from bot.devtools.slack_standin import OpenedView
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.slack import modals
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, ActionId, CallbackId
from bot.store.models import Decision
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, view

REASON = "not during the freeze"


def decisions(bot: LocalBot) -> list[tuple[str, bool, str | None]]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        rows = session.scalars(select(Decision).order_by(Decision.id))
        return [(d.approver_id, d.approve, d.comment) for d in rows]


def opened(bot: LocalBot, user: str, action: str, request_id: int) -> OpenedView:
    form = bot.open_form(user, action, request_id)
    assert isinstance(form, OpenedView), f"no form opened: {form}"
    return form


def with_metadata(form: OpenedView, metadata: str) -> dict[str, object]:
    return {**form.view, "private_metadata": metadata}


def input_element(form: OpenedView) -> dict[str, object]:
    [block] = [b for b in form.view["blocks"] if b["type"] == "input"]
    assert block["block_id"] == WORDS_BLOCK and block.get("optional", False) is False
    return block["element"]


# -- the form ------------------------------------------------------------------------------------------------------


def test_deny_opens_a_reason_form_with_the_clicks_trigger_and_decides_nothing_yet(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-4211 <!here> checkout failing")
    trigger = bot.slack.issue_trigger(CAROL)
    message = bot.request_message(1)
    assert message is not None

    response = bot.sender.click(ActionId.DENY, "1", CAROL, "C0APPROVALS", message["ts"], trigger_id=trigger)

    assert response.status_code == 200
    form = bot.slack.wait_for(lambda s: s.view_for(trigger))
    [call] = bot.slack.calls("views.open")
    assert call.args["trigger_id"] == trigger and call.ok
    assert form.user == CAROL and form.view["callback_id"] == CallbackId.DENY
    assert json.loads(form.view["private_metadata"]) == {"request": 1, "channel": "C0APPROVALS"}
    assert len(form.view["title"]["text"]) <= 24 and form.view["submit"]["text"] == "Deny"
    element = input_element(form)
    assert element["type"] == "plain_text_input" and element["action_id"] == WORDS_INPUT
    assert element["multiline"] is True and element["max_length"] == 500
    shown = json.dumps(form.view["blocks"])
    assert "<@U0BOB>" in shown and "INC-4211" in shown and "<!here>" not in shown  # the reason is inert
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []


def test_approve_with_comment_opens_a_comment_form(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    form = opened(bot, ALICE, ActionId.APPROVE_WITH_COMMENT, 1)

    assert form.view["callback_id"] == CallbackId.APPROVE and len(form.view["title"]["text"]) <= 24
    assert input_element(form)["max_length"] == 500
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []


# -- what the form accepts -----------------------------------------------------------------------------------------


def test_a_blank_reason_keeps_the_form_open_and_decides_nothing(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    blank = bot.deny(CAROL, 1, "   \n\t  ")
    invisible = bot.deny(CAROL, 1, "\x00\u202e\u200b")  # nothing left once cleaned as typed commands are

    for reply in (blank, invisible):
        assert reply.status == 200 and reply.errors is not None and set(reply.errors) == {WORDS_BLOCK}
        assert "reason" in reply.text and "500" in reply.text and reply.answer is None
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []
    assert bot.slack.ephemerals(CAROL) == []


def test_a_reason_over_500_characters_keeps_the_form_open(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    reply = bot.deny(CAROL, 1, "x" * 501)

    assert reply.errors is not None and "501" in reply.errors[WORDS_BLOCK] and "500" in reply.errors[WORDS_BLOCK]
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []

    exactly = bot.deny(CAROL, 1, "y" * 500)
    assert exactly.errors is None and "You denied request #1" in (exactly.answer or "")
    assert decisions(bot) == [(CAROL, False, "y" * 500)]


def test_a_reason_denies_and_is_kept_with_the_decision(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    reply = bot.deny(CAROL, 1, f"  {REASON}\x00 (CHG-7)\u202e\n")

    assert reply.errors is None and reply.answer == "⛔ You denied request #1."
    [ephemeral] = bot.slack.ephemerals(CAROL)
    assert ephemeral.args["channel"] == "C0APPROVALS"  # privately, where Carol clicked
    assert view(bot, 1).status is Status.DENIED
    assert decisions(bot) == [(CAROL, False, f"{REASON}  (CHG-7)")]  # control characters cleaned, ends stripped
    assert ("denied", CAROL) in audit_actions(bot, 1)
    assert receiver.calls == []


def test_approve_with_comment_approves_and_keeps_the_comment(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    reply = bot.approve_with_comment(ALICE, 1, "ok, read-only queries please")

    assert reply.errors is None and "approval of request #1 is recorded" in (reply.answer or "")
    [grant] = receiver.wait_for(1)
    assert grant.event == "grant"
    assert view(bot, 1).status is Status.ACTIVE
    assert decisions(bot) == [(ALICE, True, "ok, read-only queries please")]


def test_an_empty_comment_keeps_the_form_open_and_points_at_the_plain_approve(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    form = opened(bot, ALICE, ActionId.APPROVE_WITH_COMMENT, 1)

    reply = bot.submit_form(ALICE, form.view, None)  # Slack sends an untouched input as null

    assert reply.errors is not None and "Approve" in reply.errors[WORDS_BLOCK]
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []


def test_the_plain_approve_button_still_approves_in_one_click(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    reply = bot.click(ALICE, ActionId.APPROVE, 1)

    assert "approval of request #1 is recorded" in (reply.answer or "")
    receiver.wait_for(1)
    assert view(bot, 1).status is Status.ACTIVE
    assert decisions(bot) == [(ALICE, True, None)]
    assert bot.slack.calls("views.open") == []


# -- who gets a form, and what a late form does ----------------------------------------------------------------------


def test_a_non_approvers_deny_is_refused_at_the_click_without_a_form(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    stranger = bot.deny(DAVE, 1, REASON)
    own = bot.deny(BOB, 1, REASON)
    own_comment = bot.approve_with_comment(BOB, 1, "fine by me")

    assert "not an approver for orders-db" in (stranger.answer or "")
    assert "cannot decide on your own request" in (own.answer or "")
    assert "cannot decide on your own request" in (own_comment.answer or "")
    assert bot.slack.calls("views.open") == [] and bot.slack.views() == []
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []
    assert audit_actions(bot, 1).count(("decision_refused", DAVE)) == 1  # counted once, as a click's refusal is
    assert audit_actions(bot, 1).count(("decision_refused", BOB)) == 2


def test_a_click_on_a_decided_request_says_what_happened_without_a_form(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)

    reply = bot.deny(CAROL, 1, REASON)

    assert "was approved by <@U0ALICE01>" in (reply.answer or "") and "Nothing was done" in (reply.answer or "")
    assert bot.slack.views() == [] and view(bot, 1).status is Status.ACTIVE


def test_a_form_submitted_after_the_request_was_decided_says_so_and_records_nothing(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    form = opened(bot, CAROL, ActionId.DENY, 1)

    bot.click(ALICE, ActionId.APPROVE, 1)  # completes the approval while Carol is still writing
    reply = bot.submit_form(CAROL, form.view, REASON)

    assert reply.errors is None
    assert (reply.answer or "").startswith("❌ Request #1 was approved by <@U0ALICE01>")
    assert "Nothing was done" in (reply.answer or "")
    assert view(bot, 1).status is Status.ACTIVE and receiver.has_access("bob")
    assert decisions(bot) == [(ALICE, True, None)]
    assert "denied" not in [action for action, _ in audit_actions(bot, 1)]


def test_a_comment_submitted_after_another_approver_denied_records_nothing(bot: LocalBot) -> None:
    bot.command(DAVE, "payments-admin 30m refunds stuck")  # two approvals needed
    form = opened(bot, ALICE, ActionId.APPROVE_WITH_COMMENT, 1)

    bot.deny(CAROL, 1, REASON)
    reply = bot.submit_form(ALICE, form.view, "go ahead")

    assert "was denied by <@U0CAROL>" in (reply.answer or "") and "Nothing was done" in (reply.answer or "")
    assert view(bot, 1).status is Status.DENIED
    assert decisions(bot) == [(CAROL, False, REASON)]


def test_the_requesters_own_submission_is_refused(bot: LocalBot) -> None:
    # Bob gets no form for his own request; a submission made up for it is held to the same rule.
    bot.command(BOB, "orders-db 30m INC-1 fix")
    form = modals.deny_form(view(bot, 1), "C0APPROVALS")

    reply = bot.submit_form(BOB, form, "I changed my mind")

    assert "cannot decide on your own request" in (reply.answer or "")
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []
    assert ("decision_refused", BOB) in audit_actions(bot, 1)


# -- forms that were tampered with -----------------------------------------------------------------------------------


def test_metadata_that_names_no_request_keeps_the_form_open(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    form = opened(bot, CAROL, ActionId.DENY, 1)

    forged = [
        "not json",
        '{"request": "1; drop table requests", "channel": "C0APPROVALS"}',
        '{"request": true, "channel": "C0APPROVALS"}',
        '{"request": 12345678901, "channel": "C0APPROVALS"}',
        '{"request": 1, "channel": "<!here>"}',
        '["request", 1]',
        "",
    ]
    replies = [bot.submit_form(CAROL, with_metadata(form, metadata), REASON) for metadata in forged]

    for metadata, reply in zip(forged, replies, strict=True):
        assert reply.errors is not None and "does not belong" in reply.errors[WORDS_BLOCK], metadata
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []


def test_metadata_naming_another_request_is_held_to_that_requests_rules(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.command(CAROL, "payments-admin 30m refund stuck")  # #2, Carol's own
    form = opened(bot, CAROL, ActionId.DENY, 1)

    own = bot.submit_form(CAROL, with_metadata(form, '{"request": 2, "channel": "C0APPROVALS"}'), REASON)
    missing = bot.submit_form(CAROL, with_metadata(form, '{"request": 99, "channel": "C0APPROVALS"}'), REASON)

    assert "cannot decide on your own request" in (own.answer or "")
    assert "There is no request #99" in (missing.answer or "")
    assert view(bot, 1).status is Status.PENDING and view(bot, 2).status is Status.PENDING
    assert decisions(bot) == []


# -- answering, and too much at once ---------------------------------------------------------------------------------


def test_the_answer_goes_to_a_dm_when_the_channel_will_not_take_it(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.slack.error_next("chat.postEphemeral", "channel_not_found")

    reply = bot.deny(CAROL, 1, REASON)

    assert reply.answer == "⛔ You denied request #1."
    assert [call.args["text"] for call in bot.slack.dms(CAROL)] == ["⛔ You denied request #1."]
    assert view(bot, 1).status is Status.DENIED


def test_submissions_count_against_the_rate_limit(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, actions_per_minute=3))
    bot.command(BOB, "orders-db 30m INC-1 fix")
    form = opened(bot, CAROL, ActionId.DENY, 1)  # Carol's first action

    replies: list[Reply] = [bot.submit_form(CAROL, form.view, " ") for _ in range(2)]  # second and third
    slowed = bot.submit_form(CAROL, form.view, REASON)  # fourth in a minute
    assert bot.runtime is not None and bot.runtime.after_ack.wait_idle(10)  # the slow-down is recorded after the ack

    assert all(r.errors for r in replies)
    assert slowed.errors is not None and "Slow down" in slowed.errors[WORDS_BLOCK]
    assert view(bot, 1).status is Status.PENDING and decisions(bot) == []
    assert ("rate_limited", CAROL) in audit_actions(bot)
