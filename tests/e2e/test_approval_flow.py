"""The right people, at once: mentions, reminders, escalation, timeouts, steps, threads and links, over the real
Slack path with time moved rather than waited."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.devtools.local_bot import LocalBot
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services import waiting
from bot.slack.ids import ActionId
from bot.store import queries
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, dm_texts, view

ERIN = "U0ERIN"
APPROVALS, SECURITY = "C0APPROVALS", "C0SECURITY"
MENTION = re.compile(r"<(@[UW][A-Z0-9]+|!subteam\^[A-Z0-9]+|!here|!channel|!everyone)[^>]*>")


def with_resource(extra: str, *, top: str = "") -> Policy:
    """The e2e policy with one more resource, `flow-db`, on the same webhook."""
    body = (
        "\n  flow-db:\n    adapter: webhook\n    params:\n      url: ${WEBHOOK_URL}\n"
        "      secret: ${BREAKGLASS_WEBHOOK_SECRET}\n      timeout: 10\n"
        + "".join(f"    {line}\n" for line in extra.strip("\n").splitlines())
    )
    text = POLICY.rstrip("\n") + body
    if top:
        text = text.replace("resources:\n", top.strip("\n") + "\nresources:\n", 1)
    return parse_policy(text)


def mentions_in(message: dict[str, Any] | None) -> set[str]:
    assert message is not None, "no such message"
    return set(MENTION.findall(str(message["text"]) + str(message["blocks"])))


def thread(bot: LocalBot, request_id: int) -> list[str]:
    """The texts of the replies in the thread of a request's approval message, oldest first."""
    current = view(bot, request_id)
    assert current.approval_channel and current.approval_ts
    return [
        str(call.args.get("text"))
        for call in bot.slack.calls("chat.postMessage")
        if call.ok and call.args.get("thread_ts") == current.approval_ts
    ]


TWO_STEPS = """
approval_steps:
  - name: team lead
    approvers: [S0SRELEADS]
  - name: security
    approvers: [S0SECURITY]
requesters: [S0ONCALL]
remind_approvers_every: 10m
"""


# -- mentions ------------------------------------------------------------------------------------------------------


