"""The request form as a person uses it, over the real Slack path: opened by `/breakglass`, the shortcut or the Home
tab's button, redrawn by a choice in its selects. For LocalBot (the tests and the demo).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from bot.devtools import form_filling
from bot.devtools.slack_requests import selected
from bot.devtools.slack_standin import OpenedView, SlackStandIn
from bot.slack.ids import ActionId, CallbackId

if TYPE_CHECKING:
    from bot.devtools.local_bot import LocalBot, Reply

WAYS = ("command", "shortcut", "home")


def open_form(bot: LocalBot, user: str, via: str, channel: str, channel_name: str) -> OpenedView | Reply:
    """Open the form ``via`` one of WAYS and wait for what follows: the form opened with that trigger, or what the
    person was told instead (in the command's response, else in their DM)."""
    from bot.devtools.local_bot import PEOPLE, Reply

    if via not in WAYS:
        raise ValueError(f"open the request form by one of {', '.join(WAYS)}")
    name = f"form-{secrets.token_hex(4)}"
    trigger = bot.slack.issue_trigger(user)
    dms_before = len(bot.slack.dms(user))
    started = time.perf_counter()
    if via == "command":
        response = bot.sender.command(
            "",
            user_id=user,
            user_name=PEOPLE.get(user, {}).get("name", user),
            channel_id=channel,
            channel_name=channel_name,
            response_url=bot.slack.response_url(name),
            trigger_id=trigger,
        )
    elif via == "shortcut":
        response = bot.sender.shortcut(CallbackId.REQUEST_SHORTCUT.value, user, trigger_id=trigger)
    else:
        home = bot.slack.home(user) or {"type": "home", "id": "VH000000001"}
        response = bot.sender.act_in_view(user, home, ActionId.OPEN_REQUEST_FORM.value, trigger_id=trigger)
    elapsed = time.perf_counter() - started
    ack = ""
    if response.content:
        try:
            ack = str(response.json().get("text", ""))
        except ValueError:
            ack = response.text

    def told(slack: SlackStandIn) -> str | None:
        if responses := slack.responses(name):
            return str(responses[-1].get("text"))
        dms = [c for c in slack.dms(user)[dms_before:] if "metadata" not in c.args]  # not a request's notice
        return str(dms[-1].args.get("text")) if dms else None

    if response.status_code == 200 and not ack:
        bot.slack.wait_for(lambda s: s.view_for(trigger) or told(s))
        opened = bot.slack.view_for(trigger)
        if opened is not None:
            bot.replies.append(Reply(response.status_code, ack, None, elapsed))  # the ack, with the form as its answer
            return opened
    reply = Reply(response.status_code, ack, told(bot.slack), elapsed)
    bot.replies.append(reply)
    return reply


def pick(
    bot: LocalBot, user: str, view: dict[str, Any], action: str, value: str, answers: dict[str, Any] | None
) -> dict[str, Any]:
    """Choose ``value`` in the select ``action`` of the modal ``view`` (as Slack holds it now); the modal once the
    bot has redrawn it (``views.update``), or as it was when the bot left it alone."""
    block = form_filling.block_of(view, "resource" if action == ActionId.PICK_RESOURCE else "level") or ""
    state = form_filling.state_of(view, answers)
    updates_before, dms_before = len(bot.slack.calls("views.update")), len(bot.slack.dms(user))
    response = bot.sender.act_in_view(
        user,
        view,
        action,
        selected_option=selected(value)["selected_option"],
        block_id=block,
        values=state,
    )
    assert response.status_code == 200, response.text
    bot.slack.wait_for(lambda s: len(s.calls("views.update")) > updates_before or len(s.dms(user)) > dms_before)
    return bot.slack.current_view(str(view.get("id"))) or view
