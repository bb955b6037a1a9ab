"""On-call approval, auto-approval, pages and trigger controls with Opsgenie (a stand-in on loopback), over the real
Slack path: the same promises as tests/e2e/test_oncall.py (PagerDuty), where Opsgenie differs: schedules by id,
unknown schedules, alerts (aliases, links known only once processed), incident priorities and impacted services.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bot.devtools.local_bot import LocalBot
from bot.devtools.opsgenie_standin import OpsgenieStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.slack.ids import ActionId
from tests.e2e.helpers import BOB, CAROL, DAVE, audit_actions, view
from tests.e2e.test_oncall import (
    PAST_CACHE,
    alert_replies,
    approval_thread,
    broadcast,
    detail,
    flow_policy,
    no_request,
)

ERIN = "U0ERIN"
OG_KEY = "og-genie-key-5f1c9e7a2b4d8c30"
OG_WEB = "https://acme.app.opsgenie.com"
ENV = {"OPSGENIE_API_KEY": OG_KEY}


@pytest.fixture
def og() -> Iterator[OpsgenieStandIn]:
    with OpsgenieStandIn(OG_KEY) as running:
        yield running


def opsgenie(og: OpsgenieStandIn) -> str:
    return f"oncall:\n  provider: opsgenie\n  api_url: {og.url}\n  web_url: {OG_WEB}\n  timeout: 2\n"


# -- may_approve and auto_approve -------------------------------------------------------------------------------------


def test_whoever_is_on_call_may_approve_until_they_are_not(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn
) -> None:
    og.set_on_call("sched-db", ["dave@example.com"])
    policy = flow_policy("approvers: [U0CAROL]\noncall: {schedule: sched-db, may_approve: true}\n", top=opsgenie(og))
    bot = make_bot(policy=policy, environ=ENV)
    bot.command(BOB, "flow-db 30m INC-1 checkout down")
    assert "<@U0DAVE>" in str((bot.request_message(1) or {}).get("text"))
    og.set_on_call("sched-db", ["erin@example.com"])
    bot.clock.advance(PAST_CACHE)

    assert "not an approver" in bot.click(DAVE, ActionId.APPROVE, 1).text
    bot.click(ERIN, ActionId.APPROVE, 1)
    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    assert [(d.approver_id, d.via) for d in current.decisions] == [(ERIN, "oncall")]
    asked = [params for method, path, params in og.calls_with_params if path == "/v2/schedules/sched-db/on-calls"]
    assert asked and all(params.get("scheduleIdentifierType") == ["id"] for params in asked)


def test_an_unknown_schedule_is_not_nobody_on_call_it_is_no_answer(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn, receiver: WebhookReceiver
) -> None:
    policy = flow_policy("approvers: [U0CAROL]\noncall: {schedule: sched-gone, auto_approve: true}\n", top=opsgenie(og))
    bot = make_bot(policy=policy, environ=ENV)
    bot.command(BOB, "flow-db 30m INC-2 checkout down")

    assert view(bot, 1).status is Status.PENDING and receiver.events("grant") == []
    [said] = [text for text in approval_thread(bot, 1) if "could not say who is on call" in text]
    assert "404" in said
    bot.click(CAROL, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE


def test_a_request_by_whoever_is_on_call_is_approved_at_once(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn, receiver: WebhookReceiver
) -> None:
    og.set_on_call("sched-db", ["Bob@Example.com"])  # addresses match whatever their case
    policy = flow_policy("approvers: [U0CAROL]\noncall: {schedule: sched-db, auto_approve: true}\n", top=opsgenie(og))
    bot = make_bot(policy=policy, environ=ENV)
    reply = bot.command(BOB, "flow-db 30m INC-3 checkout down")

    assert "Approved at once" in reply.text
    assert view(bot, 1).status is Status.ACTIVE and len(receiver.events("grant")) == 1
    assert ("auto_approved", BOB) in audit_actions(bot, 1)
    assert any("Approved at once" in text and "`sched-db`" in text for text in approval_thread(bot, 1))


# -- pages ------------------------------------------------------------------------------------------------------------

PAGE = "approvers: [U0CAROL]\nemergency: true\noncall: {schedule: sched-db, page_on_emergency: true}\n"


def test_breaking_the_glass_creates_one_alert_for_the_schedule_and_links_it(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn
) -> None:
    bot = make_bot(policy=flow_policy(PAGE, top=opsgenie(og)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-4 checkout down --emergency")

    current = view(bot, 1)
    assert current.status is Status.ACTIVE
    alias = f"breakglass-{current.uid}"
    [alert] = og.pages
    assert alert["alias"] == alias and alert["responders"] == [{"id": "sched-db", "type": "schedule"}]
    assert "flow-db" in alert["message"] and "INC-4 checkout down" in alert["description"]
    link = f"{OG_WEB}/alert/detail/{og.alert_id(alias)}/details"
    [paged] = detail(bot, "paged", 1)
    assert paged["key"] == alias and paged["url"] == link
    replies = bot.slack.wait_for(lambda s: [a for a in alert_replies(bot, 1) if "paged" in str(a.get("text"))])
    assert len(replies) == 1 and broadcast(replies[0]) and link in str(replies[0]["text"])


def test_a_page_whose_alert_is_not_processed_yet_is_still_a_page_without_a_link(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn
) -> None:
    og.processing_lag()
    bot = make_bot(policy=flow_policy(PAGE, top=opsgenie(og)), environ=ENV)
    bot.command(BOB, "flow-db 30m INC-5 checkout down --emergency")

    alias = f"breakglass-{view(bot, 1).uid}"
    assert len(og.pages) == 1
    [paged] = detail(bot, "paged", 1)
    assert paged["key"] == alias and "url" not in paged
    replies = bot.slack.wait_for(lambda s: [a for a in alert_replies(bot, 1) if "paged" in str(a.get("text"))])
    assert alias in str(replies[0]["text"])


# -- trigger controls --------------------------------------------------------------------------------------------------


def test_priority_p2_counts_p1_and_p2_incidents_only(make_bot: Callable[..., LocalBot], og: OpsgenieStandIn) -> None:
    policy = flow_policy("approvers: [U0CAROL]\nemergency: {when: incident, priority: P2}\n", top=opsgenie(og))
    og.open_incident("inc-p3", "Disk 80%", priority="P3")
    og.open_incident("inc-old", "Database down", priority="P1")
    og.resolve_incident("inc-old")
    bot = make_bot(policy=policy, environ=ENV)

    refused = bot.command(BOB, "flow-db 30m INC-6 checkout down --emergency")
    assert "priority P2 or higher" in refused.text
    no_request(bot)

    og.open_incident("inc-p1", "Checkout down", priority="P1")
    bot.command(BOB, "flow-db 30m INC-6 checkout down --emergency")
    assert view(bot, 1).status is Status.ACTIVE
    [said] = detail(bot, "emergency", 1)
    assert said["trigger"] == "incident" and said["incident"] == "inc-p1"


def test_only_incidents_impacting_a_listed_service_count(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn
) -> None:
    policy = flow_policy("approvers: [U0CAROL]\nemergency: {when: incident, services: [svc-db]}\n", top=opsgenie(og))
    og.open_incident("inc-web", "Website slow", service="svc-web", priority="P1")
    bot = make_bot(policy=policy, environ=ENV)

    assert "`svc-db`" in bot.command(BOB, "flow-db 30m INC-7 checkout down --emergency").text
    no_request(bot)

    og.open_incident("inc-both", "Checkout down", service=["svc-web", "svc-db"], priority="P2")
    bot.command(BOB, "flow-db 30m INC-7 checkout down --emergency")
    assert detail(bot, "emergency", 1)[0]["incident"] == "inc-both"


def test_with_opsgenie_unreachable_the_glass_breaks_unverified(
    make_bot: Callable[..., LocalBot], og: OpsgenieStandIn
) -> None:
    policy = flow_policy("approvers: [U0CAROL]\nemergency: {when: incident, priority: P1}\n", top=opsgenie(og))
    bot = make_bot(policy=policy, environ=ENV)
    og.outage()
    bot.command(BOB, "flow-db 30m INC-8 checkout down --emergency")

    assert view(bot, 1).status is Status.ACTIVE
    [said] = detail(bot, "emergency", 1)
    assert said["trigger"] == "unverified" and "opsgenie GET /v1/incidents: HTTP 503" in said["why"]
