"""Button clicks. The actor is the payload's user; a button's value is only an opaque request id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.domain.rules import Refused
from bot.services import decisions, requests
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack.ids import ActionId
from bot.slack.listeners.commands import answer, slowed_down


def _request_id(action: dict[str, Any]) -> int:
    value = str(action.get("value") or "")
    if not (value.isascii() and value.isdigit()) or len(value) > 9:  # "²".isdigit(); PostgreSQL ids are int4
        raise Refused("That button does not belong to a Breakglass request; nothing was done.")
    return int(value)


def _approve(deps: Deps, actor: str, request_id: int) -> str:
    view = decisions.decide(deps, actor, request_id, approve=True)
    return f"👍 Your approval of request #{view.id} is recorded."


def _deny(deps: Deps, actor: str, request_id: int) -> str:
    view = decisions.decide(deps, actor, request_id, approve=False)
    return f"⛔ You denied request #{view.id}."


def _revoke(deps: Deps, actor: str, request_id: int) -> str:
    view = requests.end_early(deps, actor, request_id)
    return f"🛑 Access for request #{view.id} is {view.status.value.replace('_', ' ')}."


CLICKS: dict[ActionId, Callable[[Deps, str, int], str]] = {
    ActionId.APPROVE: _approve,
    ActionId.DENY: _deny,
    ActionId.REVOKE: _revoke,
}


def register(app: App, deps: Deps, limiter: RateLimiter) -> None:
    for action_id, work in CLICKS.items():
        app.action(action_id.value)(_listener(deps, limiter, work))


def _listener(deps: Deps, limiter: RateLimiter, work: Callable[[Deps, str, int], str]) -> Callable[..., None]:
    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        actor = body["user"]["id"]
        if slowed_down(deps, limiter, actor, respond):
            return
        answer(respond, lambda: work(deps, actor, _request_id(action)))

    return on_click
