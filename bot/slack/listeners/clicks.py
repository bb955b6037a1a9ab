"""What every button listener reads from a click, and how each opens a form from one.

A button's value is a request id (or, for an extension's decision, ``<id>:<round>``, read in ``more_time.py``);
anything else was not made by Breakglass and is refused in words. A form answers where its button was clicked
(its channel, or the person's DM for the Home tab, which has none). Slack opens a form only with the click's
``trigger_id`` and only within three seconds of the click, so a form that cannot open is a refusal that says to
click again, never a silent nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.rules import Refused
from bot.logs import log_context
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack.after_ack import Later
from bot.slack.replies import answer, privately, slowed_down

log = logging.getLogger("breakglass.slack.clicks")

NOT_OURS = "That button does not belong to a Breakglass request; nothing was done."
NO_TRIGGER = "Slack sent no way to open the form with that click; nothing was done. Please click again."
NOT_OPENED = "Slack did not open the form in time, so nothing was done. Please click again."


# What a click does once acknowledged: (deps, client, actor, body, action) -> the private answer, or None where a form
# it opened is what the person sees next. Refused is answered in its words.
Work = Callable[[Deps, WebClient, str, dict[str, Any], dict[str, Any]], str | None]


def listener(
    deps: Deps,
    limiter: RateLimiter,
    later: Later,
    work: Work,
    *,
    logged: Callable[[dict[str, Any]], int | None] | None = None,
) -> Callable[..., None]:
    """A button's listener: acknowledged at once; then, in ``later``'s thread, rate limited, logged with the request
    it names, and answered privately (through the click's response_url, or by DM for the Home tab, which gives
    none)."""
    logged = logged or logged_id

    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]

        def after() -> None:
            tell = privately(body, respond, client)
            if slowed_down(deps, limiter, actor, tell):
                return
            answer(tell, lambda: work(deps, client, actor, body, action))

        with log_context(request_id=logged(action), actor=actor):
            later(after)

    return on_click


def request_id(action: dict[str, Any]) -> int:
    value = str(action.get("value") or "")
    if not (value.isascii() and value.isdigit()) or len(value) > 9:  # "²".isdigit(); PostgreSQL ids are int4
        raise Refused(NOT_OURS)
    return int(value)


def logged_id(action: dict[str, Any]) -> int | None:
    """The request id for the log's context, or None for a value that is not one (refused when the click is handled)."""
    try:
        return request_id(action)
    except Refused:
        return None


def clicked_in(body: dict[str, Any], actor: str) -> str:
    """Where the button was clicked, to answer the form's submission there; the person's DM when Slack did not say."""
    channel = body.get("channel")
    container = body.get("container")
    found = (channel.get("id") if isinstance(channel, dict) else None) or (
        container.get("channel_id") if isinstance(container, dict) else None
    )
    return found if isinstance(found, str) and found else actor


def open_form(
    client: WebClient,
    trigger_id: object,
    form: dict[str, Any],
    *,
    what: str,
    no_trigger: str = NO_TRIGGER,
    not_opened: str = NOT_OPENED,
) -> None:
    """Open ``form`` with the trigger Slack gave; Refused, in words for the person, where Slack will not."""
    if not isinstance(trigger_id, str) or not trigger_id:
        raise Refused(no_trigger)
    try:
        client.views_open(trigger_id=trigger_id, view=form)
    except SlackApiError as error:  # mostly a trigger that expired (3 s) while the checks before it waited
        log.warning("Slack did not open %s (%s)", what, error.response.get("error"))
        raise Refused(not_opened) from None
