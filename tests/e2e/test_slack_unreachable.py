"""Slack unreachable is never fatal: the bot starts, revokes on time, refuses Slack requests until it knows its
workspace, and learns it when Slack comes back."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from bot import runtime
from bot.clock import ManualClock
from bot.devtools.local_bot import BOT_TOKEN, GROUPS, PEOPLE, SIGNING_SECRET, LocalBot
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import TEAM_ID, SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy
from bot.services.common import load_view
from bot.services.deps import Tuning
from bot.settings import Settings
from bot.slack.ids import ActionId
from bot.slack.replies import WORKSPACE_UNKNOWN
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, view

PATIENCE = 3.0  # seconds any one HTTP call may take; a hang fails the test
SLACK_RETURNS_WITHIN = 40.0  # the link retries at 1, 2, 4 … s, at most 30 s apart


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe is closed


def eventually(condition: Callable[[], bool], within: float) -> None:
    """Wait for what background threads do (a lane's revoke, the link's retry); the bot's clock is not involved."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.05)


def test_a_bot_started_during_a_slack_outage_revokes_and_catches_up_when_slack_returns(
    policy: Policy, receiver: WebhookReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bg.db'}"
    environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
    with LocalBot(policy, database_url, environ=environ) as before:  # a grant, made while Slack was up
        before.command(BOB, "orders-db 30m INC-3 fix")
        before.click(ALICE, ActionId.APPROVE, 1)
        assert view(before, 1).status is Status.ACTIVE
        granted_at = before.clock.now()

    port = closed_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_APP_TOKEN="",
        SLACK_API_URL=f"http://127.0.0.1:{port}/api/",
        DATABASE_URL=database_url,
        BREAKGLASS_AUDIT_KEY=before.audit_key,
    )
    clock = ManualClock(granted_at + timedelta(minutes=31))  # restarted after the grant's end
    caplog.set_level(logging.INFO, logger="breakglass")
    running = runtime.build(settings, environ, clock=clock, policy=policy, tuning=Tuning(grant_retry_pause=0.01))
    slack: SlackStandIn | None = None
    try:
        said = [
            r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("breakglass")
        ]
        assert len(said) == 1 and "Slack is unreachable" in said[0] and "starting anyway" in said[0], said
        base = f"http://127.0.0.1:{running.serve_http(host='127.0.0.1', port=0, block=False)}"
        assert requests.get(f"{base}/healthz", timeout=PATIENCE).json() == {
            "ok": True,
            "database": "up",
            "slack": "degraded",
        }

        # The workspace is unknown (no SLACK_TEAM_ID): fail closed, with an answer the person can read.
        sender = SlackSender(base, SIGNING_SECRET, timeout=PATIENCE)
        refused = sender.command("orders-db 30m INC-4 fix", user_id=BOB)
        assert refused.status_code == 200 and refused.json()["text"] == WORKSPACE_UNKNOWN

        running.sweeper(wait=False)  # revokes owe nothing to Slack
        eventually(lambda: load_view(running.deps, 1).status is Status.EXPIRED, within=10)  # type: ignore[union-attr]
        assert [call.body["grant_id"] for call in receiver.events("revoke")] == [load_view(running.deps, 1).uid]  # type: ignore[union-attr]

        slack = SlackStandIn(token=BOT_TOKEN, users=PEOPLE, groups=GROUPS, port=port).start()
        eventually(lambda: running.slack_link is not None and running.slack_link.reachable, SLACK_RETURNS_WITHIN)
        assert requests.get(f"{base}/healthz", timeout=PATIENCE).json() == {"ok": True, "database": "up", "slack": "up"}
        assert running.slack_link is not None and running.slack_link.home is not None
        assert running.slack_link.home.team_id == TEAM_ID
        assert any("Slack is reachable again" in r.getMessage() for r in caplog.records)

        accepted = sender.command(
            "payments-admin 30m after the outage", user_id=BOB, response_url=slack.response_url("a")
        )
        assert accepted.status_code == 200 and "Asking for `payments-admin`" in accepted.text
        [answer] = slack.wait_for(lambda s: s.responses("a"), timeout=10)
        assert "is with the approvers" in answer["text"]
        foreign = sender.command("payments-admin 30m from afar", user_id="U0MALLORY", team_id="T0OTHER")
        assert "another Slack workspace" in foreign.json()["text"]  # the learnt workspace is the only one served

        slack.stop()  # gone again while running: the next check (once a minute; now, here) finds it degraded
        running.slack_link.retry_now()
        eventually(lambda: running.slack_link is not None and not running.slack_link.reachable, within=10)
        assert requests.get(f"{base}/healthz", timeout=PATIENCE).json()["slack"] == "degraded"
        assert running.slack_link.home is not None  # what was learnt is kept: requests are still gated by it
    finally:
        running.stop()
        if slack is not None:
            slack.stop()
