"""Attacks a reviewer made on issue 13's work (steps, reminders, escalation, on-call, decisions with words, trigger
controls), kept as regression tests: each either pins a rule the attack could not break, or shows a defect found."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.devtools.local_bot import LocalBot
from bot.devtools.pagerduty_standin import PagerDutyStandIn
from bot.domain.states import Status
from bot.slack.ids import ActionId
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, view
from tests.e2e.test_approval_flow import MENTION, TWO_STEPS, thread, with_resource
from tests.e2e.test_oncall import ENV, PD_ROUTING, PD_TOKEN, PD_WEB, flow_policy, pagerduty

ERIN = "U0ERIN"
GROUP_CACHE = timedelta(seconds=61)  # past the longest a group's membership is cached


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn(PD_TOKEN, routing_key=PD_ROUTING, web_url=PD_WEB) as running:
        yield running


def everything_shown(bot: LocalBot) -> str:
    """Every text and block the bot sent to Slack: posts, edits, DMs, ephemerals, response_url answers."""
    shown = [str(call.args.get("text")) + str(call.args.get("blocks") or "") for call in bot.slack.calls()]
    shown += [str(body) for body in bot.slack.responses()]
    return "\n".join(shown)


# -- who may deny: everyone who may decide a step --------------------------------------------------------------------


def test_an_escalated_backup_may_deny_with_a_reason(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource("approvers: [U0CAROL]\nescalate_after: 30m\nescalate_to: [U0ERIN]\n"))
    bot.command(BOB, "flow-db 30m INC-1 checkout down")
    bot.advance(timedelta(minutes=30))

    reply = bot.deny(ERIN, 1, "not during the freeze")

    assert view(bot, 1).status is Status.DENIED, reply.text
    assert ("denied", ERIN) in audit_actions(bot, 1)


def test_an_escalated_backup_may_approve_with_a_comment(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource("approvers: [U0CAROL]\nescalate_after: 30m\nescalate_to: [U0ERIN]\n"))
    bot.command(BOB, "flow-db 30m INC-2 checkout down")
    bot.advance(timedelta(minutes=30))

    reply = bot.approve_with_comment(ERIN, 1, "ok, Carol is asleep")

    assert view(bot, 1).status is Status.ACTIVE, reply.text


def test_whoever_is_on_call_may_deny_with_a_reason(make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    policy = flow_policy("approvers: [U0CAROL]\noncall: {schedule: PSCHED1, may_approve: true}\n", top=pagerduty(pd))
    bot = make_bot(policy=policy, environ=ENV)
    bot.command(BOB, "flow-db 30m INC-3 checkout down")

    reply = bot.deny(DAVE, 1, "I am on call and this is not needed")

    assert view(bot, 1).status is Status.DENIED, reply.text


# -- almost valid policy text: refused by key path, never a crash ---------------------------------------------------

BASE = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  flow-db:
    adapter: log
"""


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("approval_steps: [{approvers: [U0ALICE01], required: 0}]", "resources.flow-db.approval_steps.0.required"),
        (f"approval_steps: [{{name: {'n' * 500}, approvers: [U0ALICE01]}}]", "resources.flow-db.approval_steps.0.name"),
        ("approvers: [U0ALICE01]\n    escalate_after: 30m\n    escalate_to: []", "resources.flow-db.escalate_after"),
        ("approvers: [U0ALICE01]\n    pending_timeout: '1 h'", "resources.flow-db.pending_timeout"),
        ("approvers: [U0ALICE01]\n    emergency: {when: incident, urgency: HIGH}", "resources.flow-db.emergency"),
        ("approvers: [U0ALICE01]\n    approval_steps: [{approvers: [U0CAROL]}]", "resources.flow-db"),
        ("approval_steps: []", "resources.flow-db.approval_steps"),
        ("approval_steps: [{approvers: []}]", "resources.flow-db.approval_steps.0.approvers"),
        ("approval_steps: [{approvers: [U0ALICE01], required: 2}]", "resources.flow-db.approval_steps[0].required"),
        ("approvers: [U0ALICE01]\n    escalate_to: [U0CAROL]", "resources.flow-db.escalate_to"),
        ("approvers: [U0ALICE01]\n    escalate_to: ['<!channel>']\n    escalate_after: 1m", "escalate_to"),
        ("approvers: [U0ALICE01]\n    remind_approvers_every: 0s", "resources.flow-db.remind_approvers_every"),
        (
            "approvers: [U0ALICE01]\n    pending_timeout: 10m\n    escalate_after: 10m\n    escalate_to: [U0CAROL]",
            "resources.flow-db.escalate_after",
        ),
    ],
)
def test_almost_valid_approval_policy_is_refused_by_key_path(extra: str, path: str) -> None:
    from bot.policy import PolicyError, parse_policy

    with pytest.raises(PolicyError) as refused:
        parse_policy(BASE + f"    {extra}\n")
    assert path in str(refused.value), str(refused.value)


