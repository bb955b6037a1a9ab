"""The request form (issue 15): asking for access without typing, on the real bot over HTTP.

`/breakglass` with nothing after it, the "Request access" shortcut and the Home tab's button open a modal through the
Slack stand-in's views.open; a choice in its selects redraws it with views.update; its submission is signed as Slack
signs it. What was requested is read back from the database and compared with what the typed command makes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from bot.devtools.form_filling import block_of, state_of
from bot.devtools.local_bot import LocalBot, Reply
from bot.devtools.slack_requests import checked
from bot.devtools.slack_standin import OpenedView
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services.deps import Tuning
from bot.slack import after_ack
from bot.slack.ids import ActionId, CallbackId
from bot.slack.listeners.request_form import NOT_CHECKED_IN_TIME
from bot.store.models import AuditEvent, Request
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, view

POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
resources:
  orders-db:
    description: Orders database
    adapter: webhook
    principal: "{email_local}"
    params: {url: "${WEBHOOK_URL}", secret: "${BREAKGLASS_WEBHOOK_SECRET}", timeout: 10}
    approvers: [U0ALICE01, U0CAROL]
    requesters: [S0ONCALL, U0DAVE]
    reason_pattern: 'INC-[0-9]+'
    emergency: true
    levels:
      read:
        description: Read-only replica
        emergency: false
      write:
        description: Read and write
        max_duration: 1h
        default_duration: 30m
      admin:
        description: Schema changes
        requesters: [U0DAVE]
  payments-admin:
    description: Payments admin console
    adapter: webhook
    params: {url: "${WEBHOOK_URL}", secret: "${BREAKGLASS_WEBHOOK_SECRET}", timeout: 10}
    approvers: [S0SRELEADS]
    requesters: [U0BOB]
    min_duration: 15m
    max_duration: 8h
  billing:
    adapter: webhook
    params: {url: "${WEBHOOK_URL}", secret: "${BREAKGLASS_WEBHOOK_SECRET}", timeout: 10}
    approvers: [U0ALICE01]
    requesters: [U0DAVE]
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def opened(bot: LocalBot, user: str, via: str = "command", channel: str = "C0INCIDENT") -> OpenedView:
    form = bot.open_request_form(user, via=via, channel=channel)
    assert isinstance(form, OpenedView), f"no form opened: {form}"
    assert form.user == user and form.view["callback_id"] == CallbackId.REQUEST
    return form


def inputs(form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The form's input blocks by field (the part of the block id before ".")."""
    return {b["block_id"].partition(".")[0]: b for b in form["blocks"] if b["type"] == "input"}


def options(form: dict[str, Any], name: str) -> list[str]:
    return [o["value"] for o in inputs(form)[name]["element"]["options"]]


def initial(form: dict[str, Any], name: str) -> str:
    return str(inputs(form)[name]["element"]["initial_option"]["value"])


def requests_stored(bot: LocalBot) -> list[Request]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        rows = list(session.scalars(select(Request).order_by(Request.id)))
        session.expunge_all()
        return rows


def events(bot: LocalBot, request_id: int) -> list[tuple[str, str, str | None, str | None, dict[str, Any]]]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id))
        return [(e.action, e.actor, e.resource, e.reason, dict(e.detail or {})) for e in rows]


def refusals(bot: LocalBot) -> list[tuple[str, str]]:
    return [a for a in audit_actions(bot) if a[0] == "request_refused"]


