"""More time: "Ask for more time" opens a form, its submission becomes an extension request (or, for glass already
broken, an extension at once), and approvers decide it with buttons in the request's thread.

The real bot over HTTP: clicks and submissions are signed as Slack signs them, forms open through the Slack
stand-in's views.open, the backend is a real webhook receiver, and what happened is read back from the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.devtools.local_bot import LocalBot, Reply
from bot.devtools.slack_requests import selected
from bot.devtools.slack_standin import OpenedView
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services import extension_asks
from bot.slack import after_ack
from bot.slack.ids import (
    MORE_PICK,
    MORE_PICK_BLOCK,
    MORE_TYPED,
    MORE_TYPED_BLOCK,
    WORDS_BLOCK,
    WORDS_INPUT,
    ActionId,
    CallbackId,
)
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, dm_texts, view
from tests.e2e.test_approval_flow import ERIN, TWO_STEPS, with_resource

DM = "D0BOB"  # where the holder's buttons are: their DM with the bot
FREEZE = "not during the <!here> freeze"


def active(bot: LocalBot, text: str = "orders-db 30m INC-1 fix") -> None:
    """Request 1, approved and active (orders-db allows 2h in all: 1h30m more fits)."""
    bot.command(BOB, text)
    if "--emergency" not in text:
        bot.click(ALICE, ActionId.APPROVE, 1)
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)


def opened(bot: LocalBot, user: str = BOB, request_id: int = 1) -> OpenedView:
    form = bot.open_form(user, ActionId.ASK_MORE_TIME, request_id, channel=DM)
    assert isinstance(form, OpenedView), f"no form opened: {form}"
    return form


def submit(
    bot: LocalBot, form: OpenedView, *, pick: str | None = None, typed: str | None = None, why: str | None = None
) -> Reply:
    """Submit the more-time form as the holder filled it in; the reply's ``answer`` is what they were told after."""
    values: dict[str, dict[str, Any]] = {
        MORE_PICK_BLOCK: {MORE_PICK: selected(pick) if pick else {"type": "static_select", "selected_option": None}},
        MORE_TYPED_BLOCK: {MORE_TYPED: typed},
        WORDS_BLOCK: {WORDS_INPUT: why},
    }
    before = len(bot.slack.ephemerals(BOB))  # the answer is private in the DM the button was clicked in
    response = bot.sender.submit_view(
        BOB, form.view["callback_id"], form.view["private_metadata"], values, view=form.view, user_name="bob"
    )
    body = response.json() if response.content else {}
    errors = body.get("errors") if body.get("response_action") == "errors" else None
    answer = None
    if response.status_code == 200 and not errors:
        answer = str(bot.slack.wait_for(lambda s: s.ephemerals(BOB)[before:])[0].args.get("text"))
    return Reply(response.status_code, "\n".join((errors or {}).values()), answer, 0.0, errors)


def ask(bot: LocalBot, more: str = "30m", why: str | None = None) -> Reply:
    reply = submit(bot, opened(bot), pick=more, why=why)
    assert reply.errors is None and "You asked for" in (reply.answer or ""), reply
    return reply


def thread_buttons(bot: LocalBot, request_id: int = 1) -> list[tuple[str, str]]:
    """(action id, value) of every button in the replies of the request's thread, oldest first."""
    current = view(bot, request_id)
    assert current.approval_channel and current.approval_ts
    bot.slack.wait_for(lambda s: s.thread(current.approval_channel or "", current.approval_ts or ""))
    return [
        (element["action_id"], element.get("value", ""))
        for message in bot.slack.thread(current.approval_channel, current.approval_ts)
        for block in message.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
    ]


def waiting_buttons(bot: LocalBot, value: str) -> None:
    bot.slack.wait_for(lambda _: (ActionId.APPROVE_EXTENSION.value, value) in thread_buttons(bot))


# -- the form ------------------------------------------------------------------------------------------------------


def test_the_holders_button_opens_a_form_offering_what_fits(bot: LocalBot) -> None:
    active(bot)

    form = opened(bot)

    assert form.user == BOB and form.view["callback_id"] == CallbackId.MORE_TIME
    assert len(form.view["title"]["text"]) <= 24 and form.view["submit"]["text"] == "Ask"
    [pick] = [b for b in form.view["blocks"] if b.get("block_id") == MORE_PICK_BLOCK]
    assert [o["value"] for o in pick["element"]["options"]] == ["15m", "30m", "1h", "1h30m"]  # 2h in all, 30m had
    assert "1h30m" in str(form.view["blocks"][0])
    assert view(bot, 1).extension_seconds is None  # opening asks nothing