# -- nothing typed becomes a live mention, link or date --------------------------------------------------------------

INJECTED = (
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S0ONCALL>",
    "<@U0DAVE>",
    "<https://evil.example|",
    "<!date^1700000000",
    "<mailto:",
    "\u202e",
)
PAYLOAD = (
    "<!channel> <!here|here> <!everyone> <!subteam^S0ONCALL|@oncall> <@U0DAVE> <https://evil.example|click> "
    "<!date^1700000000^{date}|x> <mailto:a@evil.example|mail> \u202egnp.exe @here &lt;@U0DAVE&gt; "
)


def live_injections(bot: LocalBot) -> list[str]:
    shown = everything_shown(bot)
    return [token for token in INJECTED if token in shown]


def test_words_of_requester_approvers_and_deniers_stay_inert_everywhere(make_bot: Callable[..., LocalBot]) -> None:
    policy = flow_policy(
        TWO_STEPS.replace("remind_approvers_every: 10m", "remind_approvers_every: 1m"),
        channels="incidents: [C0INCIDENT]",
    )
    bot = make_bot(policy=policy)
    # an approver whose Slack names are themselves an attack: the thread names approvers by name
    bot.slack.add_user("U0MAL", "<!channel>", "mal@example.com", real_name="<!here> <@U0DAVE> Mallory")
    bot.slack.set_group("S0SRELEADS", [ALICE, CAROL, "U0MAL"])
    bot.command(BOB, f"flow-db 30m INC-1 {PAYLOAD}"[:480], channel="C0INCIDENT")
    bot.approve_with_comment("U0MAL", 1, PAYLOAD)
    bot.advance(timedelta(minutes=1))  # a reminder in the thread
    bot.deny(ERIN, 1, PAYLOAD)

    assert view(bot, 1).status is Status.DENIED
    assert live_injections(bot) == []
    mentioned = set(MENTION.findall(everything_shown(bot)))
    # the deciders, the steps' groups and the requester (named to an incident channel he typed in); never whom the
    # words named
    assert mentioned <= {"@U0ERIN", "@U0MAL", "@U0BOB", "!subteam^S0SRELEADS", "!subteam^S0SECURITY"}, mentioned


