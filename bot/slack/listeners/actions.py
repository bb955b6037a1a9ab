"""Button clicks. The actor is the payload's user; a button's value is only an opaque request id."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.domain.rules import Refused
from bot.services import decisions, requests
from bot.services.deps import Deps
from bot.slack.ids import ActionId
from bot.slack.listeners.commands import answer


def _request_id(action: dict[str, Any]) -> int:
    value = str(action.get("value") or "")
    if not value.isdigit() or len(value) > 12:
        raise Refused("That button does not belong to a Breakglass request.")
    return int(value)


def register(app: App, deps: Deps) -> None:
    @app.action(ActionId.APPROVE.value)
    def on_approve(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        actor = body["user"]["id"]

        def work() -> str:
            view = decisions.decide(deps, actor, _request_id(action), approve=True)
            return f"👍 Your approval of request #{view.id} is recorded."

        answer(respond, work)

    @app.action(ActionId.DENY.value)
    def on_deny(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        actor = body["user"]["id"]

        def work() -> str:
            view = decisions.decide(deps, actor, _request_id(action), approve=False)
            return f"⛔ You denied request #{view.id}."

        answer(respond, work)

    @app.action(ActionId.REVOKE.value)
    def on_revoke(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        actor = body["user"]["id"]

        def work() -> str:
            view = requests.end_early(deps, actor, _request_id(action))
            return f"🛑 Access for request #{view.id} is {view.status.value.replace('_', ' ')}."

        answer(respond, work)