def test_a_stranger_gets_no_form_and_is_audited(bot: LocalBot) -> None:
    active(bot)

    reply = bot.open_form(DAVE, ActionId.ASK_MORE_TIME, 1, channel=DM)

    assert isinstance(reply, Reply) and "Only the holder of request #1" in (reply.answer or "")
    assert bot.slack.views() == []
    assert ("extend_refused", DAVE) in audit_actions(bot, 1)


def test_no_form_when_no_time_is_left(bot: LocalBot) -> None:
    active(bot, "orders-db 2h INC-1 fix")

    reply = bot.open_form(BOB, ActionId.ASK_MORE_TIME, 1, channel=DM)

    assert isinstance(reply, Reply) and "no more time can be given" in (reply.answer or "")
    assert bot.slack.views() == []


def test_an_ask_above_the_room_left_or_unreadable_is_answered_on_its_field(bot: LocalBot) -> None:
    active(bot)
    form = opened(bot)

    too_much = submit(bot, form, typed="2h")
    nonsense = submit(bot, form, typed="soon")
    nothing = submit(bot, form)
    long_why = submit(bot, form, pick="30m", why="x" * 501)

    assert too_much.errors is not None and set(too_much.errors) == {MORE_TYPED_BLOCK}
    assert "at most 1h30m more" in too_much.errors[MORE_TYPED_BLOCK]
    assert nonsense.errors is not None and "Say how much longer" in nonsense.errors[MORE_TYPED_BLOCK]
    assert nothing.errors is not None and "at most 1h30m more" in nothing.errors[MORE_PICK_BLOCK]
    assert long_why.errors is not None and "501" in long_why.errors[WORDS_BLOCK]
    assert view(bot, 1).extension_seconds is None and ("extension_asked", BOB) not in audit_actions(bot, 1)


