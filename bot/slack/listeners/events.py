"""Events from Slack: a person opening the bot's Home tab.

Bolt acknowledges an event before its listener runs; the listener only hands the person over to the Home tab worker
(``deps.homes``, bot/slack/home_refresh.py), which records the visit and publishes their page from its own thread.
So Slack never waits, and a flood of openings costs one page per person per round, not one database read each. An
opening is never refused for rate: it reads, changes nothing, and is coalesced already.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import App

from bot.services.deps import Deps
from bot.services.guard import RateLimiter

_USER = re.compile(r"[UW][A-Z0-9]{2,20}")  # as Slack's user ids are shaped


def register(app: App, deps: Deps, limiter: RateLimiter) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab") != "home":  # the Messages tab is the DM, which needs nothing from us
            return
        user = event.get("user")
        if not isinstance(user, str) or not _USER.fullmatch(user) or event.get("bot_id") or _is_bot(body, user):
            return
        deps.homes.opened(user)  # only the person who opened it: a page is published for them and nobody else


def _is_bot(body: dict[str, Any], user: str) -> bool:
    """Whether ``user`` is this app's own bot user (Slack names it in the event's authorizations)."""
    authorizations = body.get("authorizations")
    if not isinstance(authorizations, list):
        return False
    return any(isinstance(a, dict) and a.get("is_bot") and a.get("user_id") == user for a in authorizations)
