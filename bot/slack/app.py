"""The Bolt app: a few lines that wire listeners to services."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import App
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped, warning_token_skipped
from slack_sdk import WebClient

from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.services.ports import Metrics
from bot.slack import listeners, metered
from bot.slack.after_ack import Later
from bot.slack.gate import Home, workspace_gate
from bot.slack.link import SlackLink
from bot.slack.retry import SlackRetry

DEFAULT_API_URL = "https://slack.com/api/"


def web_client(
    token: str, api_url: str | None, metrics: Metrics | None = None, before_call: Callable[[], None] | None = None
) -> WebClient:
    """The bot's client; with ``metrics``, one that counts its calls (bot/slack/metered.py)."""
    client = WebClient(token=token, base_url=api_url or DEFAULT_API_URL, timeout=10, retry_handlers=[SlackRetry()])
    return client if metrics is None else metered.metered(client, metrics, before_call)


def home_from(team_id: str | None, enterprise_id: str | None) -> Home | None:
    """The workspace as configured (SLACK_TEAM_ID, SLACK_ENTERPRISE_ID), or None to learn it from the bot token."""
    if team_id or enterprise_id:
        return Home(team_id, enterprise_id, org_wide=team_id is None)
    return None


class _UnusedTokenWarning(logging.Filter):
    """Bolt warns that the bot token goes unused when authorization is given: here authorization hands every
    request that token, so the warning would only mislead whoever reads the log."""

    UNUSED = frozenset({warning_client_prioritized_and_token_skipped(), warning_token_skipped()})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.UNUSED


_NO_UNUSED_TOKEN_WARNING = _UnusedTokenWarning()


def build_app(
    client: WebClient,
    signing_secret: str | None,
    deps: Deps,
    link: SlackLink,
    later: Later,
    before_call: Callable[[], None] | None = None,
) -> App:
    """``later`` runs what each listener does after its ack (bot/slack/after_ack.py): Bolt's own pool only acks.
    ``before_call`` runs before each Slack call the listeners' clients make."""
    # The token is checked by the link at start (a refused token stops start-up there): Bolt's own check would make
    # an unreachable Slack fatal, and its lazy one would call Slack in the middle of a request. So authorization comes
    # from the link, which hands each request the token; Bolt's warnings that the token goes unused are dropped.
    logging.getLogger("slack_bolt.App").addFilter(_NO_UNUSED_TOKEN_WARNING)
    app = App(
        client=client,
        signing_secret=signing_secret,
        authorize=lambda enterprise_id, team_id, user_id: link.authorize(enterprise_id, team_id, user_id),
        # The gate runs before authorization, so nothing is done for any workspace while ours is unknown.
        before_authorize=workspace_gate(lambda: link.home, deps),
        request_verification_enabled=signing_secret is not None,  # Socket Mode: the connection is the proof
        ignoring_self_events_enabled=True,
        # Each listener acks and hands its work to ``later``, so it returns at once: Bolt may run it in the request's
        # own thread and answer when it returns, instead of handing it to a pool and polling every 10 ms for the ack
        # (slack_bolt/listener/thread_runner.py), which was most of an ack's time under a burst.
        process_before_response=True,
    )
    app.use(metered.middleware(lambda: deps.metrics, before_call))  # Bolt's per-request clients count their calls too
    listeners.register(app, deps, RateLimiter(deps.tuning.actions_per_minute, deps.clock), later)
    return app
