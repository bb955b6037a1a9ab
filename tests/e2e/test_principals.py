"""Who a requester becomes on the backend: mapped when they ask, refused at once when they cannot be mapped,
shown to approvers, and handed to the adapter; one-time credentials reach the requester and nothing else."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import Policy, parse_policy
from bot.slack.ids import ActionId
from tests.e2e.conftest import POLICY
from tests.e2e.helpers import ALICE, BOB, DAVE, audit_actions, dm_texts

NO_EMAIL = "U0NOMAIL"
ONE_TIME = "pw-7Yq2-only-in-the-dm"

EXTRA = """\
  dba-console:
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
    users:
      U0BOB: bob_dba
    approvers: [U0ALICE01]
  reports-db:
    adapter: webhook
    principal: "ro_{email_local}"
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
    approvers: [U0ALICE01]
  vault:
    adapter: command
    principal: "{slack_name}"
    params:
      grant: [PYTHON, SCRIPT]
      revoke: [PYTHON, SCRIPT]
    approvers: [U0ALICE01]
"""


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    script = tmp_path / "vault.py"
    script.write_text(
        "import json, sys\n"
        "event = json.load(sys.stdin)\n"
        f"print(json.dumps({{'data': {{'user': event['principal']}}, 'credentials': {ONE_TIME!r}}}))\n"
    )
    extra = EXTRA.replace("PYTHON", sys.executable).replace("SCRIPT", str(script))
    return parse_policy(POLICY + extra)


@pytest.fixture
def bot(make_bot: Callable[..., LocalBot], policy: Policy) -> LocalBot:
    running = make_bot(policy=policy)
    running.slack.add_user(NO_EMAIL, "nomail", email=None, real_name="No Mail")
    return running


def test_only_people_in_the_users_map_may_ask_and_they_get_their_mapped_identity(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    refused = bot.command(DAVE, "dba-console 30m vacuum stuck")
    assert refused.status == 200
    assert "only admits the people listed under its `users:`" in (refused.answer or refused.ack)
    assert bot.slack.posts_to("C0APPROVALS") == []
    assert ("request_refused", DAVE) in audit_actions(bot, None)

    bot.command(BOB, "dba-console 30m vacuum stuck")
    assert "as bob_dba" in str(bot.request_message(1)["blocks"])  # type: ignore[index]
    bot.click(ALICE, ActionId.APPROVE, 1)
    [grant] = receiver.wait_for(1)
    assert grant.body["principal"] == "bob_dba"


def test_a_template_needs_the_profile_field_it_names(bot: LocalBot, receiver: WebhookReceiver) -> None:
    refused = bot.command(NO_EMAIL, "reports-db 30m monthly numbers")
    answer = refused.answer or refused.ack
    assert "names people by ro_{email_local}, but your Slack profile has no" in answer
    assert "email address" in answer

    bot.command(BOB, "reports-db 30m monthly numbers")
    bot.click(ALICE, ActionId.APPROVE, 1)
    [grant] = receiver.wait_for(1)
    assert grant.body["principal"] == "ro_bob"


def test_one_time_credentials_go_to_the_requester_only_and_are_stored_nowhere(bot: LocalBot, database_url: str) -> None:
    bot.command(BOB, "vault 30m rotate the signing key")
    bot.click(ALICE, ActionId.APPROVE, 1)

    assert any(ONE_TIME in dm and "one-time credentials for *vault*" in dm for dm in dm_texts(bot, BOB))
    carrying = [call for call in bot.slack.calls() if ONE_TIME in json.dumps(call.args, ensure_ascii=False)]
    assert len(carrying) == 1 and carrying[0] in bot.slack.dms(BOB)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        for table in ("requests", "decisions", "reviews", "audit_events"):
            rows = connection.execute(text(f"SELECT * FROM {table}")).all()
            assert ONE_TIME not in repr(rows), f"the one-time secret is stored in {table}"
        receipt = connection.execute(text("SELECT receipt FROM requests")).scalar_one()
    engine.dispose()
    assert "bob" in str(receipt)  # principal {slack_name} reached the program
