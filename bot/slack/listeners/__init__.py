"""Bolt listeners, grouped by payload kind. Each acknowledges first, then calls one service and renders."""

from __future__ import annotations

from slack_bolt import App

from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack.listeners import actions, commands, events, more_time, request_form, reviews, views


def register(app: App, deps: Deps, limiter: RateLimiter) -> None:
    commands.register(app, deps, limiter)
    actions.register(app, deps, limiter)
    views.register(app, deps, limiter)
    events.register(app, deps, limiter)  # app_home_opened: the Home tab
    reviews.register(app, deps, limiter)  # the review form: its buttons and its submission
    more_time.register(app, deps, limiter)  # the more-time form and the extension's Approve / Deny buttons
    request_form.register(app, deps, limiter)  # the request form: opening it, its selects and its submission
