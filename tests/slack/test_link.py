"""The link to Slack's Web API, against the Slack stand-in: what it learns, and what stops start-up."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from bot.devtools.slack_standin import BOT_USER_ID, TEAM_ID, SlackStandIn
from bot.slack.gate import Home
from bot.slack.link import SlackLink, TokenRefused

TOKEN = "xoxb-link-test-token-0123"


def test_the_workspace_is_learnt_from_the_token_unless_configured() -> None:
    with SlackStandIn(token=TOKEN) as slack:
        learnt = SlackLink.for_token(TOKEN, slack.api_url)
        configured = SlackLink.for_token(TOKEN, slack.api_url, Home("T0CONFIGURED"))
        assert learnt.home is None and not learnt.reachable  # nothing is assumed before Slack answers

        assert learnt.connect() and configured.connect()

    assert learnt.reachable and learnt.home == Home(TEAM_ID)
    assert learnt.authorize(None, TEAM_ID, "U0BOB").bot_user_id == BOT_USER_ID
    assert configured.home == Home("T0CONFIGURED")  # the setting wins over what the token says


def test_a_refused_token_stops_start_up_and_later_only_degrades(caplog: pytest.LogCaptureFixture) -> None:
    with SlackStandIn(token="xoxb-another-token-4567") as slack:
        link = SlackLink.for_token(TOKEN, slack.api_url)
        with pytest.raises(TokenRefused, match="invalid_auth"):
            link.connect()

    with SlackStandIn(token=TOKEN) as slack:
        running = SlackLink.for_token(TOKEN, slack.api_url)
        assert running.connect()
        port = urlsplit(slack.api_url).port
    with SlackStandIn(token="xoxb-another-token-4567", port=port or 0) as rotated:  # the token was revoked
        caplog.set_level(logging.WARNING)
        assert not running.check() and not running.check()  # degraded, not a crash, and said once
        assert [call.error for call in rotated.calls()] == ["invalid_auth", "invalid_auth"]
    assert not running.reachable and running.home == Home(TEAM_ID)
    said = [record.getMessage() for record in caplog.records if record.name == "breakglass.slack"]
    assert said == ["Slack is unreachable (Slack refused the bot token (invalid_auth)); Breakglass keeps trying"]