def test_a_very_long_reason_and_comment_are_cut_not_posted_whole(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-2 " + "<@U0DAVE>" * 53)
    bot.approve_with_comment(ALICE, 1, "&" * 500)  # each & becomes &amp;: five times longer once escaped

    assert view(bot, 1).waiting_step == 1
    assert live_injections(bot) == []
    for call in bot.slack.calls("chat.update") + bot.slack.calls("chat.postMessage"):
        assert call.ok, (call.method, call.error)


# -- who counts: removed, off call, one person behind two accounts ---------------------------------------------------


def test_a_step_one_approver_removed_before_step_two_leaves_step_one_waiting_again(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-1 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.slack.set_group("S0SRELEADS", [CAROL])  # Alice left the team leads
    bot.clock.advance(GROUP_CACHE)

    early = bot.click(ERIN, ActionId.APPROVE, 1)

    assert "waits for step 1 of 2 (team lead) first" in early.text
    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []
    bot.click(CAROL, ActionId.APPROVE, 1)
    bot.click(ERIN, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE and len(receiver.events("grant")) == 1


TWO_OF_LEADS = 'principal: "{email_local}"\napprovers: [S0SRELEADS]\napprovals_required: 2\n'


def test_one_approver_behind_two_slack_accounts_counts_once(make_bot: Callable[..., LocalBot], receiver: Any) -> None:
    bot = make_bot(policy=with_resource(TWO_OF_LEADS))
    bot.slack.add_user("U0ALICE02", "alice2", "alice@example.org")  # the same login, "alice", as U0ALICE01
    bot.slack.set_group("S0SRELEADS", [ALICE, "U0ALICE02", CAROL])
    bot.command(BOB, "flow-db 30m INC-2 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)

    bot.click("U0ALICE02", ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []


def test_one_person_behind_two_accounts_cannot_fill_two_steps(make_bot: Callable[..., LocalBot], receiver: Any) -> None:
    bot = make_bot(policy=with_resource('principal: "{email_local}"\n' + TWO_STEPS))
    bot.slack.add_user("U0ALICE02", "alice2", "alice@example.org")
    bot.slack.set_group("S0SECURITY", [ERIN, "U0ALICE02"])
    bot.command(BOB, "flow-db 30m INC-3 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)

    bot.click("U0ALICE02", ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []


# -- extensions -----------------------------------------------------------------------------------------------------


def test_an_extension_half_approved_when_access_ends_is_not_applied_after(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-4 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.click(ERIN, ActionId.APPROVE, 1)
    bot.command(ALICE, "extend 1 30m")  # step 1 of the extension; security never answers in time
    bot.advance(timedelta(minutes=31))
    assert view(bot, 1).status in (Status.EXPIRED, Status.REVOKED), view(bot, 1).status

    late = bot.command(ERIN, "extend 1 30m")

    assert view(bot, 1).status in (Status.EXPIRED, Status.REVOKED)
    assert "now lasts until" not in late.text
    assert receiver.events("extend") == [] and len(receiver.events("grant")) == 1


def test_an_extension_needs_step_one_first_even_from_security(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-5 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.click(ERIN, ActionId.APPROVE, 1)
    before = view(bot, 1).expires_at

    bot.command(ERIN, "extend 1 30m")
    bot.command(CAROL, "extend 1 30m")  # the team lead after security: the order was not kept

    current = view(bot, 1)
    assert current.expires_at == before or current.expires_at == before + timedelta(minutes=30)  # type: ignore[operator]
    if current.expires_at != before:  # applied: then security's approval must have counted after Carol's, in order
        raise AssertionError("an extension approved out of step order took effect")


def test_the_holder_cannot_approve_their_own_extension_through_a_later_step(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS.replace("[S0SECURITY]", "[S0SECURITY, U0BOB]")))
    bot.command(BOB, "flow-db 30m INC-6 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.click(ERIN, ActionId.APPROVE, 1)
    before = view(bot, 1).expires_at
    bot.command(CAROL, "extend 1 30m")

    own = bot.command(BOB, "extend 1 30m")

    assert view(bot, 1).expires_at == before, own.text


# -- races and moments -----------------------------------------------------------------------------------------------


def test_no_escalation_and_no_reminder_after_a_denial(make_bot: Callable[..., LocalBot]) -> None:
    policy = with_resource(
        "approvers: [U0CAROL]\nremind_approvers_every: 5m\nescalate_after: 30m\nescalate_to: [U0ERIN]\n"
    )
    bot = make_bot(policy=policy)
    bot.command(BOB, "flow-db 30m INC-7 checkout down")
    bot.clock.advance(timedelta(minutes=30))  # escalation and reminders are due, the sweep has not run
    bot.deny(CAROL, 1, "no")
    bot.sweep()
    bot.advance(timedelta(hours=2))

    replies = thread(bot, 1)
    assert not any("backup approvers" in text or "Reminder" in text for text in replies), replies
    assert ("escalated", "breakglass") not in audit_actions(bot, 1)


def test_a_deny_form_submitted_after_the_approval_completed_records_nothing(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-8 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    opened = bot.open_form(ERIN, ActionId.DENY, 1)
    assert not hasattr(opened, "ack")
    bot.slack.set_group("S0SECURITY", [ERIN, DAVE])
    bot.clock.advance(GROUP_CACHE)
    bot.click(DAVE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE

    late = bot.submit_form(ERIN, opened.view, "too late")  # type: ignore[union-attr]

    assert view(bot, 1).status is Status.ACTIVE and "Nothing was done" in late.text
    assert ("denied", ERIN) not in audit_actions(bot, 1)


def test_a_form_forged_for_another_request_is_held_to_that_requests_steps(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.command(BOB, "flow-db 30m INC-9 checkout down")
    second = bot.command(DAVE, "payments-admin 30m refund stuck")
    assert "Request #2" in second.text, second.text
    opened = bot.open_form(ERIN, ActionId.APPROVE_WITH_COMMENT, 1)
    forged = dict(opened.view)  # type: ignore[union-attr]
    forged["private_metadata"] = forged["private_metadata"].replace('"request":1', '"request":2')
    assert forged["private_metadata"] != opened.view["private_metadata"]  # type: ignore[union-attr]

    reply = bot.submit_form(ERIN, forged, "fine")

    assert view(bot, 2).status is Status.PENDING and view(bot, 2).decisions == (), reply.text


def test_a_second_slack_account_of_the_holder_cannot_approve_their_extension(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    bot = make_bot(policy=with_resource('principal: "{email_local}"\napprovers: [S0SRELEADS]\n'))
    bot.slack.add_user("U0BOBTWO", "bob2", "bob@example.org")  # the same login, "bob", as the holder
    bot.slack.set_group("S0SRELEADS", [ALICE, CAROL, "U0BOBTWO"])
    bot.command(BOB, "flow-db 30m INC-10 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)
    before = view(bot, 1).expires_at

    own = bot.command("U0BOBTWO", "extend 1 30m")

    assert view(bot, 1).expires_at == before, own.text
    assert receiver.events("extend") == []


def test_whoever_is_on_call_may_approve_an_extension_as_they_approved_the_request(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    policy = flow_policy("approvers: [U0CAROL]\noncall: {schedule: PSCHED1, may_approve: true}\n", top=pagerduty(pd))
    bot = make_bot(policy=policy, environ=ENV)
    bot.command(BOB, "flow-db 30m INC-11 checkout down")
    bot.click(DAVE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE
    before = view(bot, 1).expires_at

    more = bot.command(DAVE, "extend 1 30m")

    assert view(bot, 1).expires_at == before + timedelta(minutes=30), more.text  # type: ignore[operator]


def test_a_deny_form_submitted_after_the_pending_timeout_lapses_the_request_instead(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = make_bot(policy=with_resource("approvers: [U0CAROL]\npending_timeout: 1h\n"))
    bot.command(BOB, "flow-db 30m INC-12 checkout down")
    opened = bot.open_form(CAROL, ActionId.DENY, 1)
    bot.clock.advance(timedelta(hours=1))  # the sweep has not run yet

    late = bot.submit_form(CAROL, opened.view, "no")  # type: ignore[union-attr]

    assert view(bot, 1).status is Status.TIMED_OUT, late.text
    assert ("denied", CAROL) not in audit_actions(bot, 1)


# -- trigger controls -------------------------------------------------------------------------------------------------

WHEN_INCIDENT = "approvers: [U0CAROL]\nemergency: {when: incident}\n"


def test_a_channel_named_like_an_incident_is_not_one_when_the_policy_lists_ids(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    bot = make_bot(policy=flow_policy(WHEN_INCIDENT, channels="incidents: [C0INC1]"))

    refused = bot.command(
        BOB, "flow-db 30m INC-13 checkout down --emergency", channel="C0FAKEINC", channel_name="inc-13-checkout"
    )

    assert "typed in an incident channel" in refused.text
    assert receiver.events("grant") == []


LEVELED = """
approvers: [U0CAROL]
levels:
  read: {emergency: true}
  write: {emergency: {when: incident}}
"""


def test_an_incident_only_level_stays_whole_while_another_level_may_break(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: Any
) -> None:
    bot = make_bot(policy=flow_policy(LEVELED, top=pagerduty(pd)), environ=ENV)

    refused = bot.command(BOB, "flow-db:write 30m INC-14 checkout down --emergency")

    assert "Glass broken" not in refused.text and receiver.events("grant") == []
    broken = bot.command(BOB, "flow-db 30m INC-14 checkout down --emergency")  # the first level allows it outright
    assert "Glass broken" in broken.text
    assert [event.body.get("level") for event in receiver.events("grant")] == ["read"]


def test_with_the_incident_level_first_an_emergency_naming_no_level_needs_an_incident(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: Any
) -> None:
    first = LEVELED.replace("read: {emergency: true}", "read: {emergency: {when: incident}}").replace(
        "write: {emergency: {when: incident}}", "write: {emergency: true}"
    )
    bot = make_bot(policy=flow_policy(first, top=pagerduty(pd)), environ=ENV)

    refused = bot.command(BOB, "flow-db 30m INC-15 checkout down --emergency")

    assert "Glass broken" not in refused.text and receiver.events("grant") == []


# -- auto_approve ----------------------------------------------------------------------------------------------------

AUTO = "approvers: [U0CAROL]\noncall: {schedule: PSCHED1, auto_approve: true}\n"


def test_on_call_for_another_schedule_is_not_on_call_for_this_one(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: Any
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    pd.set_on_call("PSCHED2", ["bob@example.com"])
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)

    bot.command(BOB, "flow-db 30m INC-16 checkout down")

    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []


def test_the_requesters_second_account_on_call_does_not_auto_approve_the_first(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: Any
) -> None:
    pd.set_on_call("PSCHED1", ["bob@example.org"])
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)
    bot.slack.add_user("U0BOBTWO", "bob2", "bob@example.org")

    bot.command(BOB, "flow-db 30m INC-17 checkout down")

    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []


def test_an_on_call_email_in_another_case_is_the_same_person(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: Any
) -> None:
    pd.set_on_call("PSCHED1", ["Bob@Example.COM"])
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)

    bot.command(BOB, "flow-db 30m INC-18 checkout down")

    assert view(bot, 1).status is Status.ACTIVE and len(receiver.events("grant")) == 1


def test_an_auto_approval_needs_the_requester_on_call_when_asked_not_before(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: Any
) -> None:
    from bot.services.oncall import TTL

    pd.set_on_call("PSCHED1", ["bob@example.com"])
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-19 checkout down")
    bot.command(BOB, "revoke 1")
    pd.set_on_call("PSCHED1", ["dave@example.com"])  # the shift changed
    bot.clock.advance(TTL + timedelta(seconds=1))

    bot.command(BOB, "flow-db 30m INC-19 checkout down again")

    assert view(bot, 2).status is Status.PENDING and len(receiver.events("grant")) == 1


# -- races at the last step -----------------------------------------------------------------------------------------


def test_two_approvals_at_once_for_the_last_step_grant_once(make_bot: Callable[..., LocalBot], receiver: Any) -> None:
    from tests.e2e.test_rules_at_effect import first_write_of

    bot = make_bot(policy=with_resource(TWO_STEPS))
    bot.slack.set_group("S0SECURITY", [ERIN, DAVE])
    bot.command(BOB, "flow-db 30m INC-20 checkout down")
    bot.click(ALICE, ActionId.APPROVE, 1)

    with first_write_of(bot, DAVE, lambda: bot.click(ERIN, ActionId.APPROVE, 1)) as erin:
        dave = bot.click(DAVE, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.ACTIVE, (dave.text, erin)
    assert len(receiver.events("grant")) == 1
    security = [d.approver_id for d in view(bot, 1).decisions if d.step == 1]
    assert len(security) == len(set(security)) >= 1
    assert [action for action, _ in audit_actions(bot, 1)].count("approved") == 1 + len(security)


def test_a_reminder_due_when_the_last_approval_lands_is_never_sent(make_bot: Callable[..., LocalBot]) -> None:
    from bot.services import waiting

    bot = make_bot(policy=with_resource("approvers: [U0CAROL]\nremind_approvers_every: 10m\n"))
    bot.command(BOB, "flow-db 30m INC-21 checkout down")
    bot.clock.advance(timedelta(minutes=10))  # due, but no sweep has sent it yet
    bot.click(CAROL, ActionId.APPROVE, 1)
    assert bot.runtime is not None

    assert waiting.remind(bot.runtime.deps, 1) is False
    assert waiting.escalate(bot.runtime.deps, 1) is False
    bot.advance(timedelta(hours=1))
    assert not any("Reminder" in text for text in thread(bot, 1))


# -- text from elsewhere: Slack names, the on-call service's incidents ------------------------------------------------


def test_an_incident_title_and_an_approver_name_stay_inert(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.open_incident("PINC1", f"Checkout down {PAYLOAD}", service="PSVC1")
    when = (
        "approvers: [S0SRELEADS]\napprovals_required: 2\nemergency: {when: incident}\n"
        "oncall: {schedule: PSCHED1, page_on_emergency: true}\n"
    )
    bot = make_bot(policy=flow_policy(when, top=pagerduty(pd)), environ=ENV)
    bot.slack.add_user("U0MAL", "<!channel>", "mal@example.com", real_name="<!here> <@U0DAVE> Mallory")
    bot.slack.set_group("S0SRELEADS", [ALICE, "U0MAL"])
    bot.command(BOB, "flow-db 30m INC-22 checkout down --emergency")
    assert view(bot, 1).status is Status.ACTIVE
    bot.command(CAROL, "flow-db 30m INC-23 checkout slow")
    bot.click("U0MAL", ActionId.APPROVE, 2)  # one of two: the thread names him
    bot.click(ALICE, ActionId.APPROVE, 2)
    bot.command("U0MAL", "extend 2 30m")  # one of two again

    assert view(bot, 2).status is Status.ACTIVE
    shown = everything_shown(bot)
    assert "Mallory" in shown  # the approver was named, and nothing of the name or the incident went live
    assert live_injections(bot) == []


@pytest.mark.xfail(
    reason="the twin check looks people up before the row lock; an approval by the other account that commits "
    "meanwhile is counted under the lock without being compared",
    strict=True,
)
def test_two_accounts_of_one_approver_at_the_same_moment_count_once(
    make_bot: Callable[..., LocalBot], receiver: Any
) -> None:
    from tests.e2e.test_rules_at_effect import first_write_of

    bot = make_bot(policy=with_resource(TWO_OF_LEADS))
    bot.slack.add_user("U0ALICE02", "alice2", "alice@example.org")
    bot.slack.set_group("S0SRELEADS", [ALICE, "U0ALICE02", CAROL])
    bot.command(BOB, "flow-db 30m INC-24 checkout down")

    with first_write_of(bot, "U0ALICE02", lambda: bot.click(ALICE, ActionId.APPROVE, 1)):
        bot.click("U0ALICE02", ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []
