"""The Home tab over the real Slack path: a signed ``app_home_opened`` event publishes the person's own page
(``views.publish`` to the Slack stand-in, which refuses any view over Slack's limits), its buttons act as the typed
commands do, and a change re-publishes the pages of the people it concerns who look at theirs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.devtools import slack_requests
from bot.devtools.local_bot import LocalBot
from bot.devtools.slack_standin import MAX_VIEW_BLOCKS, SlackStandIn, view_problem
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.slack.home_refresh import HomeRefresher
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, ActionId, CallbackId
from bot.store.models import Request
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, view

ERIN = "U0ERIN"  # a reviewer through a group; approver of nothing
REVIEW = "review:\n  required: emergency\n  remind_every: 24h\n"
assert REVIEW in POLICY
REVIEWED = POLICY.replace(REVIEW, REVIEW + "  reviewers: [S0AUDIT]\n")


@pytest.fixture
def policy() -> Policy:
    return parse_policy(REVIEWED)


@pytest.fixture
def bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    started = make_bot()
    started.slack.set_group("S0AUDIT", [ERIN])
    return started


# -- reading the page --------------------------------------------------------------------------------------------


def homes(bot: LocalBot) -> HomeRefresher:
    assert bot.runtime is not None and isinstance(bot.runtime.deps.homes, HomeRefresher)
    return bot.runtime.deps.homes


def settle(bot: LocalBot) -> None:
    """Wait until the Home tab worker has published everything handed to it."""
    assert homes(bot).flush(30.0)


def open_home(bot: LocalBot, user: str) -> dict[str, Any]:
    """``user`` opens the app's Home tab; the page published for them then. (Bolt acknowledges an event before its
    listener runs, so the page is waited for, not flushed.)"""
    before = len(bot.slack.homes(user))
    response = bot.sender.event(slack_requests.app_home_opened(user))
    assert response.status_code == 200 and not response.content
    page = bot.slack.wait_for(lambda s: s.homes(user)[before:] and s.homes(user)[-1])
    settle(bot)
    return page


def shown(page: dict[str, Any] | None) -> str:
    """Every text on the page, one block a line."""
    assert page is not None, "no page was published"
    lines = []
    for block in page["blocks"]:
        texts = [block.get("text") or {}, *(block.get("elements") or []), *(block.get("fields") or [])]
        lines.append(
            " ".join(str(t.get("text")) for t in texts if isinstance(t, dict) and isinstance(t.get("text"), str))
        )
    return "\n".join(lines)


def buttons(page: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(action id, value, label) of every button on the page, top to bottom."""
    assert page is not None, "no page was published"
    found = []
    for block in page["blocks"]:
        elements = [*(block.get("elements") or []), *([block["accessory"]] if block.get("accessory") else [])]
        for element in elements:
            if element.get("type") == "button":
                found.append((element["action_id"], element.get("value", ""), element["text"]["text"]))
    return found


def on(page: dict[str, Any] | None, request_id: int) -> list[str]:
    """The action ids of the buttons for one request."""
    return [action for action, value, _ in buttons(page) if value == str(request_id)]


def click(bot: LocalBot, user: str, action: str, request_id: int, expect: str) -> str:
    """``user`` clicks a button on their Home tab; the answer, which comes as a DM (a Home tab click has no
    response_url), once it contains ``expect``."""
    before = len(bot.slack.dms(user))
    page = bot.slack.home(user)
    assert page is not None
    response = bot.sender.act_in_view(user, page, action, value=str(request_id))
    assert response.status_code == 200 and not response.content  # acknowledged at once; the answer follows

    def answered(slack: SlackStandIn) -> str | None:
        texts = [str(call.args.get("text")) for call in slack.dms(user)[before:]]
        return next((text for text in texts if expect in text), None)

    return bot.slack.wait_for(answered)


# -- whose page shows what ---------------------------------------------------------------------------------------


