"""The real bot, run locally over HTTP (or Socket Mode) against the Slack stand-in, with a clock that only moves when
told.

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
from bot.devtools import form_filling, request_forms
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import OpenedView, SlackStandIn
from bot.devtools.socket_mode_standin import APP_TOKEN, SocketModeStandIn, SocketSender
from bot.policy import Policy
from bot.services import activity
from bot.services.common import load_view
from bot.services.deps import Tuning
from bot.services.sweep import SweepReport
from bot.settings import Settings
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, ActionId
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
    """What a person saw: the immediate acknowledgement, and the private answer that followed it. A form refused as
    submitted stays open with ``errors`` (block id -> text) under its inputs; their text is the ``ack``."""

    status: int
    ack: str
    answer: str | None
    ack_seconds: float
    errors: dict[str, str] | None = None

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
        socket_mode: bool = False,
    ) -> None:
        """``socket_mode``: Slack's requests reach the bot over Socket Mode (``sender`` delivers what it would POST as
        envelopes over the stand-in's socket), as ``breakglass serve`` takes them when SLACK_APP_TOKEN is set."""
        self.policy = policy
        self.database_url = database_url
        self.environ = environ or {}
        self.tuning = tuning or Tuning(grant_retry_pause=0.01)
        self.clock = clock or ManualClock()
        self.audit_key = audit_key or RUN_AUDIT_KEY
        self.socket_mode = socket_mode
        stand_in = SocketModeStandIn if socket_mode else SlackStandIn
        self.slack = stand_in(token=BOT_TOKEN, users=PEOPLE, groups=GROUPS)
        self._names = itertools.count(1)
        self.runtime: runtime.Runtime | None = None
        self.replies: list[Reply] = []  # every answer the bot gave, for tests that look at all of them
        self._unredact: Callable[[], None] | None = None

    def start(self) -> LocalBot:
        self.slack.start()
        settings = Settings(
            _env_file=None,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_APP_TOKEN=APP_TOKEN if self.socket_mode else "",
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
        if isinstance(self.slack, SocketModeStandIn):  # the path `breakglass serve` takes in Socket Mode
            self.runtime.connect_socket(APP_TOKEN)
            self.sender = SocketSender(self.slack)
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

    def command(
        self, user: str, text: str, channel: str = "C0INCIDENT", wait: bool = True, channel_name: str = "incident"
    ) -> Reply:
        name = f"r{next(self._names)}"
        started = time.perf_counter()
        response = self.sender.command(
            text,
            user_id=user,
            user_name=PEOPLE.get(user, {}).get("name", user),
            channel_id=channel,
            channel_name=channel_name,
            response_url=self.slack.response_url(name),
        )
        return self._reply(response, started, name, wait)

    def click(
        self, user: str, action: str, request_id: int | str, channel: str | None = None, wait: bool = True
    ) -> Reply:
        name = f"r{next(self._names)}"
        started = time.perf_counter()
        response = self._click(user, action, request_id, channel, name)
        return self._reply(response, started, name, wait)

    def _click(
        self, user: str, action: str, request_id: int | str, channel: str | None, name: str, **extra: Any
    ) -> Any:
        """A signed click in ``channel`` (approvals by default; a user id: the DM with them), answered at ``name``: on
        the newest message there that carries the button for the request, else on the request's message."""
        channel = channel or self.policy.channels.approvals
        carrying = self.button_message(channel, action, request_id)
        if carrying is not None:
            channel, block = carrying["channel"], carrying["block_id"]
            shown = {"type": "message", **{k: carrying[k] for k in ("ts", "text", "blocks")}}
            extra = {"message": shown, "block_id": block, **extra}
            if channel.startswith("D"):
                extra.setdefault("channel_name", "directmessage")
        message = self.request_message(int(request_id), channel) if str(request_id).isdigit() else None
        message = carrying or message
        ts = message["ts"] if message else "1700000000.000001"
        return self.sender.click(
            action, str(request_id), user, channel, ts, response_url=self.slack.response_url(name), **extra
        )

    def click_in_dm(
        self, user: str, action: str, request_id: int | str, owner: str | None = None, wait: bool = True
    ) -> Reply:
        """Click ``action``'s button on the newest DM to ``owner`` (``user`` by default: someone else's click on a
        DM is only ever a forged payload) that carries it for the request."""
        return self.click(user, action, request_id, channel=owner or user, wait=wait)

    def deny(
        self, user: str, request_id: int | str, reason: str, wait: bool = True, channel: str | None = None
    ) -> Reply:
        """Click Deny, then give ``reason`` in the form the bot opens and submit it."""
        return self.decide_in_form(user, ActionId.DENY, request_id, reason, wait, channel)

    def approve_with_comment(
        self, user: str, request_id: int | str, comment: str, wait: bool = True, channel: str | None = None
    ) -> Reply:
        """Click Approve with comment, then write ``comment`` in the form the bot opens and submit it."""
        return self.decide_in_form(user, ActionId.APPROVE_WITH_COMMENT, request_id, comment, wait, channel)

    def decide_in_form(
        self, user: str, action: str, request_id: int | str, words: str, wait: bool = True, channel: str | None = None
    ) -> Reply:
        """Click ``action``'s button; when the bot opens a form for it, write ``words`` in it and submit it, signed as
        Slack does. What the person saw: the click's refusal when no form opened, the form's errors when it stayed
        open, else (``wait``) the private answer that followed."""
        opened = self.open_form(user, action, request_id, channel)
        if isinstance(opened, Reply):
            return opened
        return self.submit_form(user, opened.view, words, wait)

    def open_form(
        self, user: str, action: str, request_id: int | str, channel: str | None = None
    ) -> OpenedView | Reply:
        """Click ``action``'s button and wait for what follows: the form the bot opened with that click's trigger
        (``views.open``), or the click's refusal (a Reply) when it opened none."""
        name = f"r{next(self._names)}"
        trigger = self.slack.issue_trigger(user)
        started = time.perf_counter()
        clicked = self._click(user, action, request_id, channel, name, trigger_id=trigger)
        if clicked.status_code != 200 or clicked.content:  # answered in the ack: no listener ran
            return self._reply(clicked, started, name, wait=False)
        elapsed = time.perf_counter() - started
        self.slack.wait_for(lambda s: s.view_for(trigger) or s.responses(name))
        opened = self.slack.view_for(trigger)
        if opened is not None:
            return opened
        reply = Reply(clicked.status_code, "", self.slack.responses(name)[-1].get("text"), elapsed)
        self.replies.append(reply)
        return reply

    def submit_form(self, user: str, view: dict[str, Any], words: str | None, wait: bool = True) -> Reply:
        """Submit the opened modal ``view`` with ``words`` in its text input (None: left empty)."""
        return self.submit_values(user, view, {WORDS_BLOCK: {WORDS_INPUT: words}}, wait)

    def submit_values(
        self, user: str, view: dict[str, Any], values: dict[str, dict[str, Any]], wait: bool = True
    ) -> Reply:
        """Submit the opened modal ``view`` holding ``values`` (block id -> action id -> state, as
        ``form_filling.state_of`` makes them); ``wait``: for the private answer that follows a closed form."""
        ephemerals_before = len(self.slack.ephemerals(user))
        dms_before = len(self.slack.dms(user))
        started = time.perf_counter()
        response = self.sender.submit_view(
            user,
            view["callback_id"],
            view["private_metadata"],
            values,
            view=view,
            user_name=PEOPLE.get(user, {}).get("name", user),
        )
        elapsed = time.perf_counter() - started
        body: dict[str, Any] = {}
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = {"text": response.text}
        errors = body.get("errors") if body.get("response_action") == "errors" else None
        answer = None
        if wait and response.status_code == 200 and not errors:

            def answered(slack: SlackStandIn) -> str | None:
                # The answer is private in the channel, or a DM when Slack would not post it there.
                # Notices (marked with metadata) are not the answer, though a request's may reach the DM first.
                dms = [c for c in slack.dms(user)[dms_before:] if "metadata" not in c.args]
                new = [*slack.ephemerals(user)[ephemerals_before:], *dms]
                return str(new[0].args.get("text")) if new else None

            answer = self.slack.wait_for(answered)
        ack = "\n".join(str(text) for text in errors.values()) if errors else str(body.get("text", ""))
        reply = Reply(response.status_code, ack, answer, elapsed, errors)
        self.replies.append(reply)
        return reply

    def open_request_form(
        self, user: str, via: str = "command", channel: str = "C0INCIDENT", channel_name: str = "incident"
    ) -> OpenedView | Reply:
        """Open the request form as ``user`` would: `/breakglass` with nothing after it in ``channel`` (``via``
        "command"), the "Request access" shortcut ("shortcut") or the Home tab's button ("home"). The form the bot
        opened with that trigger, or what the person was told instead."""
        return request_forms.open_form(self, user, via, channel, channel_name)

    def pick_in_form(
        self, user: str, view: dict[str, Any], action: str, value: str, answers: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Choose ``value`` in the form's select ``action`` (ActionId.PICK_RESOURCE or PICK_LEVEL), the form
        holding ``answers`` meanwhile (see ``form_filling.state_of``); the form as the bot redrew it."""
        return request_forms.pick(self, user, view, action, value, answers)

    def submit_request_form(
        self, user: str, view: dict[str, Any], answers: dict[str, Any] | None = None, wait: bool = True
    ) -> Reply:
        """Submit the request form ``view`` as it was drawn, but for ``answers`` (by field: "resource", "level",
        "duration", "typed-duration", "reason", "emergency"; see ``form_filling.state_of``)."""
        return self.submit_values(user, view, form_filling.state_of(view, answers), wait)

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

    def button_message(self, channel: str, action: str, request_id: int | str) -> dict[str, Any] | None:
        """The newest message ``channel`` shows (a user id: the DM with them) with ``action``'s button for the
        request, as Slack holds it now; None when no message there carries it."""
        for message in reversed(self.slack.messages(channel)):
            for block in message.blocks:
                elements = block.get("elements") or [] if block.get("type") == "actions" else []
                if any(e.get("action_id") == action and e.get("value") == str(request_id) for e in elements):
                    shown = {"channel": message.channel, "ts": message.ts, "text": message.text}
                    return shown | {"blocks": message.blocks, "block_id": block.get("block_id") or ""}
        return None

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
