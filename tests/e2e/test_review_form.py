"""The review form: "Write review" in the holder's DM and "Sign off" in the audit channel open it, and its submission
records the words exactly as `/breakglass review <id> <notes…>` does. The real bot over HTTP; the forms are opened
through the Slack stand-in's views.open with the click's trigger and submitted signed as Slack does."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.devtools.local_bot import LocalBot, Reply
from bot.devtools.slack_standin import OpenedView
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import ReviewStatus, Status
from bot.policy import Policy, parse_policy
from bot.services.reviews import MAX_NOTES
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, ActionId, CallbackId
from bot.store.models import AuditEvent
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, view

ERIN = "U0ERIN"  # a reviewer, through a group
REVIEW = "review:\n  required: emergency\n  remind_every: 24h\n"
ACCOUNT = "a migration locked orders; rolled it back and added a lock timeout"
AUDIT = "C0SECURITY"


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY.replace(REVIEW, REVIEW + "  reviewers: [S0AUDIT]\n"))


@pytest.fixture
def bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    started = make_bot()
    started.slack.add_user(ERIN, "erin", "erin@example.com")
    started.slack.set_group("S0AUDIT", [ERIN])
    return started


def ended_emergency(bot: LocalBot, reason: str = "INC-7 orders table locked") -> int:
    """An emergency grant that ran its 20 minutes: Bob owes the review's account, and his DM says so."""
    bot.command(BOB, f"orders-db 20m {reason} --emergency")
    request_id = max(v for v in range(1, 100) if bot.request_message(v, AUDIT) is not None)
    bot.advance(timedelta(minutes=20))
    assert view(bot, request_id).status is Status.EXPIRED
    assert bot.button_message(BOB, ActionId.WRITE_REVIEW, request_id) is not None
    return request_id


def opened(bot: LocalBot, user: str, request_id: int, channel: str = BOB) -> OpenedView:
    form = bot.open_form(user, ActionId.WRITE_REVIEW, request_id, channel)
    assert isinstance(form, OpenedView), f"no form opened: {form}"
    return form


def refused(bot: LocalBot, user: str, request_id: int, channel: str = BOB) -> Reply:
    views = len(bot.slack.views())
    reply = bot.open_form(user, ActionId.WRITE_REVIEW, request_id, channel)
    assert isinstance(reply, Reply), "a form opened"
    assert len(bot.slack.views()) == views and reply.text.startswith("❌")
    return reply


def shown(form: OpenedView) -> str:
    return json.dumps([b for b in form.view["blocks"] if b["type"] != "input"], ensure_ascii=False)


def refusals(bot: LocalBot) -> list[str]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        found = session.scalars(select(AuditEvent).where(AuditEvent.action == "review_refused"))
        return [event.actor for event in found]


def test_write_review_in_the_dm_opens_the_account_form(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot, "INC-7 <!channel> orders table locked")

    form = opened(bot, BOB, rid)

    assert form.user == BOB and form.view["callback_id"] == CallbackId.REVIEW
    assert json.loads(form.view["private_metadata"]) == {"request": rid, "channel": f"D{BOB}"}
    assert len(form.view["title"]["text"]) <= 24 and form.view["submit"]["text"] == "Submit review"
    [field] = [b for b in form.view["blocks"] if b["type"] == "input"]
    assert field["block_id"] == WORDS_BLOCK and field["label"]["text"].startswith("What happened")
    element = field["element"]
    assert element["action_id"] == WORDS_INPUT and element["multiline"] is True
    assert element["max_length"] == MAX_NOTES
    assert f"#{rid}" in shown(form) and "INC-7" in shown(form) and "<!channel>" not in shown(form)
    assert view(bot, rid).review.status == ReviewStatus.DUE  # type: ignore[union-attr]


def test_the_submitted_account_is_what_the_typed_command_writes(bot: LocalBot, receiver: WebhookReceiver) -> None:
    typed_id = ended_emergency(bot)
    formed_id = ended_emergency(bot, "INC-8 orders table locked again")

    typed = bot.command(BOB, f"review {typed_id} {ACCOUNT}")
    formed = bot.submit_form(BOB, opened(bot, BOB, formed_id).view, f"  {ACCOUNT}\n")

    assert formed.errors is None and formed.ack_seconds < 3
    assert formed.answer == typed.text.replace(f"#{typed_id}", f"#{formed_id}")
    [answer] = bot.slack.ephemerals(BOB)
    assert answer.args["channel"] == f"D{BOB}"  # privately, where the button was
    typed_review, formed_review = view(bot, typed_id).review, view(bot, formed_id).review
    assert typed_review is not None and formed_review is not None
    assert (formed_review.status, formed_review.author_id, formed_review.account) == (
        typed_review.status,
        typed_review.author_id,
        typed_review.account,
    )
    assert formed_review.account == ACCOUNT and formed_review.status == ReviewStatus.WRITTEN
    assert ("review_written", BOB) in audit_actions(bot, formed_id)