def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """A refusal is written down after the form was answered: wait for it, never for a fixed time."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def errors(reply: Reply) -> dict[str, str]:
    assert reply.status == 200 and reply.errors is not None, reply
    return reply.errors


# -- opening it ----------------------------------------------------------------------------------------------------


def test_nothing_typed_opens_the_form_with_only_what_the_person_may_request(bot: LocalBot) -> None:
    form = opened(bot, BOB)

    [call] = bot.slack.calls("views.open")
    assert call.ok and call.args["trigger_id"] == form.trigger_id
    assert [r.ack for r in bot.replies] == [""]  # nothing noisy: the form is the answer
    assert bot.replies[0].ack_seconds < 3
    shown = form.view
    assert len(shown["title"]["text"]) <= 24 and shown["submit"]["text"] == "Request"
    assert json.loads(shown["private_metadata"]) == {"channel": "C0INCIDENT", "name": "incident"}
    assert options(shown, "resource") == ["orders-db", "payments-admin"]  # billing is not his to request
    assert initial(shown, "resource") == "orders-db"
    assert options(shown, "level") == ["read", "write"]  # least privileged first; admin is Dave's alone
    assert initial(shown, "level") == "read"
    assert options(shown, "duration") == ["5m", "10m", "15m", "30m", "45m", "1h", "1h30m", "2h", "3h", "4h"]
    assert initial(shown, "duration") == "1h"
    assert inputs(shown)["resource"]["dispatch_action"] and inputs(shown)["level"]["dispatch_action"]
    assert inputs(shown)["resource"]["element"]["action_id"] == ActionId.PICK_RESOURCE
    assert inputs(shown)["level"]["element"]["action_id"] == ActionId.PICK_LEVEL
    reason = inputs(shown)["reason"]
    assert reason["element"]["multiline"] and reason["element"]["max_length"] == 500
    assert "matching `INC-[0-9]+`" in reason["hint"]["text"]
    assert "emergency" not in inputs(shown)  # read does not allow breaking the glass
    assert inputs(shown)["typed-duration"]["optional"] is True
    assert "<resource>" not in json.dumps(shown)  # Slack would take a raw placeholder for a link

    dave = opened(bot, DAVE).view
    assert options(dave, "resource") == ["billing", "orders-db"]
    assert initial(dave, "resource") == "billing" and "level" not in inputs(dave)


def test_someone_who_may_request_nothing_is_told_so_and_who_to_ask(bot: LocalBot) -> None:
    form = opened(bot, ALICE).view  # an approver, and no requester of anything

    assert inputs(form) == {} and "submit" not in form
    text = json.dumps(form["blocks"])
    assert "no resource you may request" in text and "platform team" in text
    assert "orders-db" not in text and "billing" not in text


def test_the_shortcut_and_the_home_tab_open_the_same_form_answered_in_a_dm(bot: LocalBot) -> None:
    typed = opened(bot, BOB).view
    shortcut = opened(bot, BOB, via="shortcut").view
    home = opened(bot, BOB, via="home").view

    assert shortcut["blocks"] == typed["blocks"] == home["blocks"]
    assert json.loads(shortcut["private_metadata"]) == json.loads(home["private_metadata"]) == {"channel": BOB}

    reply = bot.submit_request_form(BOB, shortcut, {"reason": "INC-7 checkout down"})

    assert reply.errors is None and "📨 Request #1 for `orders-db:read` (1h) is with the approvers" in reply.text
    assert [c.args["text"] for c in bot.slack.dms(BOB) if "metadata" not in c.args] == [reply.answer]
    assert requests_stored(bot)[0].origin_channel is None


def test_an_expired_trigger_is_told_privately(bot: LocalBot) -> None:
    bot.slack.error_next("views.open", "expired_trigger_id")
    typed = bot.open_request_form(BOB)
    bot.slack.error_next("views.open", "expired_trigger_id")
    shortcut = bot.open_request_form(BOB, via="shortcut")

    for reply in (typed, shortcut):
        assert isinstance(reply, Reply) and "did not open the request form in time" in (reply.answer or "")
        assert "&lt;resource&gt;" in (reply.answer or "")
    assert any("did not open the request form" in str(c.args.get("text")) for c in bot.slack.dms(BOB))
    assert requests_stored(bot) == []


# -- redrawn for a choice ------------------------------------------------------------------------------------------


def test_a_level_or_resource_chosen_redraws_the_form_keeping_what_was_typed(bot: LocalBot) -> None:
    form = opened(bot, BOB).view
    typed = {"reason": "INC-9 <!here> refunds stuck", "typed-duration": "20m"}

    write = bot.pick_in_form(BOB, form, ActionId.PICK_LEVEL, "write", typed)

    [call] = bot.slack.calls("views.update")
    assert call.args["view_id"] == form["id"] and call.args["hash"] == form["hash"]
    assert initial(write, "level") == "write"
    assert (
        options(write, "duration") == ["5m", "10m", "15m", "30m", "45m", "1h"] and initial(write, "duration") == "30m"
    )
    assert inputs(write)["duration"]["hint"]["text"] == "orders-db:write allows 5m to 1h."
    assert inputs(write)["reason"]["element"]["initial_value"] == typed["reason"]
    assert inputs(write)["typed-duration"]["element"]["initial_value"] == "20m"
    emergency = inputs(write)["emergency"]
    assert emergency["optional"] and [o["value"] for o in emergency["element"]["options"]] == ["emergency"]
    assert "security is alerted" in emergency["hint"]["text"]
    # Each block drawn for a choice has an id of its own, so Slack carries no choice of another level over.
    assert block_of(write, "duration") == "duration.orders-db:write" != block_of(form, "duration")

    payments = bot.pick_in_form(BOB, write, ActionId.PICK_RESOURCE, "payments-admin", typed)

    assert initial(payments, "resource") == "payments-admin" and "level" not in inputs(payments)
    assert options(payments, "duration")[0] == "15m" and options(payments, "duration")[-1] == "8h"
    assert "emergency" not in inputs(payments) and "INC-" not in inputs(payments)["reason"]["hint"]["text"]
    assert inputs(payments)["reason"]["element"]["initial_value"] == typed["reason"]

    forged = bot.pick_in_form(BOB, payments, ActionId.PICK_RESOURCE, "billing")  # not his: the first one instead
    assert options(forged, "resource") == ["orders-db", "payments-admin"] and initial(forged, "resource") == "orders-db"
    assert "billing" not in json.dumps(forged)


# -- what a submission is checked against --------------------------------------------------------------------------


def test_each_mistake_is_answered_under_its_field_and_nothing_is_requested(bot: LocalBot) -> None:
    form = opened(bot, BOB).view
    write = bot.pick_in_form(BOB, form, ActionId.PICK_LEVEL, "write")
    reason = "INC-1 orders failing"
    typed_block = block_of(write, "typed-duration")
    duration_block = block_of(write, "duration")

    cases: list[tuple[dict[str, Any], dict[str, Any], str | None, str]] = [
        (form, {"resource": "billing", "reason": reason}, block_of(form, "resource"), "no resource 'billing'"),
        (form, {"resource": "nope", "reason": reason}, block_of(form, "resource"), "no resource 'nope'"),
        (form, {"resource": "<!channel>", "reason": reason}, block_of(form, "resource"), "not a resource name"),
        (form, {"level": "admin", "reason": reason}, block_of(form, "level"), "may not request orders-db:admin"),
        (form, {"level": "root", "reason": reason}, block_of(form, "level"), "has no level 'root'"),
        (write, {"typed-duration": "3h", "reason": reason}, typed_block, "outside what orders-db:write allows"),
        (write, {"typed-duration": "2 hours", "reason": reason}, typed_block, "is not a duration like"),
        (write, {"duration": "9h", "reason": reason}, duration_block, "outside what orders-db:write allows"),
        (write, {"reason": "orders failing"}, block_of(write, "reason"), "matching `INC-[0-9]+`"),
        (write, {"reason": " \t\u202e "}, block_of(write, "reason"), "A reason is missing"),
        (write, {"reason": "INC-1 " + "x" * 500}, block_of(write, "reason"), "at most 500"),
        (write, {"reason": "INC-1 <!channel> " * 600}, block_of(write, "reason"), "at most 500"),  # 10 KB
    ]
    for shown, answers, where, words in cases:
        reply = bot.submit_request_form(BOB, shown, answers)
        assert where is not None and list(errors(reply)) == [where], (answers, reply)
        assert words in errors(reply)[where], (answers, reply)
        assert reply.ack_seconds < 3

    both = errors(bot.submit_request_form(BOB, write, {"typed-duration": "5h", "reason": "no ticket"}))
    assert set(both) == {typed_block, block_of(write, "reason")}

    # Breaking the glass where the level does not allow it: the form has no checkbox, so a forged one is answered
    # under the level.
    forged = state_of(form, {"reason": reason}) | {"emergency.orders-db:read": {"emergency": checked("emergency")}}
    refused = bot.submit_values(BOB, form, forged)
    assert list(errors(refused)) == [block_of(form, "level")]
    assert "does not allow emergency access" in errors(refused)[str(block_of(form, "level"))]

    assert requests_stored(bot) == [] and bot.slack.ephemerals(BOB) == []
    # Attempts on what the policy forbids him are written down, as typed ones are; typos and limits are not.
    eventually(lambda: len(refusals(bot)) >= 3)
    assert refusals(bot) == [("request_refused", BOB)] * 3


def test_someone_removed_from_the_requesters_after_opening_is_refused_at_submit(bot: LocalBot) -> None:
    form = opened(bot, BOB).view
    bot.slack.set_group("S0ONCALL", [])
    bot.advance(timedelta(seconds=61))  # group membership is never trusted for longer than a minute

    reply = bot.submit_request_form(BOB, form, {"reason": "INC-3 fix"})

    [(where, text)] = errors(reply).items()
    assert where == block_of(form, "resource") and "no resource 'orders-db' you may request" in text
    eventually(lambda: bool(refusals(bot)))
    assert requests_stored(bot) == [] and refusals(bot) == [("request_refused", BOB)]


def test_the_refusal_is_written_after_the_form_is_answered_and_the_answer_never_waits_for_it(
    policy: Policy, postgres_url: str, receiver: WebhookReceiver
) -> None:
    """Bolt answers a form when its listener returns (``process_before_response``): what a listener writes after its
    ack must go to the work that follows it, or the answer waits for the database. PostgreSQL only: there a lock can
    hold back the audit trail alone (SQLite's would hold back the replay check every ack makes as well)."""
    environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
    bot = LocalBot(policy, postgres_url, environ=environ).start()
    try:
        form = opened(bot, BOB).view
        bot.slack.set_group("S0ONCALL", [])
        bot.advance(timedelta(seconds=61))
        with psycopg.connect(postgres_url) as held:  # nobody can write an audit event until it lets go
            held.execute("LOCK TABLE audit_chain_head IN EXCLUSIVE MODE")

            reply = bot.submit_request_form(BOB, form, {"reason": "INC-3 fix"})

            assert "no resource 'orders-db' you may request" in next(iter(errors(reply).values()))
            assert refusals(bot) == []  # the answer came first: the write is still waiting for the lock
            held.rollback()
        eventually(lambda: bool(refusals(bot)))
        assert refusals(bot) == [("request_refused", BOB)]
    finally:
        bot.stop()


def test_a_check_slack_is_slow_to_answer_is_cut_short_in_the_form_not_left_holding_the_server(
    bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bolt waits for a form's listener (``process_before_response``), in one of the server's few request threads:
    a user-group lookup Slack is slow to answer gets ``CHECK_WITHIN`` seconds before the form says so."""
    form = opened(bot, BOB).view
    bot.advance(timedelta(seconds=61))  # the membership read when the form opened is too old to trust now
    monkeypatch.setattr(after_ack, "CHECK_WITHIN", 0.2)
    bot.slack.stall_next("usergroups.users.list", seconds=2)

    reply = bot.submit_request_form(BOB, form, {"reason": "INC-5 fix"})

    [(where, text)] = errors(reply).items()
    assert where == block_of(form, "resource") and text == NOT_CHECKED_IN_TIME
    assert requests_stored(bot) == []
    monkeypatch.setattr(after_ack, "CHECK_WITHIN", 2.0)  # the stalled lookup was the one; the next is answered
    again = bot.submit_request_form(BOB, form, {"reason": "INC-5 fix"})
    assert again.errors is None and "is with the approvers" in str(again.answer)
    assert [r.resource for r in requests_stored(bot)] == ["orders-db"]


# -- what a submission becomes -------------------------------------------------------------------------------------


def test_a_submitted_form_is_the_request_the_typed_command_makes(bot: LocalBot) -> None:
    typed = bot.command(BOB, "orders-db:write 45m INC-42 checkout <!channel> *down* \u202eevil")
    assert "Request #1 for `orders-db:write` (45m)" in typed.text
    bot.command(BOB, "revoke 1")  # withdrawn, so the same ask can be made again

    form = bot.pick_in_form(BOB, opened(bot, BOB).view, ActionId.PICK_LEVEL, "write")
    reply = bot.submit_request_form(
        BOB, form, {"duration": "45m", "reason": "  INC-42 checkout\n<!channel> *down* \u202eevil "}
    )

    assert reply.errors is None and reply.ack == "" and reply.ack_seconds < 3
    assert reply.answer == typed.text.replace("#1", "#2")  # worded as the typed command's answer, reason inert
    assert "<!channel>" not in (reply.answer or "")
    first, second = requests_stored(bot)
    fields = ("resource", "level", "duration_seconds", "reason", "emergency", "origin_channel", "origin_incident")
    assert [getattr(second, f) for f in fields] == [getattr(first, f) for f in fields]
    assert second.status == Status.PENDING.value and second.principal == first.principal
    assert events(bot, 2) == events(bot, 1)[: len(events(bot, 2))]
    assert [e[0] for e in events(bot, 2)] == ["requested"]
    assert all("<!channel>" not in m.text for m in bot.slack.messages())


def test_breaking_the_glass_from_the_form_is_the_typed_emergency(bot: LocalBot) -> None:
    form = bot.pick_in_form(BOB, opened(bot, BOB).view, ActionId.PICK_LEVEL, "write")

    reply = bot.submit_request_form(BOB, form, {"reason": "INC-5 outage", "emergency": True})

    assert reply.errors is None and "🚨 Glass broken." in reply.text
    current = view(bot, 1)
    assert current.status is Status.ACTIVE and current.emergency and current.label == "orders-db:write"
    assert current.duration == timedelta(minutes=30)
    assert ("emergency", BOB) in audit_actions(bot, 1)


def test_help_still_shows_help(bot: LocalBot) -> None:
    assert "/breakglass list" in bot.command(BOB, "help").ack
    assert bot.slack.calls("views.open") == []


def test_a_flood_of_submissions_is_slowed_down_in_the_form(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, actions_per_minute=2))
    form = opened(bot, BOB).view  # the command is one action
    assert errors(bot.submit_request_form(BOB, form, {"reason": "no ticket"}))  # the second, refused on its merits

    slowed = bot.submit_request_form(BOB, form, {"reason": "INC-1 fix"})

    assert list(errors(slowed)) == [block_of(form, "reason")] and "slow down" in slowed.text.lower()
    assert requests_stored(bot) == []
    eventually(lambda: ("rate_limited", BOB) in audit_actions(bot))


def test_the_form_works_over_socket_mode(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(socket_mode=True)
    form = opened(bot, BOB, via="shortcut").view
    write = bot.pick_in_form(BOB, form, ActionId.PICK_LEVEL, "write")
    assert initial(write, "level") == "write" and "emergency" in inputs(write)

    mistake = bot.submit_request_form(BOB, write, {"reason": "no ticket"})
    assert list(errors(mistake)) == [block_of(write, "reason")]
    reply = bot.submit_request_form(BOB, write, {"reason": "INC-8 fix", "duration": "45m"})

    assert reply.errors is None and "Request #1 for `orders-db:write` (45m)" in reply.text
    assert view(bot, 1).status is Status.PENDING
