"""Bolt listeners, grouped by payload kind. Each acknowledges first, then calls one service and renders."""

from __future__ import annotations

from slack_bolt import App

from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack.listeners import actions, commands, views


def register(app: App, deps: Deps, limiter: RateLimiter) -> None:
    commands.register(app, deps, limiter)
    actions.register(app, deps, limiter)
    views.register(app, deps, limiter)
