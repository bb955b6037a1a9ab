"""Bolt listeners, grouped by payload kind. Each acknowledges first, then hands ``later`` the rest: calling one
service and rendering its answer (bot/slack/after_ack.py)."""

from __future__ import annotations

from slack_bolt import App

from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack.after_ack import Later
from bot.slack.listeners import actions, commands, events, more_time, request_form, reviews, views


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    commands.register(app, deps, limiter, later)
    actions.register(app, deps, limiter, later)
    views.register(app, deps, limiter, later)
    events.register(app, deps, limiter)  # app_home_opened: the Home tab (its worker already runs apart)
    reviews.register(app, deps, limiter, later)  # the review form: its buttons and its submission
    more_time.register(app, deps, limiter, later)  # the more-time form and the extension's Approve / Deny buttons
    request_form.register(app, deps, limiter, later)  # the request form: opening it, its selects and its submission