def test_a_requester_sees_their_pending_request_then_their_grant_with_its_buttons(bot: LocalBot) -> None:
    first = open_home(bot, BOB)
    assert "Request access" in [label for _, _, label in buttons(first)]
    assert "Press *Request access*" in shown(first) and "No access right now." in shown(first)

    bot.command(BOB, "orders-db 30m INC-4211 <!here> checkout failing")
    page = open_home(bot, BOB)
    assert on(page, 1) == [ActionId.WITHDRAW]
    text = shown(page)
    assert "Your requests waiting for approval* (1)" in text and "INC-4211" in text
    assert "<!here>" not in text and "&lt;!here&gt;" in text  # the reason is inert
    assert "Press *Request access*" not in text  # no longer a first visit, nor an empty page

    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)  # granted (after the click's answer), then
    bot.clock.advance(timedelta(minutes=5))
    open_home(bot, BOB)
    # A refresh the grant set off may publish a page read before the clock moved; the newest is read after it.
    page = bot.slack.wait_for(lambda s: "*25m left*" in shown(s.home(BOB)) and s.home(BOB))
    assert on(page, 1) == [ActionId.REVOKE, ActionId.ASK_MORE_TIME]
    assert [label for action, _, label in buttons(page) if action == ActionId.REVOKE] == ["Revoke now"]
    text = shown(page)
    assert "Your access* (1)" in text and "*25m left*" in text and "<!date^" in text
    assert "None waiting." in text


