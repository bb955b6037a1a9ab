"""The Bolt app: a few lines that wire listeners to services."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.services.deps import Deps
from bot.slack import listeners
from bot.slack.retry import SlackRetry

DEFAULT_API_URL = "https://slack.com/api/"


def web_client(token: str, api_url: str | None) -> WebClient:
    return WebClient(token=token, base_url=api_url or DEFAULT_API_URL, timeout=10, retry_handlers=[SlackRetry()])


def build_app(client: WebClient, signing_secret: str | None, deps: Deps) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=True,  # a wrong token stops start-up instead of every later call
        request_verification_enabled=signing_secret is not None,  # Socket Mode: the connection is the proof
        ignoring_self_events_enabled=True,
    )
    listeners.register(app, deps)
    return app
