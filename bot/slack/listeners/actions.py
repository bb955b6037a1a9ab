"""Button clicks. The actor is the payload's user; a button's value is only an opaque request id.

Approve decides at once. Deny, and Approve with a comment, open a form instead (its submission decides, in
``views.py``), but only once the click would not be refused anyway: the request exists and waits for approvers, and
the clicker is an approver who did not ask for it. A click refused here is answered and recorded as a refused
decision would be, and opens no form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.domain.actions import AuditAction
from bot.domain.rules import Refused, check_decider
from bot.domain.states import Status
from bot.services import approvers, decisions, requests
from bot.services.common import existing, refuse
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.services.outcome import outcome
from bot.services.snapshots import RequestView
from bot.slack import modals
from bot.slack.after_ack import Later
from bot.slack.ids import ActionId
from bot.slack.listeners.clicks import Work, clicked_in, listener, open_form, request_id


def _approve(deps: Deps, actor: str, request_id: int) -> str:
    view = decisions.decide(deps, actor, request_id, approve=True)
    return f"👍 Your approval of request #{view.id} is recorded."


def _revoke(deps: Deps, actor: str, request_id: int) -> str:
    view = requests.end_early(deps, actor, request_id)
    return f"🛑 Access for request #{view.id} is {view.status.value.replace('_', ' ')}."


def _withdraw(deps: Deps, actor: str, request_id: int) -> str:
    view = requests.withdraw(deps, actor, request_id)
    return f"↩️ Request #{view.id} is withdrawn; nobody will be asked to decide it."


CLICKS: dict[ActionId, Callable[[Deps, str, int], str]] = {
    ActionId.APPROVE: _approve,
    ActionId.REVOKE: _revoke,
    ActionId.WITHDRAW: _withdraw,
}


# The buttons that ask for words first: the form each opens.
FORMS: dict[ActionId, Callable[[RequestView, str], modals.View]] = {
    ActionId.DENY: modals.deny_form,
    ActionId.APPROVE_WITH_COMMENT: modals.approve_form,
}


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    for action_id, work in CLICKS.items():
        app.action(action_id.value)(listener(deps, limiter, later, _on_request(work)))
    for action_id, form in FORMS.items():
        app.action(action_id.value)(listener(deps, limiter, later, _opening(form)))


def _on_request(work: Callable[[Deps, str, int], str]) -> Work:
    return lambda deps, client, actor, body, action: work(deps, actor, request_id(action))


def _opening(form: Callable[[RequestView, str], modals.View]) -> Work:
    def open_decision_form(
        deps: Deps, client: WebClient, actor: str, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        """Open the form, or refuse as the submission would; None: the form is what the person sees next."""
        current = _decidable(deps, actor, request_id(action))
        open_form(client, body.get("trigger_id"), form(current, clicked_in(body, actor)), what="a decision form")

    return open_decision_form


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