def test_an_approver_sees_what_waits_for_them_and_nothing_else_of_others(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix the orders table")  # approvers: S0SRELEADS (Alice, Carol) and Alice
    bot.command(DAVE, "payments-admin 1h refund run")  # approvers: S0SRELEADS

    carol = open_home(bot, CAROL)
    assert on(carol, 1) == [ActionId.APPROVE, ActionId.DENY] and on(carol, 2) == [ActionId.APPROVE, ActionId.DENY]
    assert "Waiting for your decision* (2)" in shown(carol) and "<@U0BOB>" in shown(carol)

    # Neither a requester nor a reviewer sees other people's requests: Dave not Bob's, Erin neither.
    dave = open_home(bot, DAVE)
    assert on(dave, 1) == [] and on(dave, 2) == [ActionId.WITHDRAW]
    assert "Nothing waits for your decision." in shown(dave) and "INC-1" not in shown(dave)
    erin = open_home(bot, ERIN)
    assert on(erin, 1) == [] and on(erin, 2) == [] and "INC-1" not in shown(erin)

    bot.click(CAROL, ActionId.APPROVE, 2)  # one of the two approvals payments-admin needs
    carol = open_home(bot, CAROL)
    assert on(carol, 2) == [] and "Waiting for your decision* (1)" in shown(carol)  # decided already


def test_a_reviewer_sees_the_review_waiting_for_their_sign_off(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 20m INC-7 orders table locked --emergency")
    bot.advance(timedelta(minutes=20))
    assert view(bot, 1).status is Status.EXPIRED and view(bot, 1).review is not None

    owed = open_home(bot, BOB)
    assert on(owed, 1) == [ActionId.WRITE_REVIEW] and "Reviews you owe* (1)" in shown(owed)
    assert "Write review" in [label for _, _, label in buttons(owed)]
    assert on(open_home(bot, ERIN), 1) == []  # nothing to sign off before the account is written

    bot.command(BOB, "review 1 a migration locked orders; rolled it back")
    erin = open_home(bot, ERIN)
    assert on(erin, 1) == [ActionId.WRITE_REVIEW] and "Reviews waiting for your sign-off* (1)" in shown(erin)
    assert "Sign off" in [label for _, _, label in buttons(erin)]
    assert on(open_home(bot, DAVE), 1) == []  # neither an approver nor a reviewer
    assert "None owed." in shown(bot.slack.home(BOB))  # refreshed when the account was written


def test_the_messages_tab_and_unknown_users_publish_nothing(bot: LocalBot) -> None:
    messages = slack_requests.app_home_opened(BOB, tab="messages")
    forged = json.loads(slack_requests.app_home_opened(BOB))
    forged["event"]["user"] = "<!channel>"
    own = json.loads(slack_requests.app_home_opened("U0BOT"))  # the bot's own user, as the authorizations name it
    for body in (messages, json.dumps(forged), json.dumps(own)):
        assert bot.sender.event(body).status_code == 200

    open_home(bot, ERIN)  # handed over after the others: once hers is out, theirs would have been

    assert [c.args["user_id"] for c in bot.slack.calls("views.publish")] == [ERIN]


# -- its buttons -------------------------------------------------------------------------------------------------


def test_withdraw_from_the_home_tab_and_a_stale_withdraw_after_approval(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    open_home(bot, BOB)

    answer = click(bot, BOB, ActionId.WITHDRAW, 1, "#1")
    assert "withdrawn" in answer and view(bot, 1).status is Status.CANCELLED
    assert ("cancelled", BOB) in audit_actions(bot, 1)
    settle(bot)
    assert on(bot.slack.home(BOB), 1) == []  # the page followed

    bot.command(BOB, "orders-db 30m INC-2 fix again")
    open_home(bot, BOB)  # the page with Withdraw on #2
    stale_page = bot.slack.home(BOB)
    bot.click(ALICE, ActionId.APPROVE, 2)
    before = len(bot.slack.dms(BOB))
    assert stale_page is not None
    bot.sender.act_in_view(BOB, stale_page, ActionId.WITHDRAW, value="2")
    stale = bot.slack.wait_for(
        lambda s: next(
            (str(c.args["text"]) for c in s.dms(BOB)[before:] if "Nothing was withdrawn" in str(c.args)), None
        )
    )
    assert "approved by <@U0ALICE01>" in stale and view(bot, 2).status is Status.ACTIVE  # access stays


def test_nobody_withdraws_someone_elses_request(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    open_home(bot, DAVE)

    answer = click(bot, DAVE, ActionId.WITHDRAW, 1, "#1")

    assert "Only the requester may withdraw request #1" in answer and view(bot, 1).status is Status.PENDING
    assert ("revoke_refused", DAVE) in audit_actions(bot, 1)


def test_approve_and_deny_from_the_home_tab(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.command(DAVE, "payments-admin 1h refund run")
    open_home(bot, CAROL)

    answer = click(bot, CAROL, ActionId.APPROVE, 1, "#1")
    assert "Your approval of request #1 is recorded" in answer
    assert view(bot, 1).status in (Status.APPROVED, Status.GRANTING, Status.ACTIVE)

    trigger = bot.slack.issue_trigger(CAROL)
    page = bot.slack.home(CAROL)
    assert page is not None
    bot.sender.act_in_view(CAROL, page, ActionId.DENY, value="2", trigger_id=trigger)
    form = bot.slack.wait_for(lambda s: s.view_for(trigger))
    assert form.view["callback_id"] == CallbackId.DENY
    assert json.loads(form.view["private_metadata"])["channel"] == CAROL  # answered in her DM: no channel here
    before = len(bot.slack.dms(CAROL))
    bot.sender.submit_view(
        CAROL, CallbackId.DENY, form.view["private_metadata"], {WORDS_BLOCK: {WORDS_INPUT: "not now"}}, view=form.view
    )
    denied = bot.slack.wait_for(lambda s: [c for c in s.dms(CAROL)[before:] if "You denied" in str(c.args)])
    assert "#2" in str(denied[0].args["text"]) and view(bot, 2).status is Status.DENIED


def test_an_ask_for_more_time_waits_on_the_approvers_page_and_is_decided_there(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.slack.wait_for(lambda _: view(bot, 1).status is Status.ACTIVE)
    assert "Nothing waits for your decision." in shown(open_home(bot, CAROL))
    open_home(bot, DAVE)
    dave_pages = len(bot.slack.homes(DAVE))
    ends = view(bot, 1).expires_at
    assert ends is not None

    assert "asked" in bot.command(BOB, "extend 1 30m").text.lower()
    # Her page follows without her opening it again: the ask, with buttons that name its round.
    page = bot.slack.wait_for(
        lambda s: [b for b in buttons(s.home(CAROL)) if b[0] == ActionId.APPROVE_EXTENSION] and s.home(CAROL)
    )
    assert [(a, v) for a, v, _ in buttons(page) if v.startswith("1")] == [
        (ActionId.APPROVE_EXTENSION, "1:1"),
        (ActionId.DENY_EXTENSION, "1:1"),
    ]
    assert "asks for 30m more on `orders-db`" in shown(page) and "Waiting for your decision* (1)" in shown(page)
    assert "30m more for <@U0BOB>" in bot.command(CAROL, "mine").text
    assert bot.command(BOB, "mine").text.count("more for") == 0  # the holder does not decide their own ask

    before = len(bot.slack.dms(CAROL))
    bot.sender.act_in_view(CAROL, page, ActionId.APPROVE_EXTENSION, value="1:1")
    bot.slack.wait_for(lambda s: [c for c in s.dms(CAROL)[before:] if "#1" in str(c.args.get("text"))])
    bot.slack.wait_for(lambda _: view(bot, 1).extension_seconds is None)
    assert view(bot, 1).expires_at == ends + timedelta(minutes=30)
    bot.slack.wait_for(lambda s: "Nothing waits for your decision." in shown(s.home(CAROL)))
    settle(bot)
    assert len(bot.slack.homes(DAVE)) == dave_pages  # not his to decide: his page is left alone


# -- refreshed on change, for those who look -------------------------------------------------------------------


def test_a_change_republishes_the_pages_of_the_people_it_concerns_who_opened_theirs(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    assert on(open_home(bot, BOB), 1) == [ActionId.WITHDRAW]
    assert on(open_home(bot, CAROL), 1) == [ActionId.APPROVE, ActionId.DENY]
    open_home(bot, DAVE)
    dave_pages = len(bot.slack.homes(DAVE))

    bot.click(ALICE, ActionId.APPROVE, 1)  # Alice decides in the channel; she never opened her Home tab
    bot.slack.wait_for(lambda s: on(s.home(BOB), 1) == [ActionId.REVOKE, ActionId.ASK_MORE_TIME])
    bot.slack.wait_for(lambda s: on(s.home(CAROL), 1) == [])  # no longer waits for her
    settle(bot)
    assert bot.slack.homes(ALICE) == []  # never opened: never published
    assert len(bot.slack.homes(DAVE)) == dave_pages  # not concerned: not republished


def test_a_burst_of_openings_publishes_a_few_pages_not_one_each(bot: LocalBot) -> None:
    for _ in range(20):
        assert bot.sender.event(slack_requests.app_home_opened(BOB)).status_code == 200
    bot.slack.wait_for(lambda s: s.homes(BOB))
    settle(bot)
    assert len(bot.slack.homes(BOB)) < 20


# -- within Slack's limits however much there is ------------------------------------------------------------------


def add_requests(bot: LocalBot, count: int, **values: Any) -> None:
    """Stored as the bot stores them, in bulk: a page's size is what is tested, not 500 approvals."""
    assert bot.runtime is not None
    now = bot.clock.now()
    with bot.runtime.deps.db.transaction() as session:
        for index in range(count):
            row = {
                "resource": "payments-admin",
                "requester_id": f"U0P{index:05d}",
                "reason": f"INC-{index} <!here> refund run " + "x" * 300,
                "duration_seconds": 3600,
                "emergency": False,
                "status": Status.PENDING.value,
                "created_at": now - timedelta(minutes=count - index),
                "revoke_attempts": 0,
            }
            row |= {key: value(index) if callable(value) else value for key, value in values.items()}
            session.add(Request(uid=str(uuid.uuid4()), **row))


def test_a_page_with_500_items_in_each_of_two_lists_stays_within_slacks_limits(bot: LocalBot) -> None:
    add_requests(bot, 500)  # waiting for Carol
    now = bot.clock.now()
    add_requests(
        bot,
        500,
        requester_id=BOB,
        status=Status.ACTIVE.value,
        granted_at=now,
        expires_at=lambda i: now + timedelta(minutes=500 - i),  # the last stored ends first
    )

    carol = open_home(bot, CAROL)
    bob = open_home(bot, BOB)

    for page in (carol, bob):
        assert page is not None and view_problem(page) is None and len(page["blocks"]) <= MAX_VIEW_BLOCKS
        assert "Showing 10 of 500, the most urgent first." in shown(page) and "/breakglass mine" in shown(page)
    assert "Waiting for your decision* (500)" in shown(carol)
    assert "Your access* (500)" in shown(bob)
    decide = [int(value) for action, value, _ in buttons(carol) if action == ActionId.APPROVE]
    assert decide == list(range(1, 11))  # the oldest first
    revoke = [int(value) for action, value, _ in buttons(bob) if action == ActionId.REVOKE]
    assert revoke == list(range(1000, 990, -1))  # the soonest to end first
