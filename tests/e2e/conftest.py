"""The real bot over HTTP, a Slack stand-in and a real webhook receiver, all on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import Policy, parse_policy
from bot.services.deps import Tuning

WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"

POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
  approvals_required: 1
review:
  required: emergency
  remind_every: 24h
resources:
  orders-db:
    description: Orders database, read/write
    adapter: webhook
    principal: "{email_local}"
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 2
    approvers: [S0SRELEADS, U0ALICE01]
    approvals_required: 1
    max_duration: 2h
    reason_pattern: '(INC|CHG)-[0-9]+'
    emergency: true
    requesters: [S0ONCALL]
  payments-admin:
    description: Payments admin console
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 2
    approvers: [S0SRELEADS]
    approvals_required: 2
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET) as running:
        yield running


@pytest.fixture
def make_bot(policy: Policy, database_url: str, receiver: WebhookReceiver) -> Iterator[Callable[..., LocalBot]]:
    started: list[LocalBot] = []

    def make(**kwargs: Any) -> LocalBot:
        kwargs.setdefault("tuning", Tuning(grant_retry_pause=0.01))
        bot = LocalBot(
            kwargs.pop("policy", policy),
            database_url,
            environ={"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET},
            **kwargs,
        ).start()
        started.append(bot)
        return bot

    yield make
    for bot in reversed(started):
        bot.stop()


@pytest.fixture
def bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    return make_bot()
