"""A backend that says "revoked" but keeps the access: the real bot over HTTP asks the backend afterwards, shows the
request as a failing revoke, retries it, alerts after N attempts, and never shows it expired until the access is
really gone. A receiver that cannot answer the question is "cannot tell", never "gone"."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, audit_actions, channel_texts, dm_texts, state, view
from tests.e2e.pg_backend import PgBackend, pg_backend_fixture  # noqa: F401 (the pg_backend fixture)
from tests.e2e.test_failing_backend import approved, newest_request

AUDIT = "C0SECURITY"
STILL_THERE = "the backend said revoked but bob still has access"
ALERT_AFTER = 3
BACKOFF = timedelta(seconds=10)

VERIFYING = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: webhook
    principal: "{email_local}"
    params: {url: "${WEBHOOK_URL}", secret: "${BREAKGLASS_WEBHOOK_SECRET}", timeout: 2, verify: true}
    approvers: [U0ALICE01]
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(VERIFYING)


def tuning(**changes: object) -> Tuning:
    values: dict[str, object] = {
        "grant_retry_pause": 0.01,
        "revoke_alert_after": ALERT_AFTER,
        "backoff_base": BACKOFF,
        "jitter": 0,  # retries land exactly on the backoff, so the test moves time by it
    }
    return Tuning(**(values | changes))  # type: ignore[arg-type]


def active_grant(bot: LocalBot) -> int:
    return approved(bot, "orders-db 30m INC-1 checkout failing")


@pytest.fixture
def verifying_bot(make_bot: Callable[..., LocalBot]) -> Iterator[LocalBot]:
    yield make_bot(tuning=tuning())


def test_a_revoke_the_backend_did_not_carry_out_is_failed_retried_alerted_and_never_shown_expired(
    verifying_bot: LocalBot, receiver: WebhookReceiver
) -> None:
    bot = verifying_bot
    request_id = active_grant(bot)
    receiver.ignore_revokes()  # answers 200 to every revoke, and keeps the access

    bot.advance(timedelta(minutes=30))
    attempts = 1
    while attempts <= ALERT_AFTER + 1:
        current = view(bot, request_id)
        assert current.status is Status.REVOKE_FAILED and current.revoke_attempts == attempts
        assert current.failure == STILL_THERE
        assert f"Revoke failing (attempt {attempts}), retrying: {STILL_THERE}" in state(bot.request_message(request_id))
        assert receiver.has_access("bob")
        bot.advance(BACKOFF * 2 ** (attempts - 1))  # exactly the next backoff: one more attempt
        attempts += 1
        assert len(receiver.events("revoke")) == attempts

    # Every revoke was acknowledged and then checked; each check found the access, and nothing settled.
    assert all(call.status == 200 for call in receiver.events("revoke"))
    assert [call.body["principal"] for call in receiver.events("verify")] == ["bob"] * attempts
    actions = [action for action, _ in audit_actions(bot, request_id)]
    assert "expired" not in actions and actions.count("revoke_failed") == attempts
    [alert] = [text for text in channel_texts(bot, AUDIT) if "keeps failing" in text]
    assert f"{ALERT_AFTER} attempts" in alert and STILL_THERE in alert
    assert not any("has expired" in text for text in dm_texts(bot, BOB))

    # The backend really lets go: the next attempt is confirmed, and only then is the grant over.
    receiver.ignore_revokes(False)
    bot.advance(BACKOFF * 2 ** (attempts - 1))
    current = view(bot, request_id)
    assert current.status is Status.EXPIRED and not receiver.has_access("bob")
    assert [action for action, _ in audit_actions(bot, request_id)][-1] == "expired"
    assert any("revoked at last" in text for text in channel_texts(bot, AUDIT))
    assert any("has expired" in text for text in dm_texts(bot, BOB))
    assert WEBHOOK_SECRET not in " ".join(channel_texts(bot, AUDIT) + dm_texts(bot, BOB))


def test_a_receiver_that_does_not_know_verify_cannot_confirm_a_revoke(policy: Policy, database_url: str) -> None:
    with WebhookReceiver(WEBHOOK_SECRET, knows=("grant", "revoke", "extend")) as old:
        environ = {"WEBHOOK_URL": old.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
        with LocalBot(policy, database_url, environ=environ, tuning=tuning()) as bot:
            request_id = active_grant(bot)
            bot.advance(timedelta(minutes=30))
            current = view(bot, request_id)
            # It did revoke; but "unknown event" is not "gone": the request keeps failing, loudly, never expired.
            assert not old.has_access("bob")
            assert current.status is Status.REVOKE_FAILED
            assert "does not take `verify`" in (current.failure or "")
            assert "expired" not in [action for action, _ in audit_actions(bot, request_id)]


def test_the_undo_of_a_doubtful_grant_is_verified_too(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    # The undo and its check answer at once: a second of limit holds them on a busy machine, and the hung grant
    # still outlasts it.
    bot = make_bot(tuning=tuning(call_timeout=1.0, grant_attempts=1))
    bot.command(BOB, "orders-db 30m INC-1 checkout failing")
    request_id = newest_request(bot)
    receiver.hang(2.5)  # the grant lands on the receiver, but its answer comes after the bot gave up
    receiver.ignore_revokes()
    bot.click(ALICE, ActionId.APPROVE, request_id)
    receiver.wait_until_idle(timeout=5)
    receiver.hang(0)
    assert receiver.has_access("bob")

    bot.advance(BACKOFF)  # the undo is retried; the receiver acknowledges it and keeps the access
    current = view(bot, request_id)
    assert current.status is Status.REVOKE_FAILED and current.end_reason == "grant_failed"
    assert current.failure == STILL_THERE

    receiver.ignore_revokes(False)
    bot.advance(BACKOFF * 2)
    current = view(bot, request_id)
    assert current.status is Status.GRANT_FAILED and not receiver.has_access("bob")
    assert [action for action, _ in audit_actions(bot, request_id)][-1] == "grant_undone"


# -- on the real PostgreSQL adapter: a second path to the same role --------------------------------------------------


def test_a_second_path_to_the_role_keeps_the_revoke_failing_until_it_is_gone_too(
    make_bot: Callable[..., LocalBot], pg_backend: PgBackend
) -> None:
    login = pg_backend.login("bge_bob")
    policy = parse_policy(
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\nresources:\n"
        + pg_backend.resource_yaml("orders-db", {BOB: login})
    )
    bot = make_bot(policy=policy, tuning=tuning())
    request_id = active_grant(bot)
    assert pg_backend.holds(login)
    # Someone also gave the login a team role that contains the break-glass role: REVOKE removes only the bot's path.
    team = pg_backend.role_made("bge_team")
    pg_backend.grant(pg_backend.role, team)
    pg_backend.grant(team, login)

    bot.advance(timedelta(minutes=30))
    current = view(bot, request_id)
    assert current.status is Status.REVOKE_FAILED
    assert current.failure == f"the backend said revoked but {login} still has access"
    assert pg_backend.holds(login)
    for attempt in range(2, ALERT_AFTER + 1):
        bot.advance(BACKOFF * 2 ** (attempt - 2))
        assert view(bot, request_id).revoke_attempts == attempt
    assert view(bot, request_id).status is Status.REVOKE_FAILED
    assert any("keeps failing" in text for text in channel_texts(bot, AUDIT))
    assert "expired" not in [action for action, _ in audit_actions(bot, request_id)]

    pg_backend.revoke(team, login)  # the second path goes: the next attempt is confirmed
    bot.advance(BACKOFF * 2 ** (ALERT_AFTER - 1))
    assert view(bot, request_id).status is Status.EXPIRED
    assert not pg_backend.holds(login)


# -- the command adapter: a revoke program that exits 0 and does nothing ---------------------------------------------

DOOR = """\
import json, os, sys
event = json.load(sys.stdin)
keys = os.environ["DOOR_KEYS"]
key = os.path.join(keys, event["principal"])
if event["event"] == "grant":
    open(key, "w").close()
elif event["event"] == "revoke":
    if not os.path.exists(os.path.join(keys, "lazy")):  # lazy: says done, does nothing
        if os.path.exists(key):
            os.remove(key)
elif event["event"] == "verify":
    print(json.dumps({"active": os.path.exists(key)}))
"""


def test_a_revoke_program_that_exits_0_and_does_nothing_is_caught(
    make_bot: Callable[..., LocalBot], tmp_path: Path
) -> None:
    door, keys = tmp_path / "door.py", tmp_path / "keys"
    door.write_text(DOOR)
    keys.mkdir()
    program = f"[{sys.executable!r}, {str(door)!r}]"
    policy = parse_policy(
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\nresources:\n  orders-db:\n    adapter: command\n"
        '    principal: "{email_local}"\n'
        f"    params: {{grant: {program}, revoke: {program}, verify: {program}, env: {{DOOR_KEYS: {str(keys)!r}}}}}\n"
        "    approvers: [U0ALICE01]\n"
    )
    bot = make_bot(policy=policy, tuning=tuning())
    request_id = active_grant(bot)
    (keys / "lazy").touch()

    bot.advance(timedelta(minutes=30))
    current = view(bot, request_id)
    assert current.status is Status.REVOKE_FAILED and current.failure == STILL_THERE
    assert (keys / "bob").exists()
    bot.advance(BACKOFF)
    assert view(bot, request_id).revoke_attempts == 2 and view(bot, request_id).status is Status.REVOKE_FAILED

    (keys / "lazy").unlink()
    bot.advance(BACKOFF * 2)
    assert view(bot, request_id).status is Status.EXPIRED and not (keys / "bob").exists()