def test_the_approval_message_mentions_exactly_the_deciders_and_typed_text_adds_none(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    typed = "INC-1 <!channel> <!here> @here <@U0CAROL> <!subteam^S0ONCALL> &lt;@U0DAVE&gt; <https://x.io|y>"
    bot.command(BOB, f"flow-db 30m {typed}")

    message = bot.request_message(1)
    assert mentions_in(message) == {"!subteam^S0SRELEADS"}  # step 1's group, once; not step 2, not the requester
    assert "<!subteam^S0SRELEADS>" in str(message["text"]) if message else False  # the text is what notifies


def test_a_single_step_message_mentions_its_listed_users_and_groups(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-2 <@U0ALICE01> please")

    assert mentions_in(bot.request_message(1)) == {"!subteam^S0SRELEADS", "@U0ALICE01"}


# -- two steps ------------------------------------------------------------------------------------------------------


def test_two_steps_in_order_one_person_one_step_and_a_deny_at_step_two_ends_it(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-3 checkout down")

    early = bot.click(ERIN, ActionId.APPROVE, 1)  # security, before the team lead
    assert "waits for step 1 of 2 (team lead) first" in early.text
    assert view(bot, 1).decisions == ()

    bot.click(ALICE, ActionId.APPROVE, 1)
    current = view(bot, 1)
    assert current.status is Status.PENDING and current.waiting_step == 1
    assert any("now asking for step 2 of 2 (security): <!subteam^S0SECURITY>" in text for text in thread(bot, 1))
    assert mentions_in(bot.request_message(1)) >= {"!subteam^S0SECURITY"}

    again = bot.click(ALICE, ActionId.APPROVE, 1)
    assert "already decided" in again.text
    carol = bot.click(CAROL, ActionId.APPROVE, 1)  # team lead too, but step 1 is done and she is not security
    assert "not an approver of" in carol.text

    denied = bot.deny(ERIN, 1, "no change ticket for this")
    assert "denied" in denied.text.lower()
    current = view(bot, 1)
    assert current.status is Status.DENIED
    assert [(d.approver_id, d.step, d.approve) for d in current.decisions] == [(ALICE, 0, True), (ERIN, 1, False)]
    assert "no change ticket for this" in str(bot.request_message(1))
    assert any("no change ticket for this" in text for text in dm_texts(bot, BOB))
    assert ("denied", ERIN) in audit_actions(bot, 1)


def test_two_steps_approved_grants_once_both_are_done(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-4 checkout down")
    bot.click(CAROL, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.PENDING
    bot.approve_with_comment(ERIN, 1, "ok for 30m, watch the replicas")

    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert "watch the replicas" in str(bot.request_message(1))
    assert any("watch the replicas" in text for text in dm_texts(bot, BOB))


def test_the_requester_never_counts_even_when_listed_in_a_step(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS.replace("[S0SECURITY]", "[S0SECURITY, U0BOB]")))
    bot.command(BOB, "flow-db 30m INC-5 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)

    own = bot.click(BOB, ActionId.APPROVE, 1)
    assert "your own request" in own.text
    assert view(bot, 1).status is Status.PENDING


# -- reminders, escalation, timeouts --------------------------------------------------------------------------------


def test_reminders_go_to_those_who_have_not_decided_in_the_thread_at_the_set_times(
    make_bot: Callable[..., LocalBot],
) -> None:
    one_step = "approvers: [S0SRELEADS]\napprovals_required: 2\nremind_approvers_every: 10m\n"
    bot = make_bot(policy=with_resource(one_step))
    bot.command(BOB, "flow-db 30m INC-6 checkout down")

    bot.advance(timedelta(minutes=9, seconds=59))
    assert not any("Reminder" in text for text in thread(bot, 1))
    bot.advance(timedelta(seconds=1))
    reminders = [text for text in thread(bot, 1) if "Reminder" in text]
    assert len(reminders) == 1
    assert set(MENTION.findall(reminders[0])) == {"@U0ALICE01", "@U0CAROL"}  # the group opened up into its people

    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.advance(timedelta(minutes=10))
    reminders = [text for text in thread(bot, 1) if "Reminder" in text]
    assert len(reminders) == 2
    assert set(MENTION.findall(reminders[1])) == {"@U0CAROL"}  # Alice decided

    bot.click(CAROL, ActionId.APPROVE, 1)
    bot.advance(timedelta(minutes=30))
    assert len([text for text in thread(bot, 1) if "Reminder" in text]) == 2  # decided: no more


def test_a_reminder_is_sent_once_by_replicas_racing_for_it(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource("approvers: [S0SRELEADS]\nremind_approvers_every: 15m\n"))
    bot.command(BOB, "flow-db 30m INC-7 checkout down")
    bot.clock.advance(timedelta(minutes=15))
    assert bot.runtime is not None
    deps = bot.runtime.deps
    start = threading.Barrier(4)
    sent: list[bool] = []

    def replica() -> None:
        start.wait()
        sent.append(waiting.remind(deps, 1))

    racers = [threading.Thread(target=replica) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    bot.sweep()  # and a sweep after them finds nothing left to send

    assert sorted(sent) == [False, False, False, True]
    assert len([text for text in thread(bot, 1) if "Reminder" in text]) == 1
    with deps.db.transaction() as session:
        request = queries.get(session, 1)
        assert request is not None and request.reminders_sent == 1


def test_escalation_asks_the_backups_who_may_then_decide(make_bot: Callable[..., LocalBot]) -> None:
    policy = with_resource("approvers: [U0CAROL]\nescalate_after: 30m\nescalate_to: [U0ERIN]\n")
    bot = make_bot(policy=policy)
    bot.command(BOB, "flow-db 30m INC-8 checkout down")

    early = bot.click(ERIN, ActionId.APPROVE, 1)
    assert "not an approver" in early.text
    bot.advance(timedelta(minutes=30))
    escalations = [text for text in thread(bot, 1) if "backup approvers" in text]
    assert len(escalations) == 1 and set(MENTION.findall(escalations[0])) == {"@U0ERIN"}
    assert "@U0ERIN" in mentions_in(bot.request_message(1))

    bot.click(ERIN, ActionId.APPROVE, 1)
    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert [(d.approver_id, d.via) for d in current.decisions] == [(ERIN, "escalation")]
    assert ("escalated", "breakglass") in audit_actions(bot, 1)
    bot.advance(timedelta(hours=1))
    assert len([text for text in thread(bot, 1) if "backup approvers" in text]) == 1  # once


def test_pending_timeout_is_per_resource_and_the_requester_is_told(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource("approvers: [U0CAROL]\npending_timeout: 1h\n"))
    bot.command(BOB, "flow-db 30m INC-9 checkout down")
    bot.command(BOB, "orders-db 30m INC-9 checkout down")

    bot.advance(timedelta(minutes=59))
    assert view(bot, 1).status is Status.PENDING
    bot.advance(timedelta(minutes=1))
    assert view(bot, 1).status is Status.TIMED_OUT
    assert view(bot, 2).status is Status.PENDING  # orders-db keeps the default 24h
    assert any("lapsed" in text for text in dm_texts(bot, BOB))
    late = bot.click(CAROL, ActionId.APPROVE, 1)
    assert "lapsed" in late.text or "no decision" in late.text


# -- threads and links -----------------------------------------------------------------------------------------------


def test_what_follows_the_approval_message_is_in_its_thread_and_dms_link_to_it(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-10 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.command(BOB, "revoke 1")

    replies = thread(bot, 1)
    assert any("has access to *orders-db*" in text for text in replies)
    assert any("was revoked" in text for text in replies)
    assert not any("<@U0BOB>" in text for text in replies)  # the requester is named in the thread, not called on
    current = view(bot, 1)
    assert current.approval_link and current.approval_link.startswith("https://")
    assert all(current.approval_link in text for text in dm_texts(bot, BOB))
    assert bot.slack.calls("chat.getPermalink")  # the link is Slack's own


# -- extensions ----------------------------------------------------------------------------------------------------


def test_an_extension_needs_the_same_steps_as_the_request(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-11 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.click(ERIN, ActionId.APPROVE, 1)
    before = view(bot, 1).expires_at

    first = bot.command(ALICE, "extend 1 30m")
    assert "waits for step 2 of 2 (security)" in first.text
    assert view(bot, 1).expires_at == before
    assert any("<!subteam^S0SECURITY>" in text for text in thread(bot, 1) if "more on request" in text)

    other = bot.command(ERIN, "extend 1 1h")
    assert "waits for its approvals" in other.text and view(bot, 1).expires_at == before
    bot.command(ERIN, "extend 1 30m")
    assert view(bot, 1).expires_at == before + timedelta(minutes=30)  # type: ignore[operator]


@pytest.mark.parametrize("who", [DAVE])
def test_someone_who_decides_no_step_cannot_decide(make_bot: Callable[..., LocalBot], who: str) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-12 checkout down")

    assert "not an approver" in bot.click(who, ActionId.APPROVE, 1).text
