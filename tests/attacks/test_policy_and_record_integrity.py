"""Attacks on issue 12 kept as regression tests: policy mistakes refused at start, the kept record verified."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import activity
from bot.slack.ids import ActionId
from bot.store.chain import AuditSeal
from bot.store.models import ActivityRecord
from bot.store.verify import verify
from tests.attacks.test_same_person_and_levels import demo_policy, rid
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, channel_texts, dm_texts, view
from tests.e2e.test_levels import POLICY as LEVELS

REVIEWED_LEVELS = LEVELS.replace("resources:\n", "review:\n  required: all\n  remind_every: 24h\nresources:\n", 1)


def test_a_tampered_activity_row_is_caught_by_audit_verify(make_bot: Callable[..., LocalBot]) -> None:
    db = f"atk{uuid.uuid4().hex[:6]}"
    bot = make_bot(policy=parse_policy(demo_policy(db)))
    number = rid(bot.command(BOB, "orders 30m INC-1 look --emergency").text)
    principal = view(bot, number).principal or ""
    DemoDatabase.named(db).run(principal, "DROP TABLE evidence", at=bot.clock.now())
    assert bot.runtime is not None
    bot.clock.advance(timedelta(seconds=6))
    activity.read_due(bot.runtime.deps)
    with bot.runtime.deps.db.transaction() as session:
        changed = session.execute(
            update(ActivityRecord).where(ActivityRecord.request_id == number).values(action="SELECT 1")
        ).rowcount
    assert changed == 1
    verdict = verify(bot.runtime.deps.db.engine, AuditSeal(bot.audit_key))
    # put it back so the harness's own end-of-test verify is not what fails
    with bot.runtime.deps.db.transaction() as session:
        session.execute(
            update(ActivityRecord).where(ActivityRecord.request_id == number).values(action="DROP TABLE evidence")
        )
    assert not verdict.ok, "`breakglass audit verify` passed with a rewritten captured statement"


def test_mentions_in_a_review_account_stay_inert(make_bot: Callable[..., LocalBot], receiver: WebhookReceiver) -> None:
    bot = make_bot(policy=parse_policy(REVIEWED_LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 20m INC-2 fix --emergency").text)
    bot.advance(timedelta(minutes=20))
    bot.command(BOB, f"review {number} <!channel> <@U0ALICE01> <https://evil.example|docs> ``` done")
    bot.command(CAROL, f"review {number} <!here> fine <!subteam^S0SRELEADS>")
    assert bot.runtime is not None
    texts = channel_texts(bot, "C0SECURITY") + channel_texts(bot, "C0APPROVALS") + dm_texts(bot, BOB)
    blocks = [str(m) for m in (bot.request_message(number), bot.request_message(number, "C0SECURITY")) if m]
    packet = bot.command(CAROL, f"review {number}").text
    for t in [*texts, *blocks, packet]:
        for bad in ["<!channel>", "<!here>", "<https://evil"]:
            assert bad not in t, (bad, t)


def test_mine_does_not_show_a_write_review_to_a_read_only_approver(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(REVIEWED_LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 20m INC-2 secretfix --emergency").text)
    bot.advance(timedelta(minutes=20))
    bot.command(BOB, f"review {number} the account")
    assert "secretfix" in bot.command(CAROL, "mine").text or f"#{number}" in bot.command(CAROL, "mine").text
    alice = bot.command(ALICE, "mine").text
    assert f"#{number}" not in alice, f"read-only approver shown the write review: {alice}"


def test_an_approver_of_read_cannot_extend_a_write_grant(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 20m INC-2 fix --emergency").text)
    before = view(bot, number).expires_at
    answer = bot.command(ALICE, f"extend {number} 10m").text
    assert view(bot, number).expires_at == before, f"read approver extended a write grant: {answer}"


def test_a_read_level_approver_cannot_approve_write_even_via_button_race(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    number = rid(bot.command(BOB, "orders-db:write 30m INC-2 fix").text)
    bot.click(ALICE, ActionId.APPROVE, number)
    bot.click(CAROL, ActionId.APPROVE, number)
    assert view(bot, number).status is Status.PENDING
    bot.click(DAVE, ActionId.APPROVE, number)
    assert view(bot, number).status is Status.ACTIVE


def test_level_text_with_mentions_is_not_echoed_raw(make_bot: Callable[..., LocalBot]) -> None:
    bot = make_bot(policy=parse_policy(LEVELS))
    for text in [
        "orders-db:<!channel> 30m INC-1 x",
        "orders-db:<@U0ALICE01> 30m INC-1 x",
        "<!here>:write 30m INC-1 x",
        "orders-db:`x` 30m INC-1 x",
    ]:
        answer = bot.command(BOB, text).text
        for bad in ["<!channel>", "<@U0ALICE01>", "<!here>"]:
            assert bad not in answer, (text, answer)
    for t in channel_texts(bot, "C0SECURITY") + channel_texts(bot, "C0APPROVALS"):
        for bad in ["<!channel>", "<!here>"]:
            assert bad not in t, t


def test_lesser_level_shown_only_if_the_requester_could_have_asked_for_it(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    policy = LEVELS.replace("        max_duration: 4h\n", "        max_duration: 4h\n        requesters: [U0DAVE]\n", 1)
    assert policy != LEVELS
    bot = make_bot(policy=parse_policy(policy))
    assert "You may not request orders-db:read" in bot.command(BOB, "orders-db:read 30m INC-1 x").text
    number = rid(bot.command(BOB, "orders-db:write 30m INC-2 fix").text)
    text = str(bot.request_message(number))
    assert "was available" not in text, "approvers told a lesser level was available that Bob may not request"


def test_a_level_that_can_never_be_approved_is_refused_at_start() -> None:
    from bot.policy import PolicyError

    text = LEVELS.replace("approvers: [U0CAROL, U0DAVE]", "approvers: [U0CAROL]")
    try:
        parse_policy(text)
    except PolicyError as error:
        assert "approvals_required" in str(error) or "approvers" in str(error), error
        return
    raise AssertionError("write needs 2 approvals from a list of 1 approver: accepted")


NO_CAPTURE = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  x:
    adapter: webhook
    params: {url: "${WEBHOOK_URL}", secret: "${BREAKGLASS_WEBHOOK_SECRET}", timeout: 10}
    approvers: [U0ALICE01]
"""


import pytest  # noqa: E402


@pytest.mark.parametrize(
    "extra",
    [
        "    alert_on: ['(?i)drop']\n",
    ],
)
def test_watching_keys_on_an_adapter_that_cannot_capture_are_refused_at_start(
    make_bot: Callable[..., LocalBot], extra: str
) -> None:
    from bot.policy import PolicyError

    with pytest.raises(PolicyError) as refused:
        make_bot(policy=parse_policy(NO_CAPTURE + extra))
    assert "alert_on: no level of" in str(refused.value) and "cannot capture" in str(refused.value)


def test_capture_param_on_webhook_is_refused(make_bot: Callable[..., LocalBot]) -> None:
    from bot.policy import PolicyError

    with pytest.raises(PolicyError):
        make_bot(policy=parse_policy(NO_CAPTURE.replace("timeout: 10}", "timeout: 10, capture: true}")))