def test_a_check_that_does_not_answer_in_time_is_cut_short_in_the_form(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bolt waits for the form's listener in one of the server's few request threads: reading the room left (the
    database, user groups, on-call) gets ``CHECK_WITHIN`` seconds before the form says so and nothing is asked."""
    active(bot)
    form = opened(bot)
    released = threading.Event()
    room = extension_asks.room

    def stuck(*args: Any) -> Any:  # a lookup that has not answered yet
        released.wait(10)
        return room(*args)

    monkeypatch.setattr(extension_asks, "room", stuck)
    monkeypatch.setattr(after_ack, "CHECK_WITHIN", 0.2)
    try:
        reply = submit(bot, form, pick="30m")
    finally:
        released.set()

    assert reply.errors is not None and "did not answer in time" in reply.errors[MORE_PICK_BLOCK]
    assert view(bot, 1).extension_seconds is None and ("extension_asked", BOB) not in audit_actions(bot, 1)


# -- the ask, and the approvers' buttons ---------------------------------------------------------------------------


def test_an_ask_files_an_extension_request_with_buttons_in_the_thread(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    before = view(bot, 1).expires_at

    ask(bot, "30m", why="<!channel> migration still running, INC-1")

    waiting = view(bot, 1)
    assert waiting.extension_seconds == 1800 and waiting.extension_by == BOB and waiting.extension_round == 1
    assert waiting.expires_at == before and receiver.events("extend") == []
    assert ("extension_asked", BOB) in audit_actions(bot, 1)
    waiting_buttons(bot, "1:1")
    assert (ActionId.DENY_EXTENSION.value, "1:1") in thread_buttons(bot)
    current = view(bot, 1)
    replies = bot.slack.thread(current.approval_channel or "", current.approval_ts or "")
    [asked] = [m for m in replies if "asks for 30m more" in m.text]
    assert "<!subteam^S0SRELEADS>" in asked.text  # the approvers are called on
    assert "<!channel>" not in asked.text and "migration still running" in asked.text  # the why is inert


def test_an_approvers_click_extends_on_the_backend_and_tells_the_holder(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    assert before is not None
    ask(bot)
    waiting_buttons(bot, "1:1")

    reply = bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1")

    assert "now lasts until" in (reply.answer or "")
    extended = view(bot, 1)
    assert extended.expires_at == before + timedelta(minutes=30) and extended.extension_seconds is None
    [extend] = receiver.events("extend")
    assert extend.event == "extend"
    assert ("extended", CAROL) in audit_actions(bot, 1)
    bot.slack.wait_for(lambda _: any("now lasts until" in t for t in dm_texts(bot, BOB)))
    bot.advance(timedelta(minutes=31))  # past the first end: still active
    assert view(bot, 1).status is Status.ACTIVE


def test_a_deny_click_drops_the_ask_and_tells_the_holder(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    ask(bot)

    reply = bot.decide_in_form(CAROL, ActionId.DENY_EXTENSION, "1:1", FREEZE)

    assert "You denied more time on request #1" in (reply.answer or "")
    denied = view(bot, 1)
    assert denied.extension_seconds is None and denied.expires_at == before
    assert ("extension_denied", CAROL) in audit_actions(bot, 1)
    told = bot.slack.wait_for(lambda _: [t for t in dm_texts(bot, BOB) if "was denied by <@U0CAROL>" in t])
    assert "not during the" in told[0] and "<!here>" not in told[0]  # the reason, inert
    late = bot.click(ALICE, ActionId.APPROVE_EXTENSION, "1:1")  # the other approver, a moment too late
    assert "was denied by <@U0CAROL>" in (late.answer or "") and "Nothing was done" in (late.answer or "")
    assert view(bot, 1).expires_at == before and receiver.events("extend") == []


def test_an_emergency_holders_ask_extends_at_once(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot, "orders-db 30m INC-9 on fire --emergency")
    before = view(bot, 1).expires_at
    assert before is not None
    form = opened(bot)
    assert form.view["submit"]["text"] == "Extend"

    reply = submit(bot, form, typed="45m")

    assert reply.errors is None and "now lasts until" in (reply.answer or "")
    assert view(bot, 1).expires_at == before + timedelta(minutes=45)
    assert len(receiver.events("extend")) == 1 and ("extended", BOB) in audit_actions(bot, 1)


def test_the_typed_extend_of_a_holder_files_the_same_ask(bot: LocalBot) -> None:
    active(bot)

    first = bot.command(BOB, "extend 1 30m")
    second = bot.command(BOB, "extend 1 15m")

    assert "You asked for 30m more on request #1" in first.text
    assert "already waits for its approvers" in second.text
    assert view(bot, 1).extension_seconds == 1800
    form = bot.open_form(BOB, ActionId.ASK_MORE_TIME, 1, channel=DM)  # and the form will not open for a second
    assert isinstance(form, Reply) and "already waits" in (form.answer or "")


# -- who may decide, and clicks whose moment has passed -----------------------------------------------------------


def test_the_holder_cannot_approve_their_own_extension(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    ask(bot)

    own = bot.click(BOB, ActionId.APPROVE_EXTENSION, "1:1")
    own_deny = bot.decide_in_form(BOB, ActionId.DENY_EXTENSION, "1:1", FREEZE)

    assert "cannot approve or deny more time on your own access" in (own.answer or "")
    assert "cannot approve or deny more time on your own access" in (own_deny.answer or "")
    assert view(bot, 1).expires_at == before and view(bot, 1).extension_seconds == 1800
    assert audit_actions(bot, 1).count(("extend_refused", BOB)) == 2 and receiver.events("extend") == []


def test_a_non_approvers_click_is_refused_and_audited(bot: LocalBot) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    ask(bot)

    reply = bot.click(DAVE, ActionId.APPROVE_EXTENSION, "1:1")

    assert "Only an approver may decide the extension of request #1" in (reply.answer or "")
    assert ("extend_refused", DAVE) in audit_actions(bot, 1)
    assert view(bot, 1).expires_at == before and view(bot, 1).extension_seconds == 1800


def test_a_second_click_after_the_approval_says_what_happened(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    ask(bot)
    bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1")
    after = view(bot, 1).expires_at

    again = bot.click(ALICE, ActionId.APPROVE_EXTENSION, "1:1")
    denied_late = bot.decide_in_form(ALICE, ActionId.DENY_EXTENSION, "1:1", FREEZE)

    for reply in (again, denied_late):
        assert "was approved by <@U0CAROL> already" in (reply.answer or "")
        assert "Nothing was done" in (reply.answer or "")
    assert view(bot, 1).expires_at == after and len(receiver.events("extend")) == 1


def test_a_click_after_access_expired_explains_and_the_ask_was_dropped(bot: LocalBot) -> None:
    active(bot)
    ask(bot)

    bot.advance(timedelta(minutes=31))
    reply = bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1")

    assert view(bot, 1).status is Status.EXPIRED and view(bot, 1).extension_seconds is None
    assert "access expired" in (reply.answer or "") and "no extension to decide" in (reply.answer or "")
    assert ("extension_dropped", "breakglass") in audit_actions(bot, 1)
    bot.slack.wait_for(lambda _: any("that ask is dropped" in t for t in dm_texts(bot, BOB)))


def test_a_button_of_an_earlier_extension_does_not_decide_a_later_one(bot: LocalBot) -> None:
    active(bot)
    ask(bot, "30m")
    bot.decide_in_form(CAROL, ActionId.DENY_EXTENSION, "1:1", FREEZE)
    ask(bot, "15m")
    before = view(bot, 1).expires_at

    stale = bot.click(ALICE, ActionId.APPROVE_EXTENSION, "1:1")

    assert "was denied by <@U0CAROL>" in (stale.answer or "") and "Another extension (15m more)" in (stale.answer or "")
    assert view(bot, 1).expires_at == before and view(bot, 1).extension_round == 2
    assert "now lasts until" in (bot.click(ALICE, ActionId.APPROVE_EXTENSION, "1:2").answer or "")


def test_two_approvers_clicking_at_once_extend_once(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    assert before is not None
    ask(bot)
    replies: list[Reply] = []

    clickers = [
        threading.Thread(target=lambda who=who: replies.append(bot.click(who, ActionId.APPROVE_EXTENSION, "1:1")))
        for who in (ALICE, CAROL)
    ]
    for clicker in clickers:
        clicker.start()
    for clicker in clickers:
        clicker.join(timeout=30)

    assert len(replies) == 2
    assert view(bot, 1).expires_at == before + timedelta(minutes=30)
    assert len(receiver.events("extend")) == 1
    assert [a for a, _ in audit_actions(bot, 1)].count("extended") == 1
    answers = sorted(r.answer or "" for r in replies)
    assert answers[0].startswith("⏩ Request #1 now lasts until"), answers
    assert "was approved by" in answers[1] and "Nothing was done" in answers[1], answers


def test_a_deny_asks_for_a_reason_and_a_form_kept_open_denies_nothing_later(bot: LocalBot) -> None:
    active(bot)
    ask(bot)
    form = bot.open_form(CAROL, ActionId.DENY_EXTENSION, "1:1")
    assert isinstance(form, OpenedView) and form.view["callback_id"] == CallbackId.DENY_EXTENSION

    blank = bot.submit_form(CAROL, form.view, "  ")
    assert blank.errors is not None and "reason" in blank.errors[WORDS_BLOCK]
    assert view(bot, 1).extension_seconds == 1800

    bot.click(ALICE, ActionId.APPROVE_EXTENSION, "1:1")  # approved while Carol was still writing
    ask(bot, "15m")  # and another asked
    late = bot.submit_form(CAROL, form.view, FREEZE)

    assert "was approved" in (late.answer or "") and "Nothing was done" in (late.answer or "")
    assert view(bot, 1).extension_seconds == 900 and ("extension_denied", CAROL) not in audit_actions(bot, 1)


def test_an_ask_needs_the_same_steps_as_the_request(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-11 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.click(ERIN, ActionId.APPROVE, 1)
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    before = view(bot, 1).expires_at
    assert before is not None
    ask(bot, "30m")

    out_of_order = bot.click(ERIN, ActionId.APPROVE_EXTENSION, "1:1")
    first = bot.click(ALICE, ActionId.APPROVE_EXTENSION, "1:1")

    assert "waits for step 1 of 2 (team lead) first" in (out_of_order.answer or "")
    assert "waits for step 2 of 2 (security)" in (first.answer or "") and view(bot, 1).expires_at == before
    bot.slack.wait_for(lambda _: any("<!subteam^S0SECURITY>" in t for t in thread_texts(bot) if "approved 30m" in t))
    second = bot.click(ERIN, ActionId.APPROVE_EXTENSION, "1:1")
    assert "now lasts until" in (second.answer or "")
    assert view(bot, 1).expires_at == before + timedelta(minutes=30)


def thread_texts(bot: LocalBot) -> list[str]:
    current = view(bot, 1)
    return [m.text for m in bot.slack.thread(current.approval_channel or "", current.approval_ts or "")]


def test_no_form_for_ended_access_and_a_form_kept_open_asks_nothing(bot: LocalBot) -> None:
    active(bot)
    form = opened(bot)
    bot.command(BOB, "revoke 1")
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.REVOKED)

    click = bot.open_form(BOB, ActionId.ASK_MORE_TIME, 1, channel=DM)
    late = submit(bot, form, pick="30m")

    assert isinstance(click, Reply) and "Only active access can be extended" in (click.answer or "")
    assert late.errors is not None and "Only active access can be extended" in late.errors[MORE_PICK_BLOCK]
    assert view(bot, 1).extension_seconds is None and ("extension_asked", BOB) not in audit_actions(bot, 1)
