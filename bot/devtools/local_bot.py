"""The real bot, run locally over HTTP against the Slack stand-in, with a clock that only moves when told.

Used by `breakglass demo` and the end-to-end tests: one harness, so the demo shows what the tests prove.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot import redaction, runtime
from bot.clock import ManualClock
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import SlackStandIn
from bot.policy import Policy
from bot.services import activity
from bot.services.common import load_view
from bot.services.deps import Tuning
from bot.services.sweep import SweepReport
from bot.settings import Settings
from bot.slack.listeners.commands import WORKING

# Shaped like the real thing, so the tests that scan for leaked secrets look for something a leak would contain.
SIGNING_SECRET = "a3f09c7e5b2d4816e0c97f3b5a1d2e84"
BOT_TOKEN = "xoxb-1029384756-4820193746582-Vq3ZpL8sYt0cWk5NhR2mXbJe"
# One random key per process unless one is given: the chain is sealed, and a bot restarted on the same database
# (as the tests do) can extend it.
RUN_AUDIT_KEY = secrets.token_urlsafe(48)

PEOPLE = {
    "U0ALICE01": {"name": "alice", "real_name": "Alice Approver", "email": "alice@example.com"},
    "U0CAROL": {"name": "carol", "real_name": "Carol Approver", "email": "carol@example.com"},
    "U0BOB": {"name": "bob", "real_name": "Bob Oncall", "email": "bob@example.com"},
    "U0DAVE": {"name": "dave", "real_name": "Dave Developer", "email": "dave@example.com"},
    "U0ERIN": {"name": "erin", "real_name": "Erin Security", "email": "erin@example.com"},
}
GROUPS = {"S0SRELEADS": ["U0ALICE01", "U0CAROL"], "S0ONCALL": ["U0BOB"], "S0SECURITY": ["U0ERIN"]}


@dataclass(frozen=True)
class Reply:
    """What a person saw: the immediate acknowledgement, and the private answer that followed it."""

    status: int
    ack: str
    answer: str | None
    ack_seconds: float

    @property
    def text(self) -> str:
        return self.answer or self.ack


class LocalBot:
    def __init__(
        self,
        policy: Policy,
        database_url: str,
        environ: dict[str, str] | None = None,
        tuning: Tuning | None = None,
        clock: ManualClock | None = None,
        audit_key: str | None = None,
    ) -> None:
        self.policy = policy
        self.database_url = database_url
        self.environ = environ or {}
        self.tuning = tuning or Tuning(grant_retry_pause=0.01)
        self.clock = clock or ManualClock()
        self.audit_key = audit_key or RUN_AUDIT_KEY
        self.slack = SlackStandIn(token=BOT_TOKEN, users=PEOPLE, groups=GROUPS)
        self._names = itertools.count(1)
        self.runtime: runtime.Runtime | None = None
        self.replies: list[Reply] = []  # every answer the bot gave, for tests that look at all of them
        self._unredact: Callable[[], None] | None = None

    def start(self) -> LocalBot:
        self.slack.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_APP_TOKEN="",
            SLACK_API_URL=self.slack.api_url,
            DATABASE_URL=self.database_url,
            PORT=3000,
            BREAKGLASS_AUDIT_KEY=self.audit_key,
        )
        self.runtime = runtime.build(settings, self.environ, clock=self.clock, policy=self.policy, tuning=self.tuning)
        self._unredact = redaction.install(self.runtime.deps.redactor)
        port = self.runtime.serve_http(host="127.0.0.1", port=0, block=False)
        self.base_url = f"http://127.0.0.1:{port}"
        self.sender = SlackSender(self.base_url, SIGNING_SECRET)
        return self

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        self.slack.stop()
        if self._unredact is not None:
            self._unredact()
            self._unredact = None

    def __enter__(self) -> LocalBot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- people acting in Slack -----------------------------------------------------------------

    def command(self, user: str, text: str, channel: str = "C0INCIDENT", wait: bool = True) -> Reply:
        name = f"r{next(self._names)}"
        started = time.perf_counter()
        response = self.sender.command(
            text,
            user_id=user,
            user_name=PEOPLE.get(user, {}).get("name", user),
            channel_id=channel,
            response_url=self.slack.response_url(name),
        )
        return self._reply(response, started, name, wait)

    def click(
        self, user: str, action: str, request_id: int | str, channel: str | None = None, wait: bool = True
    ) -> Reply:
        channel = channel or self.policy.channels.approvals
        message = self.request_message(int(request_id), channel) if str(request_id).isdigit() else None
        name = f"r{next(self._names)}"
        started = time.perf_counter()
        response = self.sender.click(
            action,
            str(request_id),
            user,
            channel,
            message["ts"] if message else "1700000000.000001",
            response_url=self.slack.response_url(name),
        )
        return self._reply(response, started, name, wait)

    def _reply(self, response: Any, started: float, name: str, wait: bool) -> Reply:
        elapsed = time.perf_counter() - started
        ack = ""
        if response.content:
            try:
                ack = response.json().get("text", "")
            except ValueError:
                ack = response.text
        answer = None
        answer_follows = not ack or ack.startswith(WORKING)
        if wait and response.status_code == 200 and answer_follows:
            answers = self.slack.wait_for(lambda s: s.responses(name))
            answer = answers[-1].get("text")
        reply = Reply(response.status_code, ack, answer, elapsed)
        self.replies.append(reply)
        return reply

    # -- time -----------------------------------------------------------------------------------

    def advance(self, delta: timedelta) -> SweepReport:
        """Move time on and let the sweep do whatever fell due, as the scheduler would."""
        self.clock.advance(delta)
        return self.sweep()

    def sweep(self) -> SweepReport:
        assert self.runtime is not None
        return self.runtime.sweeper()

    def read_activity(self) -> int:
        """Read what watched grants did on their backends, as the scheduler's activity job would: how many grants
        were read."""
        assert self.runtime is not None
        return activity.read_due(self.runtime.deps)

    # -- what Slack shows -----------------------------------------------------------------------

    def request_message(self, request_id: int, channel: str | None = None) -> dict[str, Any] | None:
        """The stored message of a request in a channel (approvals by default), as Slack holds it now."""
        assert self.runtime is not None
        channel = channel or self.policy.channels.approvals
        view = load_view(self.runtime.deps, request_id)
        if view is None:
            return None
        for where, ts in ((view.approval_channel, view.approval_ts), (view.alert_channel, view.alert_ts)):
            message = self.slack.message(where, ts) if where == channel and ts else None
            if message is not None:
                return {
                    "ts": message.ts,
                    "text": message.text,
                    "blocks": message.blocks,
                    "updates": message.updates,
                }
        return None
