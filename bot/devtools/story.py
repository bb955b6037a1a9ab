"""The demo's narrator: makes people act through the real bot (LocalBot) and prints what each of them sees.

What is printed is what Slack would show: messages rendered from their mrkdwn and blocks, modals and the Home tab
laid out in a box (bot/devtools/transcript), colour only when asked for. Every Slack Web API call the bot makes is
counted against the screen that caused it, so the transcript can say what each screen costs.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot.devtools import form_filling, slack_requests
from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import PEOPLE, LocalBot, Reply
from bot.devtools.pagerduty_standin import PagerDutyStandIn
from bot.devtools.transcript import home, message, modal, text
from bot.slack.ids import ActionId

SHOWN_CALLS = ("chat.postMessage", "chat.update")  # what the transcript prints in full
SCREENS = ("views.open", "views.update", "views.publish")  # what a form or a Home tab costs
INDENT = "    "


class Story:
    def __init__(
        self, bot: LocalBot, pagerduty: PagerDutyStandIn, names: Mapping[str, str], pace: float, colour: bool
    ) -> None:
        self.bot = bot
        self.pagerduty = pagerduty
        self.names = names
        self.pace = pace
        self.colour = colour
        self.seen = 0  # Slack calls already printed
        self.published = 0  # Home tabs published so far (views.publish)
        self.costs: dict[str, Counter[str]] = {}  # screen -> Slack method -> calls

    def step(self, title: str) -> None:
        print(f"\n\033[1m== {title}\033[0m" if self.colour else f"\n== {title}")
        time.sleep(self.pace)

    def _name(self, user: str) -> str:
        return self.names.get(user, user)

    # -- typing and clicking --------------------------------------------------------------------------------------

    def says(self, user: str, typed: str, channel: str = "C0INCIDENT") -> Reply:
        print(f"  {self._name(user)} in {self.names.get(channel, channel)}: /breakglass {typed}".rstrip())
        reply = self.bot.command(user, typed, channel=channel)
        self._private(reply)
        return reply

    def clicks(self, user: str, action: ActionId, request_id: int, channel: str = "C0APPROVALS") -> None:
        label = action.value.split("-")[0].capitalize()
        print(f"  {self._name(user)} clicks [ {label} ] on request #{request_id} in {self.names[channel]}")
        self._private(self.bot.click(user, action.value, request_id, channel=channel))

    def clicks_in_dm(self, user: str, label: str, action: ActionId, request_id: int) -> None:
        """``user`` presses a button on the newest DM the bot sent them about the request."""
        print(f"  {self._name(user)} clicks [ {label} ] on the bot's DM about request #{request_id}")
        self._private(self.bot.click_in_dm(user, action.value, request_id))

    def denies(self, user: str, request_id: int, reason: str) -> None:
        print(f"  {self._name(user)} clicks [ Deny… ] on request #{request_id}; a form asks why; they write:")
        print(f"      “{reason}”")
        self._private(self.bot.deny(user, request_id, reason))

    def approves_saying(self, user: str, request_id: int, comment: str) -> None:
        print(f"  {self._name(user)} clicks [ Approve with comment ] on request #{request_id} and writes: “{comment}”")
        self._private(self.bot.approve_with_comment(user, request_id, comment))

    def writes_in_dm_form(self, user: str, label: str, action: ActionId, request_id: int, words: str) -> None:
        """``user`` presses a DM button that opens a form (shown), writes ``words`` in it and submits it."""
        print(f"  {self._name(user)} clicks [ {label} ] on the bot's DM about request #{request_id}; a form opens:")
        before = len(self.bot.slack.calls())
        opened = self.bot.open_form(user, action.value, request_id, channel=user)
        if isinstance(opened, Reply):
            self._private(opened)
            return
        self.shows_modal(opened.view)
        self.cost(f"{label} form", before)
        print(f"  {self._name(user)} writes in it and presses [ {_submit_label(opened.view)} ]: “{words}”")
        self._private(self.bot.submit_form(user, opened.view, words))

    def opens_request_form(
        self, user: str, channel: str = "C0INCIDENT", channel_name: str = "incident", via: str = "command"
    ) -> dict[str, Any] | None:
        """``user`` types `/breakglass` with nothing after it (``via`` "command") or presses the Home tab's
        [ Request access ] ("home"); the form the bot opened, shown."""
        if via == "home":
            print(f"  {self._name(user)} clicks [ Request access ] on the Home tab")
        else:
            print(f"  {self._name(user)} in {self.names.get(channel, channel)}: /breakglass   (nothing after it)")
        before = len(self.bot.slack.calls())
        opened = self.bot.open_request_form(user, via=via, channel=channel, channel_name=channel_name)
        if isinstance(opened, Reply):
            self._private(opened)
            return None
        print("  a form opens:")
        self.shows_modal(opened.view)
        self.cost("Request form opened", before)
        return opened.view

    def picks_in_form(self, user: str, view: dict[str, Any], action: ActionId, value: str) -> dict[str, Any]:
        """``user`` chooses ``value`` in one of the form's selects; the form as the bot redrew it, shown."""
        print(f"  {self._name(user)} picks {value} in the form; the bot redraws it for that choice:")
        before = len(self.bot.slack.calls())
        redrawn = self.bot.pick_in_form(user, view, action.value, value)
        self.shows_modal(redrawn)
        self.cost("Request form redrawn for a choice", before)
        return redrawn

    def submits_request_form(self, user: str, view: dict[str, Any], answers: dict[str, Any]) -> Reply:
        """``user`` fills in ``answers`` (by field) and submits; a refused form is shown as it stays open."""
        filled = "; ".join(f"{field}: {value}" for field, value in answers.items())
        print(f"  {self._name(user)} fills in {filled}; and presses [ {_submit_label(view)} ]")
        reply = self.bot.submit_request_form(user, view, answers)
        if reply.errors:
            print("  the form stays open, each mistake under its field:")
            self.shows_modal(view, reply.errors, form_filling.state_of(view, answers))
        self._private(reply)
        return reply

    # -- screens ---------------------------------------------------------------------------------------------------

    def shows_modal(
        self,
        view: Mapping[str, Any],
        errors: Mapping[str, str] | None = None,
        state: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        for row in modal(view, self.names, self.colour, errors, state=state):
            print(INDENT + row)

    def opens_home(self, user: str) -> dict[str, Any] | None:
        """``user`` opens the app's Home tab (a signed ``app_home_opened``); the page published for them, shown."""
        print(f"  {self._name(user)} opens Breakglass's Home tab in Slack:")
        before = len(self.bot.slack.calls())
        published = len(self.bot.slack.homes(user))
        response = self.bot.sender.event(slack_requests.app_home_opened(user))
        self.bot.slack.wait_for(lambda s: len(s.homes(user)) > published or response.status_code != 200, timeout=10)
        page = self.bot.slack.home(user)
        if page is None or response.status_code != 200:
            print(f"    (no Home tab was published: HTTP {response.status_code})")
            return None
        for row in home(page, self.names, self.colour):
            print(INDENT + row)
        self.cost("Home tab opened", before)
        self.published = len(self.bot.slack.calls("views.publish"))
        return page

    def cost(self, screen: str, before: int) -> None:
        """Count and print the Slack calls made since call number ``before`` as the cost of ``screen``."""
        time.sleep(0.05)  # let the listener threads finish their Slack calls
        made = Counter(call.method for call in self.bot.slack.calls()[before:] if call.method in SCREENS)
        self.costs.setdefault(screen, Counter()).update(made)
        if made:
            print(f"    ({screen}: {_calls(made)})")

    def price_list(self) -> list[str]:
        """What each screen cost in Slack calls over the whole run, one line a screen."""
        return [f"{screen}: {_calls(made)}" for screen, made in self.costs.items() if made]

    # -- the rest of the world -------------------------------------------------------------------------------------

    def on_call(self, user: str, schedule: str) -> None:
        """PagerDuty's schedule changes hands: ``user`` carries the pager from now on."""
        email = PEOPLE[user]["email"]
        self.pagerduty.set_on_call(schedule, [email])
        print(f"  PagerDuty: {self._name(user)} ({email}) is on call for schedule {schedule} now")

    def runs(self, user: str, statement: str) -> None:
        """The person uses their access: a statement on the demo database, as their backend identity."""
        print(f"  {self._name(user)} runs on the orders database: {statement}")
        try:
            DemoDatabase.named("orders").run(user, statement, at=self.bot.clock.now())
        except PermissionError as refused:
            print(f"    the database refuses: {refused}")

    def read(self, delta: timedelta, why: str) -> None:
        print(f"  ... {why}: the clock moves on {delta}")
        self.bot.clock.advance(delta)
        self.bot.read_activity()
        self.slack_activity()

    def wait(self, delta: timedelta, why: str) -> None:
        print(f"  ... {why}: the clock moves on {delta}")
        self.bot.advance(delta)
        self.slack_activity()

    # -- what Slack shows -------------------------------------------------------------------------------------------

    def _private(self, reply: Reply) -> None:
        if reply.ack and not reply.errors:
            shown = text(reply.ack, self.names, self.colour)
            print(f"    (only you) {shown}   [acknowledged in {reply.ack_seconds * 1000:.0f} ms]")
        if reply.answer:
            for line in text(reply.answer, self.names, self.colour).splitlines():
                print(f"    (only you) {line}")
        self.slack_activity()

    def _shown_count(self) -> int:
        return len([c for c in self.bot.slack.calls() if c.method in SHOWN_CALLS])

    def slack_activity(self) -> None:
        """Everything the bot posted or edited in Slack since last time, and the Home tabs it refreshed."""
        time.sleep(0.05)  # let the listener threads finish their Slack calls
        self._settle_homes()
        calls = [c for c in self.bot.slack.calls() if c.method in SHOWN_CALLS]
        for call in calls[self.seen :]:
            channel = str(call.args.get("channel"))
            where = f"DM to {self._name(channel)}" if channel.startswith("U") else self.names.get(channel, channel)
            verb = "edits its message in" if call.method == "chat.update" else "posts to"
            if call.args.get("thread_ts"):
                verb = "replies in a message's thread in"
            print(f"  bot {verb} {where}:")
            blocks = call.args.get("blocks")
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            lines = (
                message(blocks, self.names, self.colour)
                if blocks
                else text(str(call.args.get("text")), self.names, self.colour).splitlines()
            )
            for line in lines:
                print(f"      │ {line}")
        self.seen = len(calls)
        published = self.bot.slack.calls("views.publish")
        for call in published[self.published :]:
            print(f"  bot refreshes {self._name(str(call.args.get('user_id')))}'s Home tab (it changed)")
            self.costs.setdefault("Home tab refreshed", Counter())["views.publish"] += 1
        self.published = len(published)

    def _settle_homes(self) -> None:
        """Wait until the Home tabs a change concerns are re-published (they are, off the request's thread)."""
        homes = self.bot.runtime.deps.homes if self.bot.runtime is not None else None
        flush = getattr(homes, "flush", None)  # the no-op Homes of a bot without a Home tab has none
        if callable(flush):
            flush(10.0)


def _calls(made: Counter[str]) -> str:
    return ", ".join(f"{method} {n} time{'s' if n > 1 else ''}" for method, n in sorted(made.items()))


def _submit_label(view: Mapping[str, Any]) -> str:
    return str((view.get("submit") or {}).get("text", "Submit"))
