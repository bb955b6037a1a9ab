"""Socket Mode for real: the bot connects to a loopback WebSocket stand-in of Slack (``apps.connections.open`` answered
with its address) and takes Slack's requests there as envelopes, answering each with an ack frame. The same payloads
the HTTP tests sign are delivered over the socket, so what holds over HTTP is shown to hold here too: typed
commands, buttons, forms (opened, refused inline, submitted), the Home tab and the buttons in a person's DMs. While
connected, $PORT still serves /healthz and /metrics, and never Slack's events.

The tests that run both ways (``mode``) are the proof that nothing differs; the rest are about the socket itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bot.devtools.local_bot import LocalBot
from bot.devtools.slack_requests import app_home_opened, block_action, selected, slash_command, view_submission
from bot.devtools.slack_standin import OpenedView
from bot.devtools.socket_mode_standin import NO_ACK, SocketModeStandIn, SocketSender, payload_of
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.common import load_view
from bot.slack.ids import MORE_PICK, MORE_PICK_BLOCK, MORE_TYPED_BLOCK, WORDS_BLOCK, WORDS_INPUT, ActionId, CallbackId
from bot.slack.listeners.commands import WORKING
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, buttons, view


@pytest.fixture(params=["http", "socket"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def either(make_bot: Callable[..., LocalBot], mode: str) -> LocalBot:
    """The bot over HTTP, then over Socket Mode: the same test, the same expectations."""
    return make_bot(socket_mode=mode == "socket")


@pytest.fixture
def sock(make_bot: Callable[..., LocalBot]) -> LocalBot:
    return make_bot(socket_mode=True)


def stand_in(bot: LocalBot) -> SocketModeStandIn:
    assert isinstance(bot.slack, SocketModeStandIn) and isinstance(bot.sender, SocketSender)
    return bot.slack


# -- the same story both ways ----------------------------------------------------------------------------------------


def test_a_typed_request_is_acked_at_once_and_answered(either: LocalBot) -> None:
    reply = either.command(BOB, "orders-db 30m INC-4211 checkout failing")

    assert reply.status == 200 and reply.ack.startswith(WORKING) and "Asking for `orders-db`" in reply.ack
    assert "Request #1 for `orders-db` (30m)" in (reply.answer or "")  # the answer that follows, at its response_url
    assert buttons(either.request_message(1)) == [ActionId.APPROVE, ActionId.APPROVE_WITH_COMMENT, ActionId.DENY]
    assert view(either, 1).status is Status.PENDING
    assert audit_actions(either, 1) == [("requested", BOB)]


def test_the_approve_button_grants(either: LocalBot, receiver: WebhookReceiver) -> None:
    either.command(BOB, "orders-db 30m INC-1 fix")

    own = either.click(BOB, ActionId.APPROVE, 1)
    reply = either.click(ALICE, ActionId.APPROVE, 1)
    stale = either.click(CAROL, ActionId.APPROVE, 1)

    assert "cannot decide on your own request" in (own.answer or "")  # nobody acts for themselves here either
    assert "approval of request #1 is recorded" in (reply.answer or "")
    [grant] = receiver.wait_for(1)
    assert grant.valid and grant.event == "grant"
    assert view(either, 1).status is Status.ACTIVE
    assert "was approved by <@U0ALICE01>" in (stale.answer or "")  # a stale button says what happened
    assert ("approved", ALICE) in audit_actions(either, 1)


def test_the_deny_form_opens_refuses_a_blank_reason_inline_and_denies(either: LocalBot) -> None:
    either.command(BOB, "orders-db 30m INC-1 fix")
    form = either.open_form(CAROL, ActionId.DENY, 1)
    assert isinstance(form, OpenedView) and form.user == CAROL  # opened with the click's trigger, within its window
    assert form.view["callback_id"] == CallbackId.DENY

    blank = either.submit_form(CAROL, form.view, "   ")
    denied = either.submit_form(CAROL, form.view, "not during the <!here> freeze")

    assert blank.status == 200 and blank.errors is not None and set(blank.errors) == {WORDS_BLOCK}  # in the ack
    assert denied.errors is None and denied.answer == "⛔ You denied request #1."
    assert view(either, 1).status is Status.DENIED
    assert ("denied", CAROL) in audit_actions(either, 1)


# -- the request form, the Home tab and the buttons in DMs ---------------------------------------------------------


def options(view_: dict[str, Any], action: str) -> list[str]:
    """The values a select offers in a view, by its action id."""
    for block in view_["blocks"]:
        element = block.get("element") or {}
        if element.get("action_id") == action:
            return [str(option["value"]) for option in element.get("options") or []]
    raise AssertionError(f"no {action} in the view")


def chosen(view_: dict[str, Any], action: str) -> str | None:
    """The option a select starts on, by its action id."""
    for block in view_["blocks"]:
        element = block.get("element") or {}
        if element.get("action_id") == action:
            return (element.get("initial_option") or {}).get("value")
    return None


def open_home(bot: LocalBot, user: str) -> dict[str, Any]:
    """``user`` opens the app's Home tab (``app_home_opened``, an Events API envelope in Socket Mode); the page then
    published for them."""
    before = len(bot.slack.homes(user))
    response = bot.sender.event(app_home_opened(user))
    assert response.status_code == 200 and not response.content  # an event is acked with nothing to say
    return bot.slack.wait_for(lambda s: s.homes(user)[before:] and s.homes(user)[-1])


def home_buttons(page: dict[str, Any], request_id: int | None = None) -> list[str]:
    found = []
    for block in page["blocks"]:
        for element in [*(block.get("elements") or []), *([block["accessory"]] if block.get("accessory") else [])]:
            if element.get("type") == "button" and (request_id is None or element.get("value") == str(request_id)):
                found.append(str(element["action_id"]))
    return found


def test_the_request_form_opens_redraws_refuses_inline_and_files_the_typed_request(either: LocalBot) -> None:
    form = either.open_request_form(BOB)  # `/breakglass` with nothing after it: views.open with its trigger
    dave = either.open_request_form(DAVE, via="shortcut")

    assert isinstance(form, OpenedView) and form.user == BOB and form.view["callback_id"] == CallbackId.REQUEST
    assert set(options(form.view, ActionId.PICK_RESOURCE)) == {"orders-db", "payments-admin"}
    assert isinstance(dave, OpenedView) and options(dave.view, ActionId.PICK_RESOURCE) == ["payments-admin"]
    redrawn = either.pick_in_form(BOB, form.view, ActionId.PICK_RESOURCE, "payments-admin")  # views.update
    assert redrawn["id"] == form.id and chosen(redrawn, ActionId.PICK_RESOURCE) == "payments-admin"
    back = either.pick_in_form(BOB, redrawn, ActionId.PICK_RESOURCE, "orders-db")
    assert chosen(back, ActionId.PICK_RESOURCE) == "orders-db" and "(INC|CHG)-[0-9]+" in json.dumps(back["blocks"])

    wrong = either.submit_request_form(BOB, back, {"duration": "30m", "reason": "checkout failing"})
    assert wrong.status == 200 and wrong.errors is not None  # answered in the ack, under the field
    assert [key.partition(".")[0] for key in wrong.errors] == ["reason"] and wrong.answer is None
    assert either.runtime is not None and load_view(either.runtime.deps, 1) is None  # nothing filed

    filed = either.submit_request_form(BOB, back, {"duration": "30m", "reason": "INC-4211 checkout failing"})
    assert filed.errors is None and "Request #1 for `orders-db` (30m)" in (filed.answer or "")
    typed = either.command(BOB, "payments-admin 30m INC-4211 checkout failing")  # the typed twin, for comparison
    assert "Request #2 for `payments-admin` (30m)" in (typed.answer or "")
    asked = view(either, 1)
    assert (asked.resource, asked.requester_id, asked.reason, asked.status) == (
        "orders-db",
        BOB,
        "INC-4211 checkout failing",
        Status.PENDING,
    )
    assert asked.duration == view(either, 2).duration
    assert buttons(either.request_message(1)) == buttons(either.request_message(2))
    assert audit_actions(either, 1) == [("requested", BOB)] == audit_actions(either, 2)


def test_the_home_tab_is_published_and_its_buttons_act(either: LocalBot) -> None:
    either.command(BOB, "orders-db 30m INC-1 fix")

    bob = open_home(either, BOB)
    alice = open_home(either, ALICE)

    assert home_buttons(bob, 1) == [ActionId.WITHDRAW] and ActionId.OPEN_REQUEST_FORM in home_buttons(bob)
    assert home_buttons(alice, 1) == [ActionId.APPROVE, ActionId.DENY]  # waiting for her decision
    before = len(either.slack.dms(ALICE))
    clicked = either.sender.act_in_view(ALICE, alice, ActionId.APPROVE, value="1")  # on the Home tab: no channel
    assert clicked.status_code == 200
    answered = either.slack.wait_for(lambda s: [c for c in s.dms(ALICE)[before:] if "#1" in str(c.args.get("text"))])
    assert "approval of request #1 is recorded" in str(answered[0].args["text"])  # a DM: a Home click has no thread
    assert view(either, 1).status is Status.ACTIVE
    form = either.open_request_form(BOB, via="home")  # its "Request access" button opens the form
    assert isinstance(form, OpenedView) and form.view["callback_id"] == CallbackId.REQUEST


def test_revoke_now_in_the_holders_dm_revokes_and_refuses_others(either: LocalBot, receiver: WebhookReceiver) -> None:
    either.command(BOB, "orders-db 30m INC-42 checkout failing")
    either.click(ALICE, ActionId.APPROVE, 1)
    receiver.wait_for(1)

    forged = either.click_in_dm(DAVE, ActionId.REVOKE, 1, owner=BOB)  # impossible in Slack: a forged payload
    reply = either.click_in_dm(BOB, ActionId.REVOKE, 1)
    stale = either.click_in_dm(BOB, ActionId.REVOKE, 1)

    assert forged.answer == "❌ Only the holder or an approver may revoke request #1."
    assert reply.status == 200 and reply.answer == "🛑 Access for request #1 is revoked."
    [_, revoke] = receiver.wait_for(2)
    assert revoke.event == "revoke"
    assert view(either, 1).status is Status.REVOKED and view(either, 1).ended_by == BOB
    assert stale.answer is not None and "Nothing was done" in stale.answer and len(receiver.calls) == 2
    assert ("revoke_refused", DAVE) in audit_actions(either, 1) and ("revoke_requested", BOB) in audit_actions(
        either, 1
    )


def test_ask_for_more_time_in_the_dm_becomes_an_extension_approved_with_a_button(
    either: LocalBot, receiver: WebhookReceiver
) -> None:
    either.command(BOB, "orders-db 30m INC-42 checkout failing")
    either.click(ALICE, ActionId.APPROVE, 1)
    receiver.wait_for(1)
    ends = view(either, 1).expires_at
    assert ends is not None

    form = either.open_form(BOB, ActionId.ASK_MORE_TIME, 1, channel="D0BOB")  # the button on the live grant's DM
    assert isinstance(form, OpenedView) and form.view["callback_id"] == CallbackId.MORE_TIME
    none_chosen = {"type": "static_select", "selected_option": None}
    blank = either.submit_values(BOB, form.view, {MORE_PICK_BLOCK: {MORE_PICK: none_chosen}, MORE_TYPED_BLOCK: {}})
    asked = either.submit_values(BOB, form.view, {MORE_PICK_BLOCK: {MORE_PICK: selected("30m")}})

    assert blank.errors is not None and asked.errors is None and "You asked for" in (asked.answer or "")
    approve = (ActionId.APPROVE_EXTENSION.value, "1:1")
    either.slack.wait_for(lambda s: any(approve in _actions(m.blocks) for m in s.messages("C0APPROVALS", replies=True)))
    decided = either.click(CAROL, ActionId.APPROVE_EXTENSION, "1:1")
    assert "now lasts until" in (decided.answer or "")
    assert view(either, 1).expires_at == ends + timedelta(minutes=30)
    assert [call.event for call in receiver.calls] == ["grant", "extend"]


def _actions(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (str(e["action_id"]), str(e.get("value", "")))
        for block in blocks
        if block.get("type") == "actions"
        for e in block["elements"]
    ]


# -- the socket itself ----------------------------------------------------------------------------------------------


def test_the_bot_opens_its_socket_with_the_app_token_and_slacks_events_are_not_served_over_http(sock: LocalBot) -> None:
    slack = stand_in(sock)
    opened = slack.calls("apps.connections.open")
    assert opened and all(call.ok for call in opened) and slack.connection_count == 1

    refused = requests.post(f"{sock.base_url}/slack/events", data=slash_command(text="help"), timeout=10)

    assert refused.status_code == 404  # no signing secret is checked in Socket Mode: HTTP takes none of Slack's
    acked = slack.deliver("slash_commands", payload_of(slash_command(text="help", user_id=BOB))[1])
    assert acked is not None and "/breakglass" in acked["text"]  # the help, in the ack as over HTTP


def test_health_and_metrics_are_served_on_the_port_while_connected(sock: LocalBot) -> None:
    stand_in(sock)
    sock.command(BOB, "orders-db 30m INC-1 fix")

    health = requests.get(f"{sock.base_url}/healthz", timeout=10)
    scraped = requests.get(f"{sock.base_url}/metrics", timeout=10)

    assert health.status_code == 200 and health.json() == {"ok": True, "database": "up", "slack": "up"}
    assert scraped.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    assert samples[("breakglass_pending_requests", ())] == 1  # the request that came over the socket
    opened = ("breakglass_slack_calls_total", (("method", "apps.connections.open"), ("outcome", "ok")))
    assert samples[opened] == len(sock.slack.calls("apps.connections.open")) >= 1  # counted as every Slack call


def test_acks_find_their_envelopes_when_many_arrive_at_once(sock: LocalBot) -> None:
    slack = stand_in(sock)
    acks: dict[int, dict[str, Any] | None] = {}

    def ask(n: int) -> None:
        words = "nonsense-" + str(n)  # a typo's answer comes in the ack, naming what was typed
        acks[n] = slack.deliver("slash_commands", payload_of(slash_command(text=words, user_id=ALICE))[1])

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for n, acked in acks.items():
        assert acked is not None and f"nonsense-{n}" in acked["text"], acked


def test_a_view_larger_than_64_kib_goes_both_ways(sock: LocalBot) -> None:
    """Frames with 64-bit lengths: a submission far over 64 KiB reaches the bot, and its inline error comes back."""
    slack = stand_in(sock)
    sock.command(BOB, "orders-db 30m INC-1 fix")
    form = sock.open_form(CAROL, ActionId.DENY, 1)
    assert isinstance(form, OpenedView)
    padded = {**form.view, "blocks": [*form.view["blocks"], *[{"type": "divider", "block_id": "p" * 250}] * 300]}
    body = view_submission(
        CAROL, CallbackId.DENY, form.view["private_metadata"], {WORDS_BLOCK: {WORDS_INPUT: "x" * 70_000}}, view=padded
    )
    assert len(body) > 1 << 16

    acked = slack.deliver(*payload_of(body))

    assert acked is not None and acked["response_action"] == "errors" and "70000" in acked["errors"][WORDS_BLOCK]
    assert view(sock, 1).status is Status.PENDING


def test_an_envelope_nobody_acks_is_reported_as_such(sock: LocalBot) -> None:
    slack = stand_in(sock)
    unknown = {"type": "block_actions", "user": {"id": BOB}, "team": {"id": "T0TEST"}, "actions": []}
    assert slack.deliver("interactive", unknown, timeout=0.5) is None  # no listener: Slack would show an error
    sender = SocketSender(slack, timeout=0.5)
    assert sender.post(block_action("no-such-action", "1", BOB)).status_code == NO_ACK
