"""On-call approval, auto-approval, pages and the emergency trigger controls, over the real Slack path with a
PagerDuty stand-in on loopback (tests/e2e/test_oncall_opsgenie.py does the same with Opsgenie).

What these tests hold the bot to: whoever is on call is asked when it takes effect (a click, a request, the last
approval), never from a stale answer; an on-call service that cannot answer approves nothing, blocks nothing and is
said to have failed; breaking the glass pages once and says where; `emergency: {when: incident}` lets the glass break
only during an incident (or an unverifiable one, said loudly); emergencies in the audit channel call on people.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.devtools.local_bot import LocalBot
from bot.devtools.pagerduty_standin import PagerDutyStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services.oncall import TTL
from bot.settings import SettingsError
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent
from tests.e2e.conftest import POLICY, WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, audit_actions, channel_texts, dm_texts, view

ERIN = "U0ERIN"
APPROVALS, SECURITY = "C0APPROVALS", "C0SECURITY"
PD_TOKEN = "pd-rest-token-7Qm2Xc9Lw4Rt8Ny1"
PD_ROUTING = "pd-routing-key-R3k8Vb5Hd0Zp6Ta2"
PD_WEB = "https://acme.pagerduty.com"  # PagerDuty's incident links are on the account's web host, not the API's
ENV = {"PAGERDUTY_API_TOKEN": PD_TOKEN, "PAGERDUTY_ROUTING_KEY": PD_ROUTING}
PAST_CACHE = TTL + timedelta(seconds=1)


def flow_policy(extra: str, *, top: str = "", channels: str = "", review: str = "") -> Policy:
    """The e2e policy with one more resource, `flow-db`, on the same webhook; ``channels`` and ``review`` add keys to
    those sections, ``top`` adds top-level sections (e.g. `oncall:`)."""
    text = POLICY
    if channels:
        text = text.replace("  audit: C0SECURITY\n", "  audit: C0SECURITY\n" + _indented(channels, 2), 1)
    if review:
        text = text.replace("  remind_every: 24h\n", "  remind_every: 24h\n" + _indented(review, 2), 1)
    if top:
        text = text.replace("resources:\n", top.strip("\n") + "\nresources:\n", 1)
    body = (
        "\n  flow-db:\n    adapter: webhook\n    params:\n      url: ${WEBHOOK_URL}\n"
        "      secret: ${BREAKGLASS_WEBHOOK_SECRET}\n      timeout: 10\n" + _indented(extra, 4)
    )
    return parse_policy(text.rstrip("\n") + body)


def _indented(text: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in text.strip("\n").splitlines())


def pagerduty(pd: PagerDutyStandIn) -> str:
    return f"oncall:\n  provider: pagerduty\n  api_url: {pd.url}\n  events_url: {pd.url}\n  timeout: 2\n"


def detail(bot: LocalBot, action: str, request_id: int | None = None) -> list[dict[str, Any]]:
    """The details of the audit events of ``action``, oldest first."""
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if request_id is not None:
            statement = statement.where(AuditEvent.request_id == request_id)
        return [dict(event.detail or {}) for event in session.scalars(statement)]


def approval_thread(bot: LocalBot, request_id: int) -> list[str]:
    current = view(bot, request_id)
    assert current.approval_channel and current.approval_ts
    return [m.text for m in bot.slack.thread(current.approval_channel, current.approval_ts)]


def alert_replies(bot: LocalBot, request_id: int) -> list[dict[str, Any]]:
    """The arguments of the bot's replies in the thread of a request's emergency alert."""
    current = view(bot, request_id)
    assert current.alert_channel == SECURITY and current.alert_ts
    return [
        call.args
        for call in bot.slack.calls("chat.postMessage")
        if call.ok and call.args.get("thread_ts") == current.alert_ts and call.args.get("channel") == SECURITY
    ]


def broadcast(args: dict[str, Any]) -> bool:
    return args.get("reply_broadcast") in (True, "true", "1", 1)


def no_request(bot: LocalBot) -> None:
    """No request was stored: the trail has nothing that names one (a refusal names none)."""
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.request_id.is_not(None))).first() is None


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn(PD_TOKEN, routing_key=PD_ROUTING, web_url=PD_WEB) as running:
        yield running


def unreachable(pd: PagerDutyStandIn, how: str) -> None:
    if how == "stopped":
        pd.stop()  # connection refused
    elif how == "outage":
        pd.outage()  # 503
    else:
        pd.malformed()  # 200, not JSON


FAILURES = ["stopped", "outage", "malformed"]

MAY_APPROVE = "approvers: [U0CAROL]\noncall: {schedule: PSCHED1, may_approve: true}\n"


# -- may_approve --------------------------------------------------------------------------------------------------


def test_whoever_is_on_call_now_may_approve_and_is_asked(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    bot = make_bot(policy=flow_policy(MAY_APPROVE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-1 checkout down")

    message = bot.request_message(1)
    assert message is not None and "<@U0DAVE>" in str(message["text"])  # the on-call person is called on
    assert "Approved at once" not in str(message)
    bot.click(DAVE, ActionId.APPROVE, 1)
    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert [(d.approver_id, d.via) for d in current.decisions] == [(DAVE, "oncall")]
    assert ("GET", "/oncalls") in pd.calls


def test_once_off_call_their_click_is_refused_and_the_new_on_call_may_approve(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    bot = make_bot(policy=flow_policy(MAY_APPROVE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-2 checkout down")
    pd.set_on_call("PSCHED1", ["erin@example.com"])
    bot.clock.advance(PAST_CACHE)

    refused = bot.click(DAVE, ActionId.APPROVE, 1)
    assert "not an approver" in refused.text
    assert view(bot, 1).status is Status.PENDING and view(bot, 1).decisions == ()

    bot.click(ERIN, ActionId.APPROVE, 1)
    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert [(d.approver_id, d.via) for d in current.decisions] == [(ERIN, "oncall")]


@pytest.mark.parametrize("how", FAILURES)
def test_an_unreachable_service_makes_nobody_an_on_call_approver_and_listed_approvers_still_decide(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, how: str
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    bot = make_bot(policy=flow_policy(MAY_APPROVE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-3 checkout down")  # Dave is on call when it is asked
    unreachable(pd, how)
    bot.clock.advance(PAST_CACHE)

    refused = bot.click(DAVE, ActionId.APPROVE, 1)
    assert "not an approver" in refused.text
    assert view(bot, 1).status is Status.PENDING and view(bot, 1).decisions == ()

    bot.click(CAROL, ActionId.APPROVE, 1)
    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert [(d.approver_id, d.via) for d in current.decisions] == [(CAROL, "listed")]


def test_unreachable_when_asked_the_thread_says_so_and_nobody_on_call_is_called_on(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    pd.outage()
    bot = make_bot(policy=flow_policy(MAY_APPROVE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-4 checkout down")

    assert view(bot, 1).status is Status.PENDING
    assert any("could not say who is on call" in text for text in approval_thread(bot, 1))
    message = bot.request_message(1)
    assert message is not None and "<@U0DAVE>" not in str(message["text"]) and "<@U0CAROL>" in str(message["text"])


def test_an_on_call_approval_no_longer_counts_once_they_went_off_call_before_the_last_one(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    two = "approvers: [S0SRELEADS]\napprovals_required: 2\noncall: {schedule: PSCHED1, may_approve: true}\n"
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    bot = make_bot(policy=flow_policy(two, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-5 checkout down")
    bot.click(DAVE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.PENDING
    pd.set_on_call("PSCHED1", ["erin@example.com"])
    bot.clock.advance(PAST_CACHE)

    bot.click(ALICE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.PENDING  # Dave's approval held when given, not now
    bot.click(CAROL, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE


def test_the_requester_on_call_never_approves_their_own_request(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["bob@example.com"])
    bot = make_bot(policy=flow_policy(MAY_APPROVE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-21 checkout down")

    message = bot.request_message(1)
    assert message is not None and "<@U0BOB>" not in str(message["text"])
    assert "your own request" in bot.click(BOB, ActionId.APPROVE, 1).text
    assert view(bot, 1).status is Status.PENDING and view(bot, 1).decisions == ()


def test_a_reminder_calls_on_whoever_is_on_call_when_it_is_sent(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    bot = make_bot(policy=flow_policy(MAY_APPROVE + "remind_approvers_every: 10m\n", top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-22 checkout down")
    pd.set_on_call("PSCHED1", ["erin@example.com"])
    bot.advance(timedelta(minutes=10))

    [reminder] = [text for text in approval_thread(bot, 1) if "Reminder" in text]
    assert "<@U0ERIN>" in reminder and "<@U0CAROL>" in reminder and "<@U0DAVE>" not in reminder
    message = bot.request_message(1)
    assert message is not None and "<@U0ERIN>" in str(message["text"]) and "<@U0DAVE>" not in str(message["text"])


# -- auto_approve -------------------------------------------------------------------------------------------------

AUTO = "approvers: [U0CAROL]\noncall: {schedule: PSCHED1, auto_approve: true}\n"


def test_a_request_by_whoever_is_on_call_is_approved_at_once_and_said_loudly(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: WebhookReceiver
) -> None:
    pd.set_on_call("PSCHED1", ["bob@example.com"])
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)
    reply = bot.command(BOB, "flow-db 30m INC-6 checkout down")

    assert "Approved at once" in reply.text
    current = view(bot, 1)
    assert current.status is Status.ACTIVE and current.auto_approved and current.decisions == ()
    assert len(receiver.events("grant")) == 1
    assert "Approved at once" in str(bot.request_message(1))
    assert ("auto_approved", BOB) in audit_actions(bot, 1)
    [said] = detail(bot, "auto_approved", 1)
    assert said["schedule"] == "PSCHED1" and said["on_call"] == [BOB]
    replies = bot.slack.wait_for(lambda s: [t for t in approval_thread(bot, 1) if "Approved at once" in t])
    assert "`PSCHED1`" in replies[0]


def test_a_request_by_someone_not_on_call_waits_as_usual(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: WebhookReceiver
) -> None:
    pd.set_on_call("PSCHED1", ["dave@example.com"])
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)
    reply = bot.command(BOB, "flow-db 30m INC-7 checkout down")

    assert "Approved at once" not in reply.text
    assert view(bot, 1).status is Status.PENDING and not view(bot, 1).auto_approved
    assert "auto_approved" not in [action for action, _ in audit_actions(bot, 1)]
    assert receiver.events("grant") == []


@pytest.mark.parametrize("how", FAILURES)
def test_auto_approve_with_the_service_unreachable_waits_for_the_approvers_and_says_why(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: WebhookReceiver, how: str
) -> None:
    pd.set_on_call("PSCHED1", ["bob@example.com"])
    unreachable(pd, how)
    bot = make_bot(policy=flow_policy(AUTO, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-8 checkout down")

    assert view(bot, 1).status is Status.PENDING and not view(bot, 1).auto_approved
    assert "auto_approved" not in [action for action, _ in audit_actions(bot, 1)]
    assert receiver.events("grant") == []
    assert any("could not say who is on call" in text for text in approval_thread(bot, 1))
    bot.click(CAROL, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE


# -- page_on_emergency ----------------------------------------------------------------------------------------------

PAGE = "approvers: [U0CAROL]\nemergency: true\noncall: {schedule: PSCHED1, page_on_emergency: true}\n"


def test_breaking_the_glass_pages_once_and_links_the_page_in_the_audit_channel(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    bot = make_bot(policy=flow_policy(PAGE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, f"flow-db 30m INC-9 checkout down {PD_TOKEN} --emergency")  # a pasted key is never paged

    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    [page] = pd.pages
    assert page["routing_key"] == PD_ROUTING and page["event_action"] == "trigger"
    assert page["dedup_key"] == f"breakglass-{current.uid}"
    summary = page["payload"]["summary"]
    assert "flow-db" in summary and "INC-9 checkout down" in summary and PD_TOKEN not in summary
    assert page["payload"]["custom_details"]["schedule"] == "PSCHED1"
    [paged] = detail(bot, "paged", 1)
    link = f"{PD_WEB}/incidents/PINCPAGE1"
    assert paged["key"] == f"breakglass-{current.uid}" and paged["url"] == link
    replies = bot.slack.wait_for(lambda s: [a for a in alert_replies(bot, 1) if "paged" in str(a.get("text"))])
    assert len(replies) == 1 and broadcast(replies[0]) and link in str(replies[0]["text"])


def test_a_page_that_cannot_be_sent_is_said_and_the_glass_still_breaks(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=flow_policy(PAGE, top=pagerduty(pd)), environ=ENV)
    pd.outage()
    bot.command(BOB, "flow-db 30m INC-10 checkout down --emergency")

    assert view(bot, 1).status is Status.ACTIVE and len(receiver.events("grant")) == 1
    actions = [action for action, _ in audit_actions(bot, 1)]
    assert "page_failed" in actions and "paged" not in actions
    [failed] = detail(bot, "page_failed", 1)
    assert failed["schedule"] == "PSCHED1" and "503" in failed["why"]
    replies = bot.slack.wait_for(lambda s: [a for a in alert_replies(bot, 1) if "Could not page" in str(a.get("text"))])
    assert len(replies) == 1 and broadcast(replies[0])


def test_without_a_routing_key_the_page_fails_by_the_variables_name(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    bot = make_bot(policy=flow_policy(PAGE, top=pagerduty(pd)), environ={"PAGERDUTY_API_TOKEN": PD_TOKEN})
    bot.command(BOB, "flow-db 30m INC-23 checkout down --emergency")

    assert view(bot, 1).status is Status.ACTIVE and pd.pages == []
    [failed] = detail(bot, "page_failed", 1)
    assert "PAGERDUTY_ROUTING_KEY" in failed["why"]


def test_an_ordinary_request_pages_nobody(make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn) -> None:
    bot = make_bot(policy=flow_policy(PAGE, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-11 checkout down")
    bot.click(CAROL, ActionId.APPROVE, 1)

    assert view(bot, 1).status is Status.ACTIVE
    assert pd.pages == []


# -- trigger controls -----------------------------------------------------------------------------------------------

WHEN_INCIDENT = "approvers: [U0CAROL]\nemergency: {when: incident}\n"


def test_no_open_incident_keeps_the_glass_whole_and_says_how_to_ask(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, receiver: WebhookReceiver
) -> None:
    pd.open_incident("PINCOLD", "Long gone", service="PSVC1")
    pd.resolve_incident("PINCOLD")
    bot = make_bot(policy=flow_policy(WHEN_INCIDENT, top=pagerduty(pd)), environ=ENV)
    reply = bot.command(BOB, "flow-db 30m INC-12 checkout down --emergency")

    assert "only during an emergency" in reply.text and "an open incident" in reply.text
    assert "/breakglass flow-db <duration> <reason>" in reply.text  # how to ask normally
    assert receiver.events("grant") == []
    no_request(bot)
    assert [action for action, _ in audit_actions(bot)] == ["request_refused"]
    assert bot.slack.posts_to(SECURITY) == []


def test_an_open_incident_lets_the_glass_break_and_the_trail_names_it(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.open_incident("PINC7", "Checkout down", service="PSVC1", urgency="high")
    pd.acknowledge_incident("PINC7")  # acknowledged is still open
    bot = make_bot(policy=flow_policy(WHEN_INCIDENT, top=pagerduty(pd)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-13 checkout down --emergency")

    assert view(bot, 1).status is Status.ACTIVE
    [said] = detail(bot, "emergency", 1)
    assert said["trigger"] == "incident" and said["incident"] == "PINC7"
    assert said["incident_url"] == f"{PD_WEB}/incidents/PINC7"


def test_only_an_incident_of_the_listed_services_counts(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    services = "approvers: [U0CAROL]\nemergency: {when: incident, services: [PSVCDB]}\n"
    pd.open_incident("PINCWEB", "Website slow", service="PSVCWEB")
    bot = make_bot(policy=flow_policy(services, top=pagerduty(pd)), environ=ENV)

    refused = bot.command(BOB, "flow-db 30m INC-14 checkout down --emergency")
    assert "`PSVCDB`" in refused.text
    no_request(bot)
    asked = [params for method, path, params in pd.calls_with_params if path == "/incidents"]
    assert asked and all(params.get("service_ids[]") == ["PSVCDB"] for params in asked)

    pd.open_incident("PINCDB", "Orders DB down", service="PSVCDB")
    bot.command(BOB, "flow-db 30m INC-14 checkout down --emergency")
    assert view(bot, 1).status is Status.ACTIVE
    assert detail(bot, "emergency", 1)[0]["incident"] == "PINCDB"


def test_urgency_high_does_not_count_a_low_urgency_incident(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    high = "approvers: [U0CAROL]\nemergency: {when: incident, urgency: high}\n"
    pd.open_incident("PINCLOW", "Disk 80%", service="PSVC1", urgency="low")
    bot = make_bot(policy=flow_policy(high, top=pagerduty(pd)), environ=ENV)

    refused = bot.command(BOB, "flow-db 30m INC-15 checkout down --emergency")
    assert "high urgency" in refused.text
    no_request(bot)

    pd.open_incident("PINCHIGH", "Checkout down", service="PSVC1", urgency="high")
    bot.command(BOB, "flow-db 30m INC-15 checkout down --emergency")
    assert view(bot, 1).status is Status.ACTIVE
    assert detail(bot, "emergency", 1)[0]["incident"] == "PINCHIGH"


@pytest.mark.parametrize("how", FAILURES)
def test_with_the_service_unreachable_the_glass_breaks_and_the_trail_says_unverified(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn, how: str
) -> None:
    bot = make_bot(policy=flow_policy(WHEN_INCIDENT, top=pagerduty(pd)), environ=ENV)
    unreachable(pd, how)
    bot.command(BOB, "flow-db 30m INC-16 checkout down --emergency")

    assert view(bot, 1).status is Status.ACTIVE
    [said] = detail(bot, "emergency", 1)
    assert said["trigger"] == "unverified" and said["why"].startswith("pagerduty GET /incidents")
    replies = bot.slack.wait_for(lambda s: [a for a in alert_replies(bot, 1) if "on-call service" in str(a["text"])])
    assert len(replies) == 1 and broadcast(replies[0])


def test_an_unverified_emergency_alert_says_the_incident_could_not_be_checked(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    bot = make_bot(policy=flow_policy(WHEN_INCIDENT, top=pagerduty(pd)), environ=ENV)
    pd.outage()
    bot.command(BOB, "flow-db 30m INC-24 checkout down --emergency")

    replies = bot.slack.wait_for(lambda s: [a for a in alert_replies(bot, 1) if "on-call service" in str(a["text"])])
    text = str(replies[0]["text"])
    assert "who is on call" not in text and "approvers decide" not in text  # the glass broke: nobody decides


@pytest.mark.parametrize(
    ("incidents", "inside", "outside"),
    [
        ("incidents: [C0INC1]", {"channel": "C0INC1", "channel_name": "general"}, {"channel": "C0INC2"}),
        ('incidents: "^inc-"', {"channel": "C0INC9", "channel_name": "inc-db-down"}, {"channel_name": "since-1"}),
    ],
    ids=["ids", "pattern"],
)
def test_a_command_typed_in_an_incident_channel_may_break_the_glass_without_an_on_call_service(
    make_bot: Callable[..., LocalBot],
    receiver: WebhookReceiver,
    incidents: str,
    inside: dict[str, str],
    outside: dict[str, str],
) -> None:
    bot = make_bot(policy=flow_policy(WHEN_INCIDENT, channels=incidents))

    refused = bot.command(BOB, "flow-db 30m INC-17 checkout down --emergency", **outside)
    assert "typed in an incident channel" in refused.text
    no_request(bot)

    bot.command(BOB, "flow-db 30m INC-17 checkout down --emergency", **inside)
    assert view(bot, 1).status is Status.ACTIVE and len(receiver.events("grant")) == 1
    assert detail(bot, "emergency", 1)[0]["trigger"] == "incident_channel"


# -- incident channels hear what happens --------------------------------------------------------------------------


def test_a_request_typed_in_an_incident_channel_is_told_there_with_a_link(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=flow_policy("approvers: [U0CAROL]\n", channels="incidents: [C0INC1]"))
    bot.command(BOB, "flow-db 30m INC-18 checkout down", channel="C0INC1")
    bot.command(BOB, "orders-db 30m INC-18 checkout down", channel="C0OTHER")  # not an incident channel
    bot.click(CAROL, ActionId.APPROVE, 1)
    bot.click(ALICE, ActionId.APPROVE, 2)

    link = view(bot, 1).approval_link
    assert link and link.startswith("https://")
    told = bot.slack.wait_for(lambda s: (texts := channel_texts(bot, "C0INC1"))[2:] and texts)
    assert any("asked for access" in t for t in told)
    assert any("was approved" in t for t in told)
    assert any("has access to *flow-db*" in t for t in told)
    assert all(link in t for t in told)
    other = channel_texts(bot, "C0OTHER")
    assert not any("was approved" in t for t in other)  # only the main notices outside incident channels
    assert any("has access to *orders-db*" in t for t in other)


def test_an_incident_channel_hears_of_an_auto_approval_in_the_third_person(
    make_bot: Callable[..., LocalBot], pd: PagerDutyStandIn
) -> None:
    pd.set_on_call("PSCHED1", ["bob@example.com"])
    policy = flow_policy(AUTO, top=pagerduty(pd), channels="incidents: [C0INC1]")
    bot = make_bot(policy=policy, environ=ENV)
    bot.command(BOB, "flow-db 30m INC-25 checkout down", channel="C0INC1")

    told = bot.slack.wait_for(lambda s: [t for t in channel_texts(bot, "C0INC1") if "at once" in t])
    assert view(bot, 1).approval_link in told[0] and "you are on call" not in told[0]


def test_an_incident_channel_hears_that_access_is_about_to_end(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=flow_policy("approvers: [U0CAROL]\n", channels="incidents: [C0INC1]"))
    bot.command(BOB, "flow-db 30m INC-19 checkout down", channel="C0INC1")
    bot.click(CAROL, ActionId.APPROVE, 1)
    bot.advance(timedelta(minutes=21))
    assert any("ends" in t for t in dm_texts(bot, BOB))  # the requester was warned

    assert any("ends" in t for t in channel_texts(bot, "C0INC1") if "access to *flow-db*" in t)


# -- loud means loud ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "called", "not_called"),
    [
        ("", "<!subteam^S0SECURITY>", "<!subteam^S0SRELEADS>"),
        ("audit_mention: S0SRELEADS", "<!subteam^S0SRELEADS>", "<!subteam^S0SECURITY>"),
    ],
    ids=["reviewers", "audit_mention"],
)
def test_the_emergency_alert_calls_on_the_reviewers_or_the_audit_mention(
    make_bot: Callable[..., LocalBot], channels: str, called: str, not_called: str
) -> None:
    policy = flow_policy("approvers: [U0CAROL]\nemergency: true\n", channels=channels, review="reviewers: [S0SECURITY]")
    bot = make_bot(policy=policy)
    bot.command(BOB, "flow-db 30m INC-20 checkout down --emergency")

    alert = bot.request_message(1, SECURITY)
    assert alert is not None
    assert called in str(alert["text"])  # the text is what notifies
    assert not_called not in str(alert["text"])


# -- a bad oncall section ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_top", "environ", "named"),
    [
        ("", {"PAGERDUTY_ROUTING_KEY": PD_ROUTING}, "PAGERDUTY_API_TOKEN"),
        ("  token_env: ACME_PD_KEY\n", {"PAGERDUTY_API_TOKEN": PD_TOKEN}, "ACME_PD_KEY"),
        ("", {"PAGERDUTY_API_TOKEN": "   "}, "PAGERDUTY_API_TOKEN"),
    ],
    ids=["default", "named", "blank"],
)
def test_a_missing_key_stops_the_start_and_names_the_variable(
    database_url: str,
    receiver: WebhookReceiver,
    pd: PagerDutyStandIn,
    extra_top: str,
    environ: dict[str, str],
    named: str,
) -> None:
    policy = flow_policy(MAY_APPROVE, top=pagerduty(pd) + extra_top)
    environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET, **environ}
    bot = LocalBot(policy, database_url, environ=environ)
    try:
        with pytest.raises(SettingsError) as raised:
            bot.start()
    finally:
        bot.stop()
    assert named in str(raised.value)
    assert PD_TOKEN not in str(raised.value) and PD_ROUTING not in str(raised.value)
    assert pd.calls == []
