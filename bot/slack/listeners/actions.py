"""Button clicks. The actor is the payload's user; a button's value is only an opaque request id.

Approve decides at once. Deny, and Approve with a comment, open a form instead (its submission decides, in
``views.py``), but only once the click would not be refused anyway: the request exists and waits for approvers, and
the clicker is an approver who did not ask for it. A click refused here is answered and recorded as a refused
decision would be, and opens no form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.actions import AuditAction
from bot.domain.rules import Refused, check_decider
from bot.domain.states import Status
from bot.logs import log_context
from bot.services import approvers, decisions, requests
from bot.services.common import existing, refuse
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.services.outcome import outcome
from bot.services.snapshots import RequestView
from bot.slack import modals
from bot.slack.ids import ActionId
from bot.slack.replies import answer, privately, slowed_down

log = logging.getLogger("breakglass.slack.actions")


def _request_id(action: dict[str, Any]) -> int:
    value = str(action.get("value") or "")
    if not (value.isascii() and value.isdigit()) or len(value) > 9:  # "²".isdigit(); PostgreSQL ids are int4
        raise Refused("That button does not belong to a Breakglass request; nothing was done.")
    return int(value)


def _logged_id(action: dict[str, Any]) -> int | None:
    """The request id for the log's context, or None for a value that is not one (refused when the click is handled)."""
    try:
        return _request_id(action)
    except Refused:
        return None


def _approve(deps: Deps, actor: str, request_id: int) -> str:
    view = decisions.decide(deps, actor, request_id, approve=True)
    return f"👍 Your approval of request #{view.id} is recorded."


def _revoke(deps: Deps, actor: str, request_id: int) -> str:
    view = requests.end_early(deps, actor, request_id)
    return f"🛑 Access for request #{view.id} is {view.status.value.replace('_', ' ')}."


CLICKS: dict[ActionId, Callable[[Deps, str, int], str]] = {
    ActionId.APPROVE: _approve,
    ActionId.REVOKE: _revoke,
}


# The buttons that ask for words first: the form each opens.
FORMS: dict[ActionId, Callable[[RequestView, str], modals.View]] = {
    ActionId.DENY: modals.deny_form,
    ActionId.APPROVE_WITH_COMMENT: modals.approve_form,
}


def register(app: App, deps: Deps, limiter: RateLimiter) -> None:
    for action_id, work in CLICKS.items():
        app.action(action_id.value)(_listener(deps, limiter, work))
    for action_id, form in FORMS.items():
        app.action(action_id.value)(_form_listener(deps, limiter, form))


def _listener(deps: Deps, limiter: RateLimiter, work: Callable[[Deps, str, int], str]) -> Callable[..., None]:
    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        tell = privately(body, respond, client)  # a click on the Home tab has no response_url: a DM then
        if slowed_down(deps, limiter, actor, tell):
            return
        with log_context(request_id=_logged_id(action), actor=actor):
            answer(tell, lambda: work(deps, actor, _request_id(action)))

    return on_click


def _form_listener(
    deps: Deps, limiter: RateLimiter, form: Callable[[RequestView, str], modals.View]
) -> Callable[..., None]:
    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        actor = body["user"]["id"]
        tell = privately(body, respond, client)
        if slowed_down(deps, limiter, actor, tell):
            return
        with log_context(request_id=_logged_id(action), actor=actor):
            answer(tell, lambda: _open_form(deps, client, actor, body, action, form))

    return on_click


def _open_form(
    deps: Deps,
    client: WebClient,
    actor: str,
    body: dict[str, Any],
    action: dict[str, Any],
    form: Callable[[RequestView, str], modals.View],
) -> None:
    """Open the form, or refuse as the submission would; None: the form is what the person sees next."""
    current = _decidable(deps, actor, _request_id(action))
    trigger = body.get("trigger_id")
    if not isinstance(trigger, str) or not trigger:
        raise Refused("Slack sent no way to open the form with that click; nothing was done. Please click again.")
    try:
        client.views_open(trigger_id=trigger, view=form(current, _channel(body, actor)))
    except SlackApiError as error:  # mostly a trigger that expired (3 s) while the check above waited
        log.warning("Slack did not open a decision form (%s)", error.response.get("error"))
        raise Refused("Slack did not open the form in time, so nothing was done. Please click again.") from None


def _decidable(deps: Deps, actor: str, request_id: int) -> RequestView:
    """The pending request ``actor`` may decide on, or Refused saying why not, before they are asked for words the
    decision would refuse anyway. The refusals are recorded and worded as ``decisions.decide`` does; what only the
    decision itself can tell (a lapse, a lookup of who is the same person) is left to it."""
    current = existing(deps, request_id)
    # Whoever the decision itself would hear: listed in a step, on call, or escalated to; not the listed ones alone.
    resource = deps.resource(current.resource, current.level)
    may_decide = actor != current.requester_id and approvers.may_decide_any(deps, actor, resource, current.escalated)
    try:
        check_decider(actor=actor, requester=current.requester_id, is_approver=may_decide, resource=current.label)
    except Refused as refusal:
        refuse(deps, actor, current, AuditAction.DECISION_REFUSED, str(refusal))
        if current.status is not Status.PENDING:
            raise Refused(f"{refusal} {outcome(current)}") from None
        raise
    if current.status is not Status.PENDING:
        raise Refused(f"{outcome(current)} Nothing was done.")
    return current


def _channel(body: dict[str, Any], actor: str) -> str:
    """Where the button was clicked, to answer the form's submission there; the person's DM when Slack did not say."""
    channel = body.get("channel")
    container = body.get("container")
    found = (channel.get("id") if isinstance(channel, dict) else None) or (
        container.get("channel_id") if isinstance(container, dict) else None
    )
    return found if isinstance(found, str) and found else actor
