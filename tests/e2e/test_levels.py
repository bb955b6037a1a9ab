"""Access levels, read-only first (issue 12), on the real bot over HTTP with a real webhook receiver.

A resource may declare levels, least privileged first: `/breakglass orders-db …` asks for the first, and
`/breakglass orders-db:write …` names one. Each level has its own params (what the backend is told), approvers,
approvals, durations and emergency rule, and everything the bot says or sends carries the level.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookCall, WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy, PolicyError, parse_policy
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, dm_texts, state, view

POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
resources:
  orders-db:
    description: Orders database
    adapter: webhook
    principal: "{email_local}"
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
      headers: {X-Access: none}
    approvers: [U0ALICE01]
    requesters: [U0BOB, U0DAVE]
    levels:
      read:
        params: {headers: {X-Access: read-only}}
        max_duration: 4h
      write:
        description: Orders database, read/write
        params: {headers: {X-Access: read-write}}
        approvers: [U0CAROL, U0DAVE]
        approvals_required: 2
        max_duration: 1h
        reason_pattern: 'INC-[0-9]+'
        emergency: true
        requesters: [U0BOB]
  flat:
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
    approvers: [U0ALICE01]
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def request_id(text: str) -> int:
    match = re.search(r"#(\d+)", text)
    assert match, text
    return int(match.group(1))


def header(call: WebhookCall, name: str) -> str | None:
    return {key.lower(): value for key, value in call.headers.items()}.get(name)


def approval_message(bot: LocalBot, request: int) -> dict[str, Any]:
    found = bot.request_message(request)
    assert found is not None, f"no approval message for #{request}"
    return found


def test_a_bare_name_asks_for_the_first_level_and_the_backend_is_told_which(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    asked = bot.command(BOB, "orders-db 2h INC-1 checking a stuck order")
    number = request_id(asked.text)
    assert view(bot, number).level == "read"
    assert "orders-db:read" in asked.text
    bot.click(ALICE, ActionId.APPROVE, number)
    assert view(bot, number).status is Status.ACTIVE
    grant = receiver.events("grant")[-1]
    assert grant.body["resource"] == "orders-db" and grant.body["level"] == "read"
    assert header(grant, "x-access") == "read-only", "the level's params did not reach the adapter"
    assert any("orders-db:read" in text for text in dm_texts(bot, BOB))
    bot.command(BOB, f"revoke {number}")
    revoke = receiver.events("revoke")[-1]
    assert revoke.body["level"] == "read" and header(revoke, "x-access") == "read-only"


def test_a_named_level_has_its_own_approvers_count_and_limits_and_shows_the_lesser_level(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    too_long = bot.command(BOB, "orders-db:write 2h INC-2 fix the order table").text
    assert "outside what orders-db:write allows" in too_long and "1h" in too_long
    no_reference = bot.command(BOB, "orders-db:write 30m fixing things").text
    assert "INC-[0-9]+" in no_reference

    number = request_id(bot.command(BOB, "orders-db:write 30m INC-2 fix the order table").text)
    message = approval_message(bot, number)
    text = str(message["blocks"])
    assert "orders-db:write" in text
    assert "orders-db:read" in text and "was available" in text, "approvers are not shown the lesser level"

    refused = bot.click(ALICE, ActionId.APPROVE, number)  # an approver of read, not of write
    assert "not an approver for orders-db:write" in refused.text
    bot.click(CAROL, ActionId.APPROVE, number)
    assert view(bot, number).status is Status.PENDING, "write needs two approvals"
    assert view(bot, number).approvals_required == 2
    assert "1 of 2" in state(approval_message(bot, number))
    bot.click(DAVE, ActionId.APPROVE, number)
    assert view(bot, number).status is Status.ACTIVE
    grant = receiver.events("grant")[-1]
    assert grant.body["level"] == "write" and header(grant, "x-access") == "read-write"
    bot.command(BOB, f"revoke {number}")


def test_emergency_gets_the_first_level_only_if_it_allows_emergency_else_names_the_level_that_does(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    refused = bot.command(BOB, "orders-db --emergency INC-3 checkout down").text
    assert "orders-db:read does not allow emergency access" in refused
    assert "`orders-db:write`" in refused and "--emergency" in refused
    broken = bot.command(BOB, "orders-db:write --emergency INC-3 checkout down")
    number = request_id(broken.text)
    assert view(bot, number).status is Status.ACTIVE and view(bot, number).level == "write"
    assert receiver.events("grant")[-1].body["level"] == "write"
    bot.command(BOB, f"revoke {number}")


def test_a_level_someone_may_not_request_is_refused_naming_the_ones_they_may(bot: LocalBot) -> None:
    refused = bot.command(DAVE, "orders-db:write 30m INC-4 I want write").text
    assert "You may not request orders-db:write" in refused and "`orders-db:read`" in refused
    unknown = bot.command(BOB, "orders-db:admin 30m INC-4 x").text
    assert "no level 'admin'" in unknown and "`orders-db:read`, `orders-db:write`" in unknown
    flat = bot.command(BOB, "flat:read 30m INC-4 x").text
    assert "flat has no levels" in flat
    bad = bot.command(BOB, "orders-db:wr!te 30m INC-4 x").text
    assert "does not name a level" in bad
    with bot.runtime.deps.db.transaction() as session:  # type: ignore[union-attr]
        refusals = [e.action for e in session.scalars(select(AuditEvent)) if e.action == "request_refused"]
    assert refusals, "asking for a forbidden level is an attempt on something forbidden: audited"


def test_two_levels_are_never_live_at_once_for_one_person_so_neither_ends_the_other(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    read = request_id(bot.command(BOB, "orders-db 2h INC-5 look").text)
    bot.click(ALICE, ActionId.APPROVE, read)
    assert view(bot, read).status is Status.ACTIVE
    refused = bot.command(BOB, "orders-db:write 30m INC-5 now fix it").text
    assert f"(#{read})" in refused and "One level of a resource is held at a time" in refused
    assert f"/breakglass revoke {read}" in refused
    assert view(bot, read).status is Status.ACTIVE, "asking for another level touched the live one"
    bot.command(BOB, f"revoke {read}")
    write = request_id(bot.command(BOB, "orders-db:write 30m INC-5 now fix it").text)
    assert view(bot, write).status is Status.PENDING and view(bot, write).level == "write"


def test_list_mine_and_the_audit_trail_carry_the_level(bot: LocalBot) -> None:
    listed = bot.command(BOB, "list").text
    assert "`orders-db:read`" in listed and "`orders-db:write`" in listed and "`flat`" in listed
    assert "the default level" in listed
    assert "`orders-db:write`" not in bot.command(DAVE, "list").text, "a level Dave may not request was listed"
    number = request_id(bot.command(BOB, "orders-db:write 30m INC-6 fix").text)
    assert "orders-db:write" in bot.command(BOB, "mine").text
    assert "orders-db:write" in bot.command(CAROL, "mine").text, "an approver of write does not see it waiting"
    assert "orders-db:write" not in bot.command(ALICE, "mine").text, "an approver of read only was shown write"
    with bot.runtime.deps.db.transaction() as session:  # type: ignore[union-attr]
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.request_id == number)))
    assert events and all(event.detail.get("level") == "write" for event in events)


def test_a_level_that_lowers_the_longest_duration_lowers_the_default_with_it(
    make_bot: Callable[..., LocalBot],
) -> None:
    policy = parse_policy(POLICY.replace("max_duration: 1h", "max_duration: 30m"))
    bot = make_bot(policy=policy)
    number = request_id(bot.command(BOB, "orders-db:write INC-7 fix").text)
    assert view(bot, number).duration == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        ("{params: {timeout: 0}}", "resources.orders-db.levels.write.params.timeout"),
        ("{params: {nope: 1}}", "resources.orders-db.levels.write.params.nope"),
        ("{max_duration: 1m}", "resources.orders-db.levels.write: expected min_duration <= default_duration"),
        ("{approvers: [alice]}", "resources.orders-db.levels.write.approvers"),
        ("{bogus: true}", "resources.orders-db.levels.write.bogus: unknown key"),
    ],
)
def test_a_bad_level_is_refused_at_start_naming_its_key_path(
    make_bot: Callable[..., LocalBot], write: str, expected: str
) -> None:
    start = POLICY.index("      write:\n")
    end = POLICY.index("  flat:\n")
    text = POLICY[:start] + f"      write: {write}\n" + POLICY[end:]
    with pytest.raises(PolicyError) as raised:
        make_bot(policy=parse_policy(text))
    assert expected in str(raised.value)
