"""The Bolt app: a few lines that wire listeners to services."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack import listeners
from bot.slack.gate import Home, workspace_gate
from bot.slack.retry import SlackRetry

DEFAULT_API_URL = "https://slack.com/api/"


def web_client(token: str, api_url: str | None) -> WebClient:
    return WebClient(token=token, base_url=api_url or DEFAULT_API_URL, timeout=10, retry_handlers=[SlackRetry()])


def home_of(client: WebClient, team_id: str | None, enterprise_id: str | None) -> Home:
    """The workspace this bot serves: as configured, or as Slack says the bot token's install is."""
    if team_id or enterprise_id:
        return Home(team_id, enterprise_id, org_wide=team_id is None)
    auth = client.auth_test()
    return Home(auth.get("team_id"), auth.get("enterprise_id"), org_wide=bool(auth.get("is_enterprise_install")))


def build_app(client: WebClient, signing_secret: str | None, deps: Deps, home: Home) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=True,  # a wrong token stops start-up instead of every later call
        request_verification_enabled=signing_secret is not None,  # Socket Mode: the connection is the proof
        ignoring_self_events_enabled=True,
    )
    app.use(workspace_gate(home, deps))
    listeners.register(app, deps, RateLimiter(deps.tuning.actions_per_minute, deps.clock))
    return app
