"""The request form's listeners: opening it, redrawing it for a choice, and its submission.

Opened by `/breakglass` with nothing after it, by the "Request access" shortcut and by the Home tab's button: each is
acknowledged at once, then the form is built for the person and opened with the trigger Slack gave (valid for three
seconds); when Slack will not open it, the person is told privately. A choice of resource or level redraws the form
with ``views.update``, offering again only what the person may request. A submission is checked by the rules a typed
command is checked by before it is acknowledged, and a mistake keeps the form open with the answer under its field;
otherwise the form closes and the request is made exactly as the typed command makes it, its outcome told privately
where the form was opened (else in the person's DM).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.actions import AuditAction
from bot.domain.commands import Ask
from bot.logs import log_context
from bot.services import guard, requests
from bot.services.deadline import Overdue
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.services.ports import MembershipUnknown
from bot.slack import blocks, request_form
from bot.slack.after_ack import Later, checked_in_time
from bot.slack.ids import ActionId, CallbackId, FormField
from bot.slack.listeners.clicks import listener, open_form
from bot.slack.listeners.views import told
from bot.slack.replies import answer, privately, record_slow_down, slowed_down
from bot.slack.text import placeholders
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.slack.request_form")

NOT_CHECKED_IN_TIME = (
    "Slack did not answer in time while Breakglass checked who may request this, so nothing was done. "
    "Please submit again."
)
MEMBERSHIP_UNKNOWN = (
    "Breakglass could not check user-group membership with Slack just now, so nothing was done. Try again in a minute."
)
NO_TRIGGER = "Slack sent no way to open the request form; nothing was done. Please try again."
NOT_OPENED = placeholders(
    "Slack did not open the request form in time, so nothing was done. Please try again, or type "
    "`/breakglass <resource> [duration] <reason>`."
)


def open_request_form(
    deps: Deps, client: WebClient, actor: str, trigger_id: object, channel: str, channel_name: str | None = None
) -> None:
    """Open the request form for ``actor`` with a trigger Slack gave for their command, shortcut or click; its answer
    goes to ``channel`` (privately), or to their DM when that is their own user id. Refused, in words for the person,
    when Slack will not open it (mostly a trigger older than its three seconds)."""
    form = request_form.build(requests.choices(deps, actor), channel, channel_name)
    open_form(client, trigger_id, form, what="the request form", no_trigger=NO_TRIGGER, not_opened=NOT_OPENED)


def _picked(deps: Deps, client: WebClient, actor: str, body: dict[str, Any], action: dict[str, Any]) -> None:
    _redraw(deps, client, actor, body.get("view"), action)


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    def on_open(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The shortcut, or the Home tab's "Request access": neither has a channel, so the answer is a DM."""
        ack()
        actor = body["user"]["id"]

        def after() -> None:
            answer_to = privately(body, respond, client)
            if not slowed_down(deps, limiter, actor, answer_to):
                answer(answer_to, lambda: open_request_form(deps, client, actor, body.get("trigger_id"), actor))

        with log_context(actor=actor):
            later(after)

    def on_submit(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        actor = body["user"]["id"]
        view = body.get("view")
        filled = request_form.read(view)
        verdict = limiter.take(actor)
        if not verdict.allowed:
            ack(response_action="errors", errors={filled.where(FormField.REASON): verdict.message(limiter.per_minute)})
            later(lambda: record_slow_down(deps, actor, verdict))
            return
        policy = deps.policy  # read once: a reload meanwhile must not check one field against another version
        try:
            resource, asked = checked_in_time(request_form.check, policy, lambda r: deps.may_request(actor, r), filled)
        except Overdue:
            ack(response_action="errors", errors={filled.where(FormField.RESOURCE): NOT_CHECKED_IN_TIME})
            return
        except request_form.Mistakes as mistakes:
            ack(response_action="errors", errors=mistakes.errors)
            if forbidden := mistakes.forbidden:  # after the ack: this writes to the database
                later(lambda: _record_refusal(deps, actor, forbidden, filled.resource or ""))
            return
        except MembershipUnknown:
            ack(response_action="errors", errors={filled.where(FormField.RESOURCE): MEMBERSHIP_UNKNOWN})
            return
        ack()  # closes the form; granting may take longer than Slack waits
        channel, name = request_form.origin(view, actor)
        with log_context(resource=resource.name, actor=actor):
            later(lambda: told(client, channel, actor, lambda: _submit(deps, actor, asked, channel, name)))

    app.shortcut(CallbackId.REQUEST_SHORTCUT.value)(on_open)
    app.action(ActionId.OPEN_REQUEST_FORM.value)(on_open)
    # A choice in a form names no request yet: nothing to log it with.
    on_pick = listener(deps, limiter, later, _picked, logged=lambda action: None)
    app.action(ActionId.PICK_RESOURCE.value)(on_pick)
    app.action(ActionId.PICK_LEVEL.value)(on_pick)
    app.view(CallbackId.REQUEST.value)(on_submit)


def _redraw(deps: Deps, client: WebClient, actor: str, view: object, action: dict[str, Any]) -> None:
    """The form again for the choice just made, offering again only what ``actor`` may request now."""
    if not isinstance(view, dict) or not isinstance(view.get("id"), str):
        return  # not a view of ours to redraw; the submission is checked in full anyway
    channel, name = request_form.origin(view, actor)
    form = request_form.build(requests.choices(deps, actor), channel, name, request_form.picked(view, action))
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=form)
    except SlackApiError as error:  # hash_conflict: a later choice redrew it first, and that one stands
        log.info("the request form was not redrawn (%s)", error.response.get("error"))


def _submit(deps: Deps, actor: str, asked: Ask, channel: str, channel_name: str | None) -> str:
    # A form opened in a DM or from no channel has no channel of origin, as a command typed in a DM with the bot has
    # none other than that DM.
    origin = None if channel[:1] in ("U", "W") else channel
    return blocks.asked_text(requests.submit(deps, actor, asked, origin, channel_name))


def _record_refusal(deps: Deps, actor: str, why: str, resource: str) -> None:
    try:
        guard.refused(deps, actor, AuditAction.REQUEST_REFUSED, why, resource=resource)
    except Exception as error:  # the person has their answer; a failed write is logged, not shown to them
        database_outage.failed(log, "recording a refused request", error)