def test_a_signer_signs_off_from_the_audit_channel(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} {ACCOUNT} <@U0ALICE01> <!here>")
    calling = bot.button_message(AUDIT, ActionId.WRITE_REVIEW, rid)
    assert calling is not None and "wrote the review" in calling["text"]
    [sign_off] = calling["blocks"][-1]["elements"]
    assert sign_off["text"]["text"] == "Sign off"

    form = opened(bot, ALICE, rid, AUDIT)

    assert form.view["submit"]["text"] == "Sign off"
    packet = shown(form)
    assert f"Review of request #{rid}" in packet and ACCOUNT in packet and "<!here>" not in packet
    assert all(len(b["text"]["text"]) <= 3000 for b in form.view["blocks"] if b["type"] == "section")
    reply = bot.submit_form(ALICE, form.view, "agreed; the lock timeout is in the runbook")
    assert reply.answer == f"📝 Review of request #{rid} signed off. Thank you."
    review = view(bot, rid).review
    assert review is not None and review.status == ReviewStatus.DONE
    assert (review.author_id, review.reviewer_id) == (BOB, ALICE)
    assert review.notes == "agreed; the lock timeout is in the runbook"
    assert audit_actions(bot, rid)[-1] == ("review_signed_off", ALICE)


def test_a_reviewer_may_sign_off_too(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} {ACCOUNT}")

    reply = bot.submit_form(ERIN, opened(bot, ERIN, rid, AUDIT).view, "fine")

    assert "signed off" in (reply.answer or "")
    assert view(bot, rid).review.reviewer_id == ERIN  # type: ignore[union-attr]


def test_someone_elses_write_review_click_is_refused_and_recorded(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)

    forged = refused(bot, DAVE, rid)  # Dave clicking Bob's DM button: a forged payload

    assert "Only the holder of request #1 writes its review" in forged.text
    assert refusals(bot) == [DAVE]
    assert bot.command(DAVE, f"review {rid} fine by me").text == forged.text  # as the command answers
    assert view(bot, rid).review.status == ReviewStatus.DUE  # type: ignore[union-attr]


def test_no_form_where_there_is_nothing_to_do(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)

    early = refused(bot, ALICE, rid, AUDIT)  # a signer, before the account is written
    assert "account of request #1 is awaited" in early.text
    bot.command(BOB, f"review {rid} {ACCOUNT}")
    again = refused(bot, BOB, rid)  # the holder's stale DM button: the account is written
    assert "You wrote the review of request #1 already" in again.text
    bot.command(ALICE, f"review {rid} agreed")
    done = refused(bot, ERIN, rid, AUDIT)  # the call to sign off, once someone has
    assert "already signed off by <@U0ALICE01>" in done.text
    assert refusals(bot) == []  # parties at the wrong moment are not probing


def test_blank_or_too_long_words_keep_the_form_open(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    form = opened(bot, BOB, rid)

    for words in (None, "  \n\t ", "\x00\u200b"):
        blank = bot.submit_form(BOB, form.view, words)
        assert blank.errors is not None and set(blank.errors) == {WORDS_BLOCK} and str(MAX_NOTES) in blank.text
    long = bot.submit_form(BOB, form.view, "x" * (MAX_NOTES + 1))
    assert long.errors is not None and f"{MAX_NOTES + 1} characters" in long.errors[WORDS_BLOCK]
    assert view(bot, rid).review.status == ReviewStatus.DUE  # type: ignore[union-attr]
    assert bot.slack.ephemerals(BOB) == []

    exactly = bot.submit_form(BOB, form.view, "y" * MAX_NOTES)
    assert exactly.errors is None and "is written" in (exactly.answer or "")
    assert view(bot, rid).review.account == "y" * MAX_NOTES  # type: ignore[union-attr]


def test_a_form_left_open_is_checked_again_when_submitted(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} {ACCOUNT}")
    first, second = opened(bot, ALICE, rid, AUDIT), opened(bot, ERIN, rid, AUDIT)

    assert "signed off" in (bot.submit_form(ALICE, first.view, "agreed").answer or "")
    late = bot.submit_form(ERIN, second.view, "me too")

    assert (
        late.errors is None
        and late.answer == f"❌ The review of request #{rid} was already signed off by <@U0ALICE01>."
    )
    assert view(bot, rid).review.reviewer_id == ALICE  # type: ignore[union-attr]


def test_a_form_naming_no_request_is_refused_inline(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    form = opened(bot, BOB, rid)

    reply = bot.submit_form(BOB, {**form.view, "private_metadata": '{"request": true, "channel": "DU0BOB"}'}, "x")

    assert reply.errors is not None and "does not belong" in reply.text
    assert view(bot, rid).review.status == ReviewStatus.DUE  # type: ignore[union-attr]
