"""`/breakglass drill` through the real bot over signed HTTP: an approver runs a drill against a real webhook receiver
that can be asked (``verify: true``), and hears how it went; the audit channel gets the alert and one report; a
non-approver is refused and counted; a receiver that keeps the access fails the drill, and the report calls on the
reviewers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import Policy, parse_policy
from bot.store import drills
from bot.store.models import AuditEvent
from tests.e2e.helpers import ALICE, BOB, channel_texts

AUDIT = "C0SECURITY"
PRINCIPAL = "drill_bot"

DRILLED = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
review: {required: emergency, reviewers: [S0SECURITY]}
resources:
  orders-db:
    adapter: webhook
    principal: "{email_local}"
    params: {url: "${WEBHOOK_URL}", secret: "${BREAKGLASS_WEBHOOK_SECRET}", timeout: 10, verify: true}
    approvers: [S0SRELEADS]
    emergency: true
drills:
  - {resource: orders-db, every: 7d, principal: drill_bot}
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(DRILLED)


def runs(bot: LocalBot) -> list[tuple[str, bool, str, str]]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return [(r.label, r.passed, r.trigger, r.actor) for r in reversed(drills.recent(session))]


def test_an_approver_runs_a_drill_from_slack(bot: LocalBot, receiver: WebhookReceiver) -> None:
    reply = bot.command(ALICE, "drill orders-db")

    assert reply.ack.startswith("⏳ Running the drill of `orders-db`")
    assert reply.answer is not None and "*passed*" in reply.answer, reply.answer
    assert f"by <@{ALICE}> from Slack" in reply.answer
    assert not receiver.has_access(PRINCIPAL)
    assert runs(bot) == [("orders-db", True, "slack", ALICE)]
    posted = channel_texts(bot, AUDIT)
    [alert] = [text for text in posted if text.startswith("🚨 BREAK-GLASS")]  # the emergency path's own alert
    assert "Breakglass drill (slack) · orders-db" in alert and "<!subteam" not in alert  # a drill calls on nobody
    [report] = [text for text in posted if text.startswith("🧪")]
    assert "*passed*" in report and "✅ verify access is gone:" in report
    assert "<!subteam^S0SECURITY>" not in report
    assert not bot.slack.dms(PRINCIPAL) and not bot.slack.dms(ALICE)  # nobody is told as if they held access


def test_a_non_approver_is_refused_and_counted(bot: LocalBot, receiver: WebhookReceiver) -> None:
    reply = bot.command(BOB, "drill orders-db")

    assert reply.answer is not None and "Only an approver of orders-db may run its drill" in reply.answer
    assert runs(bot) == []
    assert not receiver.has_access(PRINCIPAL)
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "drill_refused")).all()
    assert [event.actor for event in refused] == [BOB]


def test_a_drill_fails_when_the_receiver_keeps_the_access(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot()
    receiver.ignore_revokes()

    reply = bot.command(ALICE, "drill orders-db")

    assert reply.answer is not None and "*failed*" in reply.answer
    assert receiver.has_access(PRINCIPAL)
    assert runs(bot) == [("orders-db", False, "slack", ALICE)]
    [report] = [text for text in channel_texts(bot, AUDIT) if text.startswith("🧪")]
    assert "<!subteam^S0SECURITY>" in report
    assert "❌ revoke:" in report and "still has access" in report
    receiver.ignore_revokes(False)


def test_a_typo_in_the_command_is_answered_in_the_ack(bot: LocalBot) -> None:
    reply = bot.command(ALICE, "drill orders-db extra words")
    assert "Name one resource to drill" in reply.ack
    assert runs(bot) == []
