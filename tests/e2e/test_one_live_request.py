"""One live request per person and resource, as people meet the rule in Slack (bot/domain/live.py).

A second request while one is live is refused and says what to do instead; an emergency replaces the same person's
normal request that is still waiting, and the approvers' message says so; two Slack users who are the same identity
on the backend count as one person.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.slack.ids import ActionId
from bot.store.models import Request
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, buttons, state, view
from tests.e2e.test_overlapping_grants import first_request_insert
from tests.e2e.test_rules_at_effect import events

SHARED_IDENTITY = """
  shared-db:
    adapter: webhook
    users: {U0BOB: ops, U0DAVE: ops}
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
    approvers: [U0ALICE01]
"""


def count_requests(bot: LocalBot) -> int:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(Request)) or 0


def test_a_second_request_while_the_first_waits_or_holds_access_is_refused_with_what_to_do(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    waiting = bot.command(BOB, "orders-db 1h INC-2 more").text
    assert "You already asked for `orders-db` (#1); it is waiting for approval." in waiting
    assert "`/breakglass revoke 1`" in waiting

    bot.click(ALICE, ActionId.APPROVE, 1)
    holding = bot.command(BOB, "orders-db 1h INC-2 more").text
    assert "You hold access to `orders-db` until" in holding and "(#1)" in holding
    assert "ask an approver for more time with `/breakglass extend 1 …`" in holding
    breaking = bot.command(BOB, "orders-db 1h INC-2 more --emergency").text  # the glass adds no second grant
    assert "ask an approver for more time with `/breakglass extend 1 …`" in breaking

    assert count_requests(bot) == 1 and len(receiver.events("grant")) == 1
    assert events(bot, "request_refused") == []  # asking twice is not an attempt on something forbidden


def test_an_emergency_supersedes_the_same_persons_waiting_request_and_its_message_says_so(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 slow checkout")
    assert "Waiting for approval" in state(bot.request_message(1))

    reply = bot.command(BOB, "orders-db 30m INC-1 checkout down --emergency").text

    assert "Glass broken" in reply and view(bot, 2).status is Status.ACTIVE
    superseded = view(bot, 1)
    assert superseded.status is Status.CANCELLED and superseded.superseded_by == 2
    message = bot.request_message(1)
    assert "Superseded by emergency request #2" in state(message) and buttons(message) == []
    assert [action for action, _ in audit_actions(bot, 1)] == ["requested", "superseded"]
    late = bot.click(ALICE, ActionId.APPROVE, 1).text
    assert "Request #1 was superseded by emergency request #2" in late and "Nothing was done" in late
    assert len(receiver.events("grant")) == 1


def test_an_emergency_holder_is_told_to_extend_it_themselves(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-1 down --emergency")
    again = bot.command(BOB, "orders-db 1h INC-1 still down --emergency").text
    assert "You hold access to `orders-db` until" in again
    assert "extend it yourself with `/breakglass extend 1 …`" in again
    assert count_requests(bot) == 1


def test_while_access_is_still_being_removed_even_an_emergency_waits(bot: LocalBot, receiver: WebhookReceiver) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)
    receiver.fail_next(5, status=503)
    bot.command(ALICE, "revoke 1")
    assert view(bot, 1).status is Status.REVOKE_FAILED

    for ask in ("orders-db 30m INC-2 again", "orders-db 30m INC-2 again --emergency"):
        text = bot.command(BOB, ask).text
        assert "Your earlier access to `orders-db` (#1) is still being removed; ask again once it is" in text
    assert count_requests(bot) == 1

    for _ in range(10):  # the retries use up the backend's failures; then the revoke is confirmed
        if view(bot, 1).status is Status.REVOKED:
            break
        bot.advance(timedelta(seconds=30))
    assert view(bot, 1).status is Status.REVOKED
    assert "Request #2 for `orders-db`" in bot.command(BOB, "orders-db 30m INC-2 again").text


def test_two_slack_users_who_are_one_identity_on_the_backend_count_as_one(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(POLICY + SHARED_IDENTITY))
    bot.command(BOB, "shared-db 30m INC-1 fix")
    text = bot.command(DAVE, "shared-db 30m INC-1 fix too").text
    assert "<@U0BOB> already asked for `shared-db` for the same backend identity as yours (#1)" in text
    assert count_requests(bot) == 1


def test_an_emergency_that_loses_the_race_to_a_normal_request_still_supersedes_it(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    normal = "orders-db 30m INC-1 slow checkout"
    with first_request_insert(bot, lambda: bot.command(BOB, normal)) as racer:
        reply = bot.command(BOB, "orders-db 30m INC-1 checkout down --emergency").text

    assert "is with the approvers" in racer[0].text  # the normal request was stored first, as #1
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:  # PostgreSQL spends a number on the insert that lost
        [emergency] = session.scalars(select(Request.id).where(Request.emergency.is_(True))).all()
    assert "Glass broken" in reply and view(bot, emergency).status is Status.ACTIVE
    assert view(bot, 1).status is Status.CANCELLED and view(bot, 1).superseded_by == emergency
    assert count_requests(bot) == 2 and len(receiver.events("grant")) == 1


TWIN = """
  orders-db-long:
    description: The same access as orders-db, for longer
    adapter: webhook
    principal: "{email_local}"
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 2
    approvers: [U0ALICE01]
    max_duration: 8h
"""


def test_a_resource_with_the_same_adapter_and_params_is_the_same_access_and_counts_as_one(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    twin = TWIN.replace("timeout: 2", "timeout: " + str(parse_policy(POLICY).resources["orders-db"].params["timeout"]))
    bot = make_bot(policy=parse_policy(POLICY + twin))
    bot.command(BOB, "orders-db 30m INC-1 fix")
    bot.click(ALICE, ActionId.APPROVE, 1)

    second = bot.command(BOB, "orders-db-long 4h INC-1 longer").text

    assert "You hold access to `orders-db` until" in second  # its revoke would have ended the longer one's access
    assert count_requests(bot) == 1 and len(receiver.events("grant")) == 1
