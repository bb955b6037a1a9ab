"""Attacks on the request form, the Home tab, the buttons in DMs and more time, as an attacker and a careless user
would make them, over the real Slack path: signed commands, clicks, submissions and events. Each is an attack that
must keep holding: forged metadata and values, other people's forms, removed approvers, two clicks at once, stale
and almost-valid buttons, hostile text, malformed payloads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bot.devtools import slack_requests
from bot.devtools.form_filling import block_of, state_of
from bot.devtools.local_bot import LocalBot, Reply
from bot.devtools.slack_requests import checked, selected
from bot.devtools.slack_standin import OpenedView
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import ReviewStatus, Status
from bot.policy import parse_policy
from bot.slack.home_refresh import HomeRefresher
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
from bot.store.models import Request
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, view
from tests.e2e.test_request_form import POLICY as FORM_TEST_POLICY

ERIN = "U0ERIN"
DM = "D0BOB"

# The request form's policy, with the admin level approved by Carol alone.
ADMIN_REQUESTERS = "        requesters: [U0DAVE]\n  payments-admin:"
assert ADMIN_REQUESTERS in FORM_TEST_POLICY
FORM_POLICY = FORM_TEST_POLICY.replace(
    ADMIN_REQUESTERS, "        requesters: [U0DAVE]\n        approvers: [U0CAROL]\n  payments-admin:"
)


def eventually(condition: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)
    return found


def requests_stored(bot: LocalBot) -> list[Request]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        rows = list(session.scalars(select(Request).order_by(Request.id)))
        session.expunge_all()
        return rows


def form_bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    return make_bot(policy=parse_policy(FORM_POLICY))


def opened(bot: LocalBot, user: str, via: str = "command") -> dict[str, Any]:
    form = bot.open_request_form(user, via=via)
    assert isinstance(form, OpenedView), f"no form opened: {form}"
    return form.view


def errors(reply: Reply) -> dict[str, str]:
    assert reply.status == 200 and reply.errors is not None, reply
    return reply.errors


def homes(bot: LocalBot) -> HomeRefresher:
    assert bot.runtime is not None and isinstance(bot.runtime.deps.homes, HomeRefresher)
    return bot.runtime.deps.homes


def open_home(bot: LocalBot, user: str) -> dict[str, Any]:
    before = len(bot.slack.homes(user))
    response = bot.sender.event(slack_requests.app_home_opened(user))
    assert response.status_code == 200
    page = bot.slack.wait_for(lambda s: s.homes(user)[before:] and s.homes(user)[-1])
    assert homes(bot).flush(30.0)
    return page


def page_text(page: dict[str, Any]) -> str:
    return json.dumps(page["blocks"], ensure_ascii=False)


def page_buttons(page: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for block in page["blocks"]:
        elements = [*(block.get("elements") or []), *([block["accessory"]] if block.get("accessory") else [])]
        for element in elements:
            if element.get("type") == "button":
                found.append((element["action_id"], element.get("value", "")))
    return found


def home_click(bot: LocalBot, user: str, action: str, value: str, page: dict[str, Any] | None = None) -> str:
    """``user`` clicks ``action`` with ``value`` on their Home tab (or on ``page``); the DM that answers it."""
    before = len(bot.slack.dms(user))
    shown = page or bot.slack.home(user) or {"type": "home", "id": "VH0000001"}
    response = bot.sender.act_in_view(user, shown, action, value=value)
    assert response.status_code == 200, response.status_code
    return str(bot.slack.wait_for(lambda s: s.dms(user)[before:])[0].args.get("text"))


def active(bot: LocalBot, text: str = "orders-db 30m INC-1 fix", approver: str = ALICE) -> int:
    bot.command(BOB, text)
    if "--emergency" not in text:
        bot.click(approver, ActionId.APPROVE, 1)
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    return 1


def more_form(bot: LocalBot, user: str = BOB, request_id: int = 1) -> OpenedView:
    form = bot.open_form(user, ActionId.ASK_MORE_TIME, request_id, channel=DM)
    assert isinstance(form, OpenedView), f"no form opened: {form}"
    return form


def submit_more(
    bot: LocalBot,
    form: dict[str, Any],
    user: str = BOB,
    *,
    pick: str | None = None,
    typed: str | None = None,
    why: str | None = None,
) -> Any:
    values: dict[str, dict[str, Any]] = {
        MORE_PICK_BLOCK: {MORE_PICK: selected(pick) if pick else {"type": "static_select", "selected_option": None}},
        MORE_TYPED_BLOCK: {MORE_TYPED: typed},
        WORDS_BLOCK: {WORDS_INPUT: why},
    }
    return bot.sender.submit_view(user, form["callback_id"], form["private_metadata"], values, view=form, user_name="x")


def form_errors_of(response: Any) -> dict[str, str] | None:
    body = response.json() if response.content else {}
    return body.get("errors") if body.get("response_action") == "errors" else None


# == the request form ==============================================================================================


def test_form_submitted_by_someone_who_may_request_nothing_is_refused_and_audited(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = form_bot(make_bot)
    form = opened(bot, BOB)  # Bob's form, submitted as Alice (who may request nothing)

    reply = bot.submit_request_form(ALICE, form, {"reason": "INC-1 mine now"})

    assert list(errors(reply)) == [block_of(form, "resource")]
    assert "no resource 'orders-db' you may request" in reply.ack
    assert requests_stored(bot) == []
    eventually(lambda: ("request_refused", ALICE) in audit_actions(bot))


def test_form_submitted_by_another_requester_is_their_own_request_not_the_openers(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = form_bot(make_bot)
    form = opened(bot, BOB)

    reply = bot.submit_request_form(DAVE, form, {"reason": "INC-2 mine"})

    assert reply.errors is None
    [stored] = requests_stored(bot)
    assert stored.requester_id == DAVE  # acts for the submitter, never for the person it was opened for


@pytest.mark.parametrize(
    "metadata",
    [
        "not json at all",
        "",
        "[]",
        "null",
        '{"channel": 5}',
        '{"channel": "<!channel>", "name": "<!here>"}',
        '{"channel": "C0SECURITY", "name": "' + "x" * 3000 + '"}',
        json.dumps({"channel": "C" + "A" * 5000}),
        "{" * 3000,
    ],
)
def test_forged_request_form_metadata_is_answered_not_crashed(make_bot: Callable[..., LocalBot], metadata: str) -> None:
    bot = form_bot(make_bot)
    form = opened(bot, BOB)

    reply = bot.submit_request_form(BOB, {**form, "private_metadata": metadata}, {"reason": "INC-3 fix"})

    assert reply.status == 200 and reply.errors is None
    assert reply.answer is not None and "Request #1" in reply.answer
    assert "<!channel>" not in json.dumps([c.args for c in bot.slack.calls()])


TYPED_OUTSIDE = [
    ("4m59s", "outside what orders-db:write allows"),
    ("1h1s", "outside what orders-db:write allows"),
    ("1h0m1s", "outside what orders-db:write allows"),
    ("0s", None),
    ("-5m", None),
    ("\u0661h", None),  # an Arabic-Indic digit: int() reads it as 1
    ("1h" * 20, None),
    ("9" * 40 + "d", None),
]


def test_typed_durations_just_outside_the_limits_are_refused_inline(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    write = bot.pick_in_form(BOB, opened(bot, BOB), ActionId.PICK_LEVEL, "write")
    wrong = []
    for typed, words in TYPED_OUTSIDE:
        reply = bot.submit_request_form(BOB, write, {"typed-duration": typed, "reason": "INC-1 fix"})
        found = reply.errors or {}
        where = str(block_of(write, "typed-duration"))
        if reply.status != 200 or list(found) != [where] or (words and words not in found[where]):
            wrong.append((typed, reply.status, reply.errors, reply.answer))
    assert wrong == []
    assert requests_stored(bot) == []


def test_the_limits_themselves_are_accepted(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    write = bot.pick_in_form(BOB, opened(bot, BOB), ActionId.PICK_LEVEL, "write")

    reply = bot.submit_request_form(BOB, write, {"typed-duration": "1h", "reason": "INC-1 fix"})

    assert reply.errors is None and "(1h)" in (reply.answer or "")


def test_a_forged_select_duration_outside_limits_is_refused(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    write = bot.pick_in_form(BOB, opened(bot, BOB), ActionId.PICK_LEVEL, "write")

    for value in ("1h0m1s", "61m", "3601s", "1d", "4m"):
        reply = bot.submit_request_form(BOB, write, {"duration": value, "reason": "INC-1 fix"})
        assert list(errors(reply)) == [block_of(write, "duration")], (value, reply)
    assert requests_stored(bot) == []


def test_emergency_forged_on_a_resource_that_never_allows_it_is_refused_and_audited(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = form_bot(make_bot)
    payments = bot.pick_in_form(BOB, opened(bot, BOB), ActionId.PICK_RESOURCE, "payments-admin")
    assert block_of(payments, "emergency") is None

    forged = state_of(payments, {"reason": "INC-1 fix"}) | {"emergency": {"emergency": checked("emergency")}}
    reply = bot.submit_values(BOB, payments, forged)

    assert "does not allow emergency access" in "\n".join(errors(reply).values())
    assert requests_stored(bot) == []
    eventually(lambda: ("request_refused", BOB) in audit_actions(bot))


def test_emergency_by_a_non_requester_of_the_level_is_refused_and_audited(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    form = opened(bot, BOB)
    forged = state_of(form, {"level": "admin", "reason": "INC-1 fix"}) | {
        "emergency.orders-db:admin": {"emergency": checked("emergency")}
    }

    reply = bot.submit_values(BOB, form, forged)

    assert "may not request orders-db:admin" in "\n".join(errors(reply).values())
    assert requests_stored(bot) == []
    eventually(lambda: ("request_refused", BOB) in audit_actions(bot))


def test_a_form_with_no_inputs_is_refused_with_forged_values(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    empty = opened(bot, ALICE)  # Alice may request nothing: no inputs, no submit button
    values = {
        "resource": {ActionId.PICK_RESOURCE.value: selected("billing")},
        "reason": {"reason": {"type": "plain_text_input", "value": "INC-1 please"}},
    }

    reply = bot.submit_values(ALICE, empty, values)

    assert reply.status == 200 and reply.errors is not None
    assert requests_stored(bot) == []


def test_hostile_reason_from_the_form_is_inert_everywhere(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    hostile = "INC-1 <!channel> <@U0DAVE> <https://evil.example|click me> <#C0SECURITY> \x07\x1b[31m *bold*"

    reply = bot.submit_request_form(BOB, opened(bot, BOB), {"reason": hostile})

    assert reply.errors is None
    posted = [m.text for m in bot.slack.messages()] + [json.dumps(m.blocks) for m in bot.slack.messages()]
    for raw in ("<!channel>", "<@U0DAVE>", "<https://evil", "<#C0SECURITY>", "\x07", "\x1b"):
        assert all(raw not in text for text in posted), raw
        assert raw not in (reply.answer or "")
    alice = open_home(bot, ALICE)
    for raw in ("<!channel>", "<@U0DAVE>", "<https://evil", "<#C0SECURITY>"):
        assert raw not in page_text(alice), raw


def test_picking_in_someone_elses_form_redraws_it_for_the_picker_not_the_owner(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = form_bot(make_bot)
    dave_form = opened(bot, DAVE)
    before = len(bot.slack.calls("views.update"))

    # Bob picks orders-db:admin in Dave's form (only Dave may request admin)
    redrawn = bot.pick_in_form(BOB, dave_form, ActionId.PICK_RESOURCE, "orders-db")
    levels = [b for b in redrawn["blocks"] if str(b.get("block_id", "")).startswith("level")]
    assert len(bot.slack.calls("views.update")) == before + 1
    assert "admin" not in json.dumps(levels)


# == the Home tab ==================================================================================================


def test_an_approver_of_one_level_sees_nothing_of_another_levels_requests(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    open_home(bot, ALICE)
    bot.command(DAVE, "orders-db:admin 30m INC-9 migrate the schema")  # admin: Carol alone approves

    alice = open_home(bot, ALICE)
    carol = open_home(bot, CAROL)

    assert (ActionId.APPROVE.value, "1") in page_buttons(carol)
    assert (ActionId.APPROVE.value, "1") not in page_buttons(alice)
    assert "INC-9" not in page_text(alice) and "migrate the schema" not in page_text(alice)


def test_a_refresh_never_shows_someone_elses_request_on_an_unrelated_page(bot: LocalBot) -> None:
    bot.slack.add_user(ERIN, "erin", "erin@example.com")
    open_home(bot, DAVE)
    open_home(bot, ERIN)
    dave_pages, erin_pages = len(bot.slack.homes(DAVE)), len(bot.slack.homes(ERIN))

    bot.command(BOB, "orders-db 30m INC-77 secret-ish reason")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    assert homes(bot).flush(30.0)

    for user, count in ((DAVE, dave_pages), (ERIN, erin_pages)):
        assert all("INC-77" not in page_text(p) for p in bot.slack.homes(user))
        assert len(bot.slack.homes(user)) == count


def test_a_removed_approver_sees_nothing_to_decide_and_their_stale_approve_is_refused(bot: LocalBot) -> None:
    bot.command(DAVE, "payments-admin 1h refund run")  # approvers: S0SRELEADS only
    carol = open_home(bot, CAROL)
    assert (ActionId.APPROVE.value, "1") in page_buttons(carol)

    bot.slack.set_group("S0SRELEADS", [ALICE])
    bot.advance(timedelta(seconds=61))
    answer = home_click(bot, CAROL, ActionId.APPROVE.value, "1", page=carol)

    assert answer.startswith("❌"), answer
    assert view(bot, 1).approvers == () or CAROL not in [a for a in view(bot, 1).approvers]
    assert ("decision_refused", CAROL) in audit_actions(bot, 1)
    assert (ActionId.APPROVE.value, "1") not in page_buttons(open_home(bot, CAROL))


def test_someone_elses_app_home_opened_publishes_only_their_page(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-5 private reason")
    open_home(bot, BOB)  # the event says Bob: his page goes to Bob, nobody else
    calls = bot.slack.calls("views.publish")
    assert {c.args["user_id"] for c in calls} == {BOB}


def test_stale_home_buttons_after_expiry_explain(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    page = open_home(bot, BOB)
    assert (ActionId.REVOKE.value, "1") in page_buttons(page)
    bot.advance(timedelta(minutes=31))
    assert view(bot, 1).status is Status.EXPIRED

    revoke = home_click(bot, BOB, ActionId.REVOKE.value, "1", page=page)
    assert revoke.startswith("❌") and "expired" in revoke, revoke


# == buttons: values almost valid ==================================================================================


ALMOST = ["1:", "1:1", " 1", "1 ", "+1", "-1", "0", "\u0661", "1e0", "0x1", "9" * 10, "", "1\n"]


def test_almost_valid_revoke_values_are_refused_and_do_nothing(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    calls = len(receiver.calls)
    wrong = []
    for index, value in enumerate([*ALMOST, "9" * 5000, "2147483648"]):
        name = f"almost{index}"
        response = bot.sender.click(
            ActionId.REVOKE.value, value, BOB, DM, "1700000000.000001", response_url=bot.slack.response_url(name)
        )
        told = str(bot.slack.wait_for(lambda s, name=name: s.responses(name))[-1].get("text"))
        if response.status_code != 200 or not told.startswith("❌"):
            wrong.append((value[:20], response.status_code, told[:100]))
    assert wrong == []
    assert view(bot, 1).status is Status.ACTIVE and len(receiver.calls) == calls


def test_almost_valid_extension_values_are_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    submitted = submit_more(bot, more_form(bot).view, pick="30m")
    assert form_errors_of(submitted) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)
    before = view(bot, 1).expires_at
    wrong = []
    for value in ["1:", ":1", "1:1:1", "\u0661:1", "1:-1", "1: 1", "0:1", "1:" + "9" * 10, "1:2", "2:1"]:
        reply = bot.click(CAROL, ActionId.APPROVE_EXTENSION, value)
        if not (reply.answer or reply.ack).startswith("❌"):
            wrong.append((value, reply.ack, reply.answer))
    assert wrong == []
    assert view(bot, 1).expires_at == before and receiver.events("extend") == []


def test_a_round_zero_button_is_not_ours_and_decides_nothing(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)

    reply = bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:0")

    assert reply.answer is not None and reply.answer.startswith("❌")
    assert "does not belong to a Breakglass request" in reply.answer, reply.answer  # rounds count from 1
    assert view(bot, 1).extension_seconds == 1800


def test_a_leading_zero_value_is_not_taken_for_another_request(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    calls = len(receiver.calls)

    reply = bot.click(DAVE, ActionId.REVOKE, "01", channel=BOB)

    assert reply.answer is not None and reply.answer.startswith("❌")
    assert view(bot, 1).status is Status.ACTIVE and len(receiver.calls) == calls


# == two clicks at once ============================================================================================


def at_once(*work: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(work)
    barrier = threading.Barrier(len(work))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_revoke_now_twice_at_once_revokes_once(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)

    first, second = at_once(
        lambda: bot.click_in_dm(BOB, ActionId.REVOKE, 1), lambda: bot.click_in_dm(BOB, ActionId.REVOKE, 1)
    )

    answers = sorted([first.answer or "", second.answer or ""])
    assert any("is revoked" in a for a in answers), answers
    assert view(bot, 1).status is Status.REVOKED
    assert len(receiver.events("revoke")) == 1
    assert [a for a, _ in audit_actions(bot, 1)].count("revoke_requested") == 1


def test_withdraw_and_approve_at_once_end_in_one_consistent_state(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    withdrew, approved = at_once(
        lambda: bot.click_in_dm(BOB, ActionId.WITHDRAW, 1), lambda: bot.click(ALICE, ActionId.APPROVE, 1)
    )

    final = view(bot, 1).status
    assert final in (Status.CANCELLED, Status.ACTIVE, Status.APPROVED, Status.GRANTING), final
    if final is Status.CANCELLED:
        assert receiver.events("grant") == []
        assert (approved.answer or "").startswith("❌"), approved
    else:
        assert (withdrew.answer or "").startswith("❌"), withdrew


def test_two_more_time_forms_submitted_at_once_open_one_ask(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    one, two = more_form(bot).view, more_form(bot).view

    first, second = at_once(lambda: submit_more(bot, one, pick="30m"), lambda: submit_more(bot, two, pick="15m"))

    assert first.status_code == 200 and second.status_code == 200
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds is not None)
    eventually(lambda: len(bot.slack.ephemerals(BOB)) >= sum(form_errors_of(r) is None for r in (first, second)))
    assert [a for a, _ in audit_actions(bot, 1)].count("extension_asked") == 1
    assert view(bot, 1).extension_round == 1


def test_same_approver_approving_an_extension_twice_at_once_extends_once(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    assert before is not None
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)

    at_once(
        lambda: bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1"),
        lambda: bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1"),
    )

    assert view(bot, 1).expires_at == before + timedelta(minutes=30)
    assert len(receiver.events("extend")) == 1


# == more time ======================================================================================================


def test_more_time_form_submitted_by_an_approver_does_not_extend(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    form = more_form(bot).view
    before = view(bot, 1).expires_at

    response = submit_more(bot, form, ALICE, typed="1h")  # Bob's form, submitted as Alice

    found = form_errors_of(response)
    assert found is not None and "Only the holder" in "\n".join(found.values())
    assert view(bot, 1).expires_at == before and receiver.events("extend") == []
    assert ("extend_refused", ALICE) in audit_actions(bot, 1)


def test_more_time_form_naming_another_request_is_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    bot.command(DAVE, "payments-admin 1h refund run")
    form = more_form(bot).view
    forged = {**form, "private_metadata": json.dumps({"request": 2, "channel": DM})}

    response = submit_more(bot, forged, pick="30m")

    assert form_errors_of(response) is not None
    assert view(bot, 2).extension_seconds is None


def test_more_time_beyond_max_duration_is_refused_inline(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)  # 30m of 2h: 1h30m left
    form = more_form(bot).view
    wrong = []
    for typed in ["1h30m1s", "1h31m", "2h", "0s", "-1m", "\u0661h", "1h" * 30]:
        found = form_errors_of(submit_more(bot, form, typed=typed))
        if found is None or list(found) != [MORE_TYPED_BLOCK]:
            wrong.append((typed, found))
    for pick in ["1h30m1s", "2h", "1d"]:  # forged options
        found = form_errors_of(submit_more(bot, form, pick=pick))
        if found is None:
            wrong.append((pick, found))
    assert wrong == []
    assert view(bot, 1).extension_seconds is None


def test_more_time_after_access_ended_before_the_sweep_is_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    form = more_form(bot).view
    bot.clock.advance(timedelta(minutes=31))  # expired, not yet swept

    response = submit_more(bot, form, pick="15m")

    found = form_errors_of(response)
    assert found is not None and "expired" in "\n".join(found.values())
    assert view(bot, 1).extension_seconds is None


def test_an_approver_removed_before_clicking_approve_extension_is_refused(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot, "orders-db 2h INC-1 fix")
    bot.command(BOB, "revoke 1")
    # a fresh one, of 30m: room for more
    bot.command(BOB, "orders-db 30m INC-2 fix")
    bot.click(ALICE, ActionId.APPROVE, 2)
    bot.slack.wait_for(lambda _: view(bot, 2).status is Status.ACTIVE)
    assert form_errors_of(submit_more(bot, more_form(bot, request_id=2).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 2).extension_seconds == 1800)
    before = view(bot, 2).expires_at

    bot.slack.set_group("S0SRELEADS", [ALICE])  # Carol leaves the leads
    bot.advance(timedelta(seconds=61))
    reply = bot.click(CAROL, ActionId.APPROVE_EXTENSION, "2:1")

    assert reply.answer is not None and "Only an approver" in reply.answer
    assert view(bot, 2).expires_at == before
    assert ("extend_refused", CAROL) in audit_actions(bot, 2)


def test_deny_extension_form_submitted_by_a_non_approver_is_refused_and_audited(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot)
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)
    form = bot.open_form(CAROL, ActionId.DENY_EXTENSION, "1:1")
    assert isinstance(form, OpenedView)

    reply = bot.submit_form(DAVE, form.view, "no")  # Carol's form, submitted as Dave

    assert reply.answer is not None and "Only an approver" in reply.answer
    assert view(bot, 1).extension_seconds == 1800
    assert ("extend_refused", DAVE) in audit_actions(bot, 1)
    holder = bot.submit_form(BOB, form.view, "no")  # and as the holder
    assert holder.answer is not None and "your own access" in holder.answer
    assert view(bot, 1).extension_seconds == 1800


def test_deny_extension_form_with_a_forged_round_denies_nothing(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)
    form = bot.open_form(CAROL, ActionId.DENY_EXTENSION, "1:1")
    assert isinstance(form, OpenedView)
    meta = json.loads(form.view["private_metadata"])

    for forged in ({**meta, "round": 2}, {**meta, "round": True}, {**meta, "round": "1"}, {**meta, "round": None}):
        reply = bot.submit_form(CAROL, {**form.view, "private_metadata": json.dumps(forged)}, "no")
        assert reply.status == 200
        assert reply.errors is not None or (reply.answer or "").startswith("❌"), (forged, reply)
    assert view(bot, 1).extension_seconds == 1800


# == forms answered with nonsense: never a 500 =====================================================================


def test_a_submission_with_a_malformed_state_is_refused_not_a_500(bot: LocalBot) -> None:
    wrong = []
    callbacks = [c.value for c in CallbackId if c is not CallbackId.REQUEST_SHORTCUT]
    states: list[object] = ["x", ["x"], 5, {"values": "x"}, {"values": {"words": "x"}}, {"values": []}]
    for index, callback in enumerate(callbacks):
        user = f"U0FUZZ{index}"  # one person a form, so the rate limit never answers for the bot
        for state in states:
            view_ = {
                "id": "V0FORGED1",
                "type": "modal",
                "callback_id": callback,
                "private_metadata": json.dumps({"request": 1, "channel": "C0INCIDENT", "round": 1}),
                "blocks": [],
                "state": state,
            }
            payload = {
                "type": "view_submission",
                "team": {"id": slack_requests.TEAM_ID, "domain": "x"},
                "user": {"id": user, "username": "x", "name": "x", "team_id": slack_requests.TEAM_ID},
                "api_app_id": slack_requests.API_APP_ID,
                "token": "t",
                "trigger_id": slack_requests.new_trigger_id(),
                "view": view_,
            }
            response = bot.sender.post(urlencode({"payload": json.dumps(payload)}))
            # Slack never sends a state that is not an object of values: such a body is refused (400) before Bolt
            if response.status_code not in (200, 400):
                wrong.append((callback, state, response.status_code))
    assert wrong == []


MALFORMED_BLOCKS: list[object] = [5, True, {"a": 1}, [5, None, "x"], [{"block_id": 5, "type": "input"}]]


def test_a_request_form_with_malformed_blocks_is_refused_not_a_500(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    form = opened(bot, BOB)
    values = state_of(form, {"reason": "INC-1 fix"})
    wrong = []
    for blocks in MALFORMED_BLOCKS:
        response = bot.sender.submit_view(
            BOB, form["callback_id"], form["private_metadata"], values, view={**form, "blocks": blocks}
        )
        if response.status_code not in (200, 400):  # blocks that are not a list are refused before Bolt
            wrong.append((blocks, response.status_code))
    assert wrong == []


def test_a_pick_in_a_malformed_view_is_answered_not_a_500(make_bot: Callable[..., LocalBot]) -> None:
    bot = form_bot(make_bot)
    form = opened(bot, BOB)
    wrong = []
    for blocks in MALFORMED_BLOCKS:
        response = bot.sender.act_in_view(
            BOB,
            {**form, "blocks": blocks},
            ActionId.PICK_LEVEL.value,
            selected_option=selected("write")["selected_option"],
            block_id="level.orders-db",
        )
        if response.status_code not in (200, 400):  # blocks that are not a list are refused before Bolt
            wrong.append((blocks, response.status_code))
    assert wrong == []


# == review form ===================================================================================================


def ended_emergency(bot: LocalBot) -> int:
    bot.command(BOB, "orders-db 20m INC-7 orders table locked --emergency")
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    bot.advance(timedelta(minutes=20))
    assert view(bot, 1).status is Status.EXPIRED
    return 1


def test_review_form_opened_by_the_holder_submitted_by_a_stranger_is_refused_and_audited(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    rid = ended_emergency(bot)
    form = bot.open_form(BOB, ActionId.WRITE_REVIEW, rid, BOB)
    assert isinstance(form, OpenedView)

    reply = bot.submit_form(DAVE, form.view, "all fine, trust me")

    assert reply.answer is not None and reply.answer.startswith("❌")
    assert view(bot, rid).review.status == ReviewStatus.DUE  # type: ignore[union-attr]
    assert ("review_refused", DAVE) in audit_actions(bot, rid)


def test_review_form_opened_by_the_holder_submitted_by_an_approver_before_any_account(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    rid = ended_emergency(bot)
    form = bot.open_form(BOB, ActionId.WRITE_REVIEW, rid, BOB)
    assert isinstance(form, OpenedView)

    reply = bot.submit_form(ALICE, form.view, "signed, without an account")

    assert reply.answer is not None and reply.answer.startswith("❌")
    assert view(bot, rid).review.status == ReviewStatus.DUE  # type: ignore[union-attr]


def test_a_signer_removed_while_the_sign_off_form_was_open_is_refused(bot: LocalBot, receiver: WebhookReceiver) -> None:
    rid = ended_emergency(bot)
    bot.command(BOB, f"review {rid} a migration locked orders")
    form = bot.open_form(CAROL, ActionId.WRITE_REVIEW, rid, "C0SECURITY")
    assert isinstance(form, OpenedView)

    bot.slack.set_group("S0SRELEADS", [ALICE])
    bot.advance(timedelta(seconds=61))
    reply = bot.submit_form(CAROL, form.view, "agreed")

    assert reply.answer is not None and reply.answer.startswith("❌"), reply
    assert view(bot, rid).review.status == ReviewStatus.WRITTEN  # type: ignore[union-attr]
    assert ("review_refused", CAROL) in audit_actions(bot, rid)


def test_review_form_pointed_at_another_request_acts_as_the_typed_command_would(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot)  # not an emergency: no review owed (a voluntary one is welcome, as typed)
    bot.command(BOB, "revoke 1")
    bot.command(BOB, "orders-db 20m INC-7 other --emergency")
    bot.slack.wait_for(lambda _: view(bot, 2).status is Status.ACTIVE)
    bot.command(DAVE, "payments-admin 1h refund")  # 3: Dave's
    bot.advance(timedelta(minutes=20))
    form = bot.open_form(BOB, ActionId.WRITE_REVIEW, 2, BOB)
    assert isinstance(form, OpenedView)

    other = bot.submit_form(BOB, {**form.view, "private_metadata": json.dumps({"request": 3, "channel": DM})}, "x")
    assert other.answer is not None and other.answer.startswith("❌"), other  # Dave's request: not Bob's to review
    assert view(bot, 3).review is None
    assert ("review_refused", BOB) in audit_actions(bot, 3)


# == more ==========================================================================================================


def test_an_emergency_holder_removed_from_the_requesters_cannot_extend_from_the_form(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot, "orders-db 30m INC-9 on fire --emergency")
    form = more_form(bot).view
    before = view(bot, 1).expires_at

    bot.slack.set_group("S0ONCALL", [])
    bot.advance(timedelta(seconds=61))
    response = submit_more(bot, form, typed="30m")

    found = form_errors_of(response)
    assert found is not None, "extended at once by someone no longer among the requesters"
    assert view(bot, 1).expires_at == before and receiver.events("extend") == []


def test_a_deny_form_from_the_home_tab_is_not_opened_for_a_non_approver(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    trigger = bot.slack.issue_trigger(DAVE)
    before = len(bot.slack.dms(DAVE))

    response = bot.sender.act_in_view(
        DAVE, {"type": "home", "id": "VH0DAVE"}, ActionId.DENY.value, value="1", trigger_id=trigger
    )

    assert response.status_code == 200
    told = bot.slack.wait_for(lambda s: s.dms(DAVE)[before:])
    assert str(told[0].args["text"]).startswith("❌")
    assert bot.slack.view_for(trigger) is None
    assert ("decision_refused", DAVE) in audit_actions(bot, 1)
    assert view(bot, 1).status is Status.PENDING


def test_a_second_request_from_the_form_while_one_waits_is_answered_clearly(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    form = bot.open_request_form(BOB)
    assert isinstance(form, OpenedView)

    reply = bot.submit_request_form(BOB, form.view, {"reason": "INC-1 fix again"})

    text = reply.ack if reply.errors else (reply.answer or "")
    assert text and ("❌" in text or reply.errors), reply
    assert len(requests_stored(bot)) == 1


def test_the_form_from_a_dm_stores_the_same_origin_as_the_command_typed_there(bot: LocalBot) -> None:
    typed = bot.command(BOB, "orders-db 30m INC-1 fix", channel="D0BOB", channel_name="directmessage")
    assert "Request #1" in typed.text
    bot.command(BOB, "revoke 1")
    form = bot.open_request_form(BOB, channel="D0BOB", channel_name="directmessage")
    assert isinstance(form, OpenedView)

    reply = bot.submit_request_form(BOB, form.view, {"reason": "INC-1 fix", "duration": "30m"})

    assert reply.errors is None
    first, second = requests_stored(bot)
    assert second.origin_channel == first.origin_channel


def test_a_home_page_with_every_list_full_stays_within_slacks_limits(bot: LocalBot) -> None:
    import uuid

    from bot.devtools.slack_standin import MAX_VIEW_BLOCKS, view_problem
    from bot.store.models import Review

    assert bot.runtime is not None
    now = bot.clock.now()
    with bot.runtime.deps.db.transaction() as session:

        def add(count: int, **row: Any) -> list[Request]:
            made = []
            for index in range(count):
                values = {
                    "resource": "payments-admin",
                    "requester_id": f"U0P{index:05d}",
                    "reason": f"INC-{index} <!here> " + "\u202e" + "x" * 400,
                    "duration_seconds": 3600,
                    "emergency": False,
                    "status": Status.PENDING.value,
                    "created_at": now - timedelta(minutes=count - index),
                    "revoke_attempts": 0,
                } | row
                request = Request(uid=str(uuid.uuid4()), **values)
                session.add(request)
                made.append(request)
            session.flush()
            return made

        add(500)  # to decide (Carol leads)
        add(500, requester_id=CAROL, resource="orders-db")  # her own, pending
        add(
            500,
            requester_id=CAROL,
            resource="orders-db",
            status=Status.ACTIVE.value,
            granted_at=now,
            expires_at=now + timedelta(hours=1),
        )
        for request in add(
            500,
            requester_id=CAROL,
            resource="orders-db",
            status=Status.EXPIRED.value,
            granted_at=now - timedelta(hours=2),
            expires_at=now - timedelta(hours=1),
            ended_at=now - timedelta(hours=1),
        ):
            session.add(
                Review(
                    request_id=request.id,
                    status=ReviewStatus.DUE.value,
                    reminders_sent=0,
                    requested_at=now - timedelta(hours=1),
                    next_reminder_at=now,
                )
            )
        for request in add(
            500,
            status=Status.EXPIRED.value,
            granted_at=now - timedelta(hours=2),
            expires_at=now - timedelta(hours=1),
            ended_at=now - timedelta(hours=1),
        ):
            session.add(
                Review(
                    request_id=request.id,
                    status=ReviewStatus.WRITTEN.value,
                    reminders_sent=0,
                    requested_at=now - timedelta(hours=1),
                    next_reminder_at=now,
                    author_id="U0X",
                    account="a" * 3000,
                    written_at=now,
                )
            )

    page = open_home(bot, CAROL)

    assert view_problem(page) is None and len(page["blocks"]) <= MAX_VIEW_BLOCKS
    text = page_text(page)
    for count in ("(500)",):
        assert text.count(count) == 5, text.count(count)
    assert "<!here>" not in text and "\u202e" not in text


def test_approve_extension_and_revoke_now_at_once_never_extend_after_the_revoke(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    active(bot)
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)

    at_once(
        lambda: bot.click_in_dm(BOB, ActionId.REVOKE, 1),
        lambda: bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1"),
    )

    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.REVOKED)
    order = [call.event for call in receiver.calls]
    assert order[-1] == "revoke", order  # nothing reaches the backend after access was taken back
    assert view(bot, 1).extension_seconds is None


def test_approve_and_deny_extension_at_once_decide_it_once(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    before = view(bot, 1).expires_at
    assert before is not None
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)
    deny_form = bot.open_form(ALICE, ActionId.DENY_EXTENSION, "1:1")
    assert isinstance(deny_form, OpenedView)

    approved, denied = at_once(
        lambda: bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1"),
        lambda: bot.submit_form(ALICE, deny_form.view, "no"),
    )

    actions = [a for a, _ in audit_actions(bot, 1)]
    assert actions.count("extended") + actions.count("extension_denied") == 1, actions
    if "extended" in actions:
        assert view(bot, 1).expires_at == before + timedelta(minutes=30)
        assert (denied.answer or "").startswith("❌")
    else:
        assert view(bot, 1).expires_at == before and receiver.events("extend") == []
        assert (approved.answer or "").startswith("❌")


def test_withdraw_twice_at_once_withdraws_once(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")

    first, second = at_once(
        lambda: bot.click_in_dm(BOB, ActionId.WITHDRAW, 1), lambda: bot.click_in_dm(BOB, ActionId.WITHDRAW, 1)
    )

    assert view(bot, 1).status is Status.CANCELLED
    assert [a for a, _ in audit_actions(bot, 1)].count("cancelled") == 1
    done = ["is withdrawn; nobody will be asked" in (r.answer or "") for r in (first, second)]
    assert sorted(done) == [False, True], (first, second)  # the other is told it already was: nothing was done


def test_an_extension_waiting_for_an_approver_shows_on_their_home_tab(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    open_home(bot, CAROL)
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)
    assert homes(bot).flush(30.0)

    carol = open_home(bot, CAROL)

    # "requests waiting for their decision with Approve / Deny": an ask for more time waits for Carol's decision
    assert any(value in ("1", "1:1") for action, value in page_buttons(carol) if "extension" in action), page_buttons(
        carol
    )


def test_the_holders_home_follows_an_expiry_and_an_extension(bot: LocalBot, receiver: WebhookReceiver) -> None:
    active(bot)
    assert (ActionId.REVOKE.value, "1") in page_buttons(open_home(bot, BOB))
    assert form_errors_of(submit_more(bot, more_form(bot).view, pick="30m")) is None
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds == 1800)
    bot.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1")
    bot.slack.wait_for(lambda s: "*1h left*" in page_text(s.home(BOB) or {"blocks": []}))

    bot.advance(timedelta(minutes=61))
    assert view(bot, 1).status is Status.EXPIRED
    bot.slack.wait_for(lambda s: (ActionId.REVOKE.value, "1") not in page_buttons(s.home(BOB) or {"blocks": []}))
