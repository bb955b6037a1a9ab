"""The leak scan every end-to-end test ends with is wired to what the bot really writes. A value the bot has no
reason to hide (typed by a person, so the bot cannot know it is secret) is planted and must be found in the
database, in Slack, at the backend and in the logs; a configured secret logged through the bot's logging must not."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.devtools.local_bot import BOT_TOKEN, LocalBot
from bot.slack.ids import ActionId
from tests.e2e.conftest import LeakScan
from tests.e2e.helpers import ALICE, BOB

PLANTED = "planted-in-a-reason-5e8d2c1a"


def test_the_scan_sees_the_database_slack_the_backend_and_the_logs(
    make_bot: Callable[..., LocalBot], leak_scan: LeakScan
) -> None:
    leak_scan.add_secret("THE_PLANTED_VALUE", PLANTED)
    bot = make_bot()
    bot.command(BOB, f"orders-db 30m INC-9 pasting {PLANTED} by mistake")
    bot.click(ALICE, ActionId.APPROVE, 1)
    logging.getLogger("breakglass.tests").debug("the token is %s; the reason says %s", BOT_TOKEN, PLANTED)
    bot.stop()

    try:
        findings = leak_scan.scan_everything()
    finally:  # planted on purpose: the fixture's own check at teardown must not fail the test
        del leak_scan.secrets[PLANTED]
        leak_scan.findings.clear()
    planted = [finding.removeprefix("THE_PLANTED_VALUE in ") for finding in findings]
    assert any(place.startswith("database requests.reason ") for place in planted), findings
    assert any(place.startswith("database audit_events.reason ") for place in planted), findings
    assert any(place.startswith("Slack call ") for place in planted), findings
    assert any(place.startswith("webhook call ") for place in planted), findings
    assert any(place.startswith("log record ") for place in planted), findings
    # The same log record, through the bot's redacting filter: the configured token is gone from it.
    assert not any("SLACK_BOT_TOKEN" in finding for finding in findings), findings
    assert any("the token is [redacted]; the reason says" in line for _, line in leak_scan.capture.lines)
    assert all(PLANTED not in finding for finding in findings)
