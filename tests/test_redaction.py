"""Secrets stay out of what the bot writes: the redactor, the logging filter, stored failure texts end to end, and
the scanner the end-to-end suite relies on (shown to catch a planted secret in every place it looks)."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretBytes, SecretStr
from slack_sdk import WebClient
from sqlalchemy import create_engine, insert, select, text

from bot.adapters import registry
from bot.adapters.base import AdapterParams, redact
from bot.devtools.local_bot import BOT_TOKEN, SIGNING_SECRET, LocalBot
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.redaction import (
    MIN_ANYWHERE,
    REDACTED,
    RedactingFilter,
    Redactor,
    blank_password_literals,
    collect,
    install,
    log_uncaught,
    referenced_secrets,
    secret_values,
)
from bot.settings import Settings
from bot.slack.ids import ActionId
from bot.store import schema
from bot.store.db import make_engine
from bot.store.models import AuditEvent, Request
from tests.e2e.conftest import POLICY, WEBHOOK_SECRET, LeakScan

LONG = "s3cr3t-Value-0123456789"
AUDIT_KEY = "audit-key-for-redaction-tests-0123456789abcdef"

# -- the redactor ------------------------------------------------------------------------------------------------


def test_long_secrets_go_anywhere_short_ones_only_as_tokens_and_tiny_ones_are_left() -> None:
    redactor = Redactor([LONG, "hunter2", "abc", None, ""])
    assert (
        redactor.scrub(f"url=https://x/?k={LONG}&a=1 and x{LONG}y")
        == f"url=https://x/?k={REDACTED}&a=1 and x{REDACTED}y"
    )
    assert redactor.scrub("password=hunter2; 'hunter2'") == f"password={REDACTED}; '{REDACTED}'"
    assert redactor.scrub("hunter22 xhunter2 hunter2_x") == "hunter22 xhunter2 hunter2_x"  # part of other words
    assert redactor.scrub("abc def abc") == "abc def abc"  # too short to tell apart from text
    assert redactor.secrets == {LONG, "hunter2"}
    assert LONG not in repr(redactor) and "hunter2" not in repr(redactor)


def test_a_secret_is_found_json_escaped_url_encoded_and_inside_a_longer_one() -> None:
    odd = 'p"q/r s&t\\9é'
    longer = LONG + "-and-more"
    redactor = Redactor([odd, LONG, longer])
    quoted = json.dumps({"password": odd})
    assert redactor.scrub(quoted) == json.dumps({"password": REDACTED})
    assert redactor.scrub(json.dumps({"password": odd}, ensure_ascii=False)) == json.dumps({"password": REDACTED})
    assert redactor.scrub("dsn?password=p%22q%2Fr%20s%26t%5C9%C3%A9") == f"dsn?password={REDACTED}"
    assert redactor.scrub("form: p%22q%2Fr+s%26t%5C9%C3%A9") == f"form: {REDACTED}"
    assert redactor.scrub(f"{longer} {LONG}") == f"{REDACTED} {REDACTED}"  # the longer one whole, no tail left


def test_overlapping_secrets_leave_no_piece_behind_whichever_is_met_first() -> None:
    # A command's PGHOST is a secret of its own, and sits inside its DATABASE_URL: the DSN must go whole, or the
    # password in it survives next to a blanked host.
    dsn = "postgresql://app:PW@db.internal/app"
    redactor = Redactor(["db.internal", dsn])
    assert redactor.scrub(f"cannot connect to {dsn} (db.internal)") == f"cannot connect to {REDACTED} ({REDACTED})"
    # Two secrets that share only a piece: the one met first must not leave the other's tail.
    head, tail = "token-head-0123", "0123-tail-of-the-key"
    assert Redactor([head, tail]).scrub("x token-head-0123-tail-of-the-key y") == f"x {REDACTED} y"
    assert Redactor([head, tail]).scrub(f"{head} {tail}") == f"{REDACTED} {REDACTED}"  # apart, each on its own


def test_scrub_data_reaches_into_json_like_values() -> None:
    redactor = Redactor([LONG])
    data = {"user": "bob", LONG: [1, {"note": f"was {LONG}"}], "n": None}
    assert redactor.scrub_data(data) == {"user": "bob", REDACTED: [1, {"note": f"was {REDACTED}"}], "n": None}


SECRET_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=8, max_size=40)


@given(secret=SECRET_TEXT, around=st.lists(st.text(max_size=30), min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_no_occurrence_of_a_secret_survives(secret: str, around: list[str]) -> None:
    """Whatever surrounds it, and however often it appears, no copy of the secret is left. (Markers are swapped for
    a character the secret lacks first: a secret that spells part of "[redacted]" is not a leak.)"""
    planted = secret.join(around) + secret
    scrubbed = Redactor([secret]).scrub(planted)
    assert secret not in scrubbed.replace(REDACTED, "\x00")


# No "[" (a leftover can never spell a marker) and no space (the filler around the text).
CHAINED = st.characters(blacklist_characters="[ \x00", blacklist_categories=("Cs",))


@st.composite
def chained_secrets(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A text and secrets of MIN_ANYWHERE characters or more that cover it whole, each overlapping, containing or
    touching the ones before it, as a host sits inside a DSN or one token's end is another's start."""
    text = draw(st.text(CHAINED, min_size=MIN_ANYWHERE, max_size=60))
    found: list[str] = []
    covered = 0
    while covered < len(text):
        size = draw(st.integers(MIN_ANYWHERE, len(text)))
        begin = min(draw(st.integers(max(0, covered - size + 1), covered)), len(text) - size)  # never a gap
        found.append(text[begin : begin + size])
        covered = max(covered, begin + size)
    return text, found


@given(case=chained_secrets())
@settings(max_examples=300, deadline=None)
def test_nothing_of_overlapping_secrets_survives(case: tuple[str, list[str]]) -> None:
    """Every character of every occurrence of every secret long enough to be redacted anywhere goes, however
    the occurrences overlap: what is left is only the text around them."""
    text, found = case
    scrubbed = Redactor(found).scrub(f" {text} ")
    assert scrubbed.replace(REDACTED, "").strip(" ") == "", scrubbed
    assert REDACTED in scrubbed


# -- finding every secret ----------------------------------------------------------------------------------------


class Inner(BaseModel):
    token: SecretStr
    label: str = "visible"


class NestedParams(AdapterParams):
    inner: Inner
    many: list[Inner]
    by_name: dict[str, SecretStr]
    deep: dict[str, list[Inner]]
    raw: SecretBytes | None = None
    plain: str = "not a secret"


def test_secrets_are_found_in_nested_models_lists_and_dicts() -> None:
    params = NestedParams(
        inner=Inner(token=SecretStr("t-inner-000")),
        many=[Inner(token=SecretStr("t-many-0000")), Inner(token=SecretStr("t-many-0001"))],
        by_name={"API_KEY": SecretStr("t-by-name-00")},
        deep={"a": [Inner(token=SecretStr("t-deep-0000"))]},
        raw=SecretBytes(b"t-bytes-0000"),
    )
    found = dict(secret_values(params, "resources.x.params"))
    assert found == {
        "resources.x.params.inner.token": "t-inner-000",
        "resources.x.params.many[0].token": "t-many-0000",
        "resources.x.params.many[1].token": "t-many-0001",
        "resources.x.params.by_name.API_KEY": "t-by-name-00",
        "resources.x.params.deep.a[0].token": "t-deep-0000",
        "resources.x.params.raw": "t-bytes-0000",
    }


COLLECT_POLICY = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  hooked:
    adapter: webhook
    approvers: [U0ALICE01]
    params:
      url: ${HOOK_URL}
      secret: ${HOOK_SECRET}
      headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
  program:
    adapter: command
    approvers: [U0ALICE01]
    params:
      grant: [/bin/true]
      revoke: [/bin/true]
      env: {VAULT_PASSWORD: "${VAULT_PASSWORD}", SHORT: "${SHORT_ONE}"}
"""
ENVIRON = {
    "HOOK_URL": "https://hooks.example.com/breakglass",
    "HOOK_SECRET": "hook-secret-0123456789abcdef",
    "HOOK_TOKEN": "hook-bearer-token-9876543210",
    "VAULT_PASSWORD": "vault-password-13579",
    "SHORT_ONE": "q7z",
}


def make_settings(**extra: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_APP_TOKEN="xapp-1-A0123456789-0123456789012-abcdefabcdef",
        BREAKGLASS_AUDIT_KEY=AUDIT_KEY,
        BREAKGLASS_AUDIT_PREVIOUS_KEYS="retired-audit-key-one-0123456789abcdef, retired-audit-key-two-0123456789abcdef",
        DATABASE_URL="postgresql://breakglass:db-password-24680@db.internal/breakglass",
        **extra,
    )


def test_collect_knows_the_settings_the_adapters_and_secret_references(caplog: pytest.LogCaptureFixture) -> None:
    policy = parse_policy(COLLECT_POLICY)
    adapters = registry.build_all(policy, ENVIRON)
    with caplog.at_level(logging.WARNING, logger="breakglass.redaction"):
        redactor = collect(make_settings(), adapters, policy, ENVIRON)
    expected = {
        BOT_TOKEN,
        SIGNING_SECRET,
        "xapp-1-A0123456789-0123456789012-abcdefabcdef",
        AUDIT_KEY,
        "retired-audit-key-one-0123456789abcdef",
        "retired-audit-key-two-0123456789abcdef",
        "db-password-24680",
        ENVIRON["HOOK_SECRET"],  # a SecretStr parameter
        ENVIRON["VAULT_PASSWORD"],  # a SecretStr inside a dict parameter
        ENVIRON["HOOK_TOKEN"],  # a plain header, but filled from a secret-sounding variable
    }
    assert expected <= redactor.secrets
    assert ENVIRON["HOOK_URL"] not in redactor.secrets  # not a secret: URLs stay readable in logs
    for adapter in adapters.values():
        getattr(adapter, "close", lambda: None)()
    # The too-short one is named, never shown.
    assert "resources.program.params.env.SHORT is shorter than 4 characters" in caplog.text
    assert "q7z" not in caplog.text


# -- the logging filter ------------------------------------------------------------------------------------------


@contextmanager
def logged(
    redactor: Redactor, name: str, level: int = logging.DEBUG
) -> Iterator[tuple[io.StringIO, list[logging.LogRecord]]]:
    """Records of logger ``name`` at ``level``, formatted into a buffer through the redacting filter, plus the
    records themselves as the handler saw them."""
    logger = logging.getLogger(name)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    seen: list[logging.LogRecord] = []
    handler.addFilter(lambda record: seen.append(record) or True)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    uninstall = install(redactor, logger)
    try:
        yield buffer, seen
    finally:
        uninstall()
        logger.removeHandler(handler)
        logger.setLevel(before)


def test_the_filter_scrubs_messages_arguments_exceptions_and_stacks() -> None:
    redactor = Redactor([LONG])
    log = logging.getLogger("tests.redaction.filter")
    with logged(redactor, log.name) as (buffer, seen):
        log.info("connecting with %s to %s", LONG, "db")
        log.info(f"literal {LONG}")
        log.info("%(user)s", {"user": "bob", "unused": LONG})
        try:
            raise RuntimeError(f"login refused for password {LONG}")
        except RuntimeError:
            log.exception("backend call failed")
        log.debug("where we are", stack_info=True, extra={"marker": LONG})
    output = buffer.getvalue()
    assert LONG not in output
    assert f"connecting with {REDACTED} to db" in output
    assert f"literal {REDACTED}" in output
    assert f"RuntimeError: login refused for password {REDACTED}" in output
    assert "Stack (most recent call last)" in output
    # The record carries no copy either: not in its arguments, and the exception itself is dropped.
    assert seen[2].args == {"user": "bob", "unused": REDACTED}
    assert seen[3].exc_info is None and REDACTED in seen[3].exc_text


def test_a_broken_format_string_reports_its_arguments_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("tests.redaction.broken")
    log.propagate = False  # pytest's own handler turns logging errors into test errors
    with logged(Redactor([LONG]), log.name):
        log.info("%d attempts", LONG)  # logging prints "--- Logging error ---" with the message and arguments
    reported = capsys.readouterr().err
    assert "Logging error" in reported and REDACTED in reported
    assert LONG not in reported


def test_uncaught_exceptions_go_through_logging_and_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    log_uncaught()

    def crash() -> None:
        raise RuntimeError(f"thread died holding {LONG}")

    with logged(Redactor([LONG]), "breakglass") as (buffer, _):
        try:
            raise ValueError(f"main died holding {LONG}")
        except ValueError as error:
            sys.excepthook(ValueError, error, error.__traceback__)
        worker = threading.Thread(target=crash, name="worker")
        worker.start()
        worker.join()
    output = buffer.getvalue()
    assert f"ValueError: main died holding {REDACTED}" in output
    assert "uncaught RuntimeError in thread worker" in output and f"thread died holding {REDACTED}" in output
    assert LONG not in output


def test_clean_records_pass_untouched_and_uninstalling_takes_the_filter_off() -> None:
    log = logging.getLogger("tests.redaction.untouched")
    with logged(Redactor([LONG]), log.name) as (_, seen):
        [handler] = log.handlers
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        log.info("plain %s", "words")
    assert seen[0].msg == "plain %s" and seen[0].args == ("words",)  # structure kept for handlers that use it
    assert not any(isinstance(f, RedactingFilter) for f in handler.filters)


def _urllib3(secret: str, standin: SlackStandIn) -> None:
    requests.get(f"{standin.base_url}/not-here?token={secret}", timeout=5)


def _slack_sdk(secret: str, standin: SlackStandIn) -> None:
    WebClient(token=BOT_TOKEN, base_url=standin.api_url).chat_postMessage(channel="C0X", text=f"oops {secret}")


def _sqlalchemy(secret: str, standin: SlackStandIn) -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (v TEXT)"))
        connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": secret})
        connection.execute(text("SELECT v FROM t")).all()
    engine.dispose()


@pytest.mark.parametrize(
    ("library", "act"), [("urllib3", _urllib3), ("slack_sdk", _slack_sdk), ("sqlalchemy", _sqlalchemy)]
)
def test_libraries_debug_logs_are_scrubbed(library: str, act: Callable[[str, SlackStandIn], None]) -> None:
    with SlackStandIn(token=BOT_TOKEN) as standin, logged(Redactor([LONG, BOT_TOKEN]), library) as (buffer, _):
        act(LONG, standin)
    output = buffer.getvalue()
    assert REDACTED in output, f"{library} logged nothing that held the secret: the test would prove nothing"
    assert LONG not in output and BOT_TOKEN not in output


# -- stored failure texts, end to end ----------------------------------------------------------------------------

# A backend (or a proxy in front of it) that echoes credentials it has no business knowing: the webhook adapter
# only knows its own secret, so these reach the bot's redactor unredacted.
LEAKY_ANSWER = {"error": f"denied; caller token {BOT_TOKEN}, signing {SIGNING_SECRET}, hmac {WEBHOOK_SECRET}"}
SECRETS = {"bot token": BOT_TOKEN, "signing secret": SIGNING_SECRET, "webhook secret": WEBHOOK_SECRET}


@pytest.fixture
def leaky(database_url: str) -> Iterator[tuple[LocalBot, WebhookReceiver]]:
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
        with LocalBot(parse_policy(POLICY), database_url, environ=environ) as bot:
            yield bot, receiver


def _stored(bot: LocalBot, request_id: int) -> tuple[str, list[str]]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        events = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)).all()
        return request.failure or "", [json.dumps(event.detail) for event in events]


def _slack_texts(bot: LocalBot) -> list[str]:
    return [json.dumps(call.args, ensure_ascii=False) for call in bot.slack.calls()]


@pytest.mark.parametrize(
    ("case", "status"),
    [("grant refused", 403), ("grant failed and undone", 500), ("revoke failed", 500)],
)
def test_a_backend_quoting_secrets_leaves_only_redacted_text_in_the_database_audit_and_slack(
    leaky: tuple[LocalBot, WebhookReceiver], case: str, status: int
) -> None:
    bot, receiver = leaky
    if case != "revoke failed":
        receiver.fail_next(3, status=status, body=LEAKY_ANSWER)  # every grant attempt; the undo then succeeds
    bot.command("U0BOB", "orders-db 30m INC-7 checkout down")
    bot.click("U0ALICE01", ActionId.APPROVE, 1)
    if case == "revoke failed":
        receiver.fail_next(1, status=status, body=LEAKY_ANSWER)
        bot.advance(timedelta(minutes=31))  # expiry: the revoke meets the failure
    failure, audit = _stored(bot, 1)
    slack = _slack_texts(bot)
    assert _status(bot, 1) is (Status.REVOKE_FAILED if case == "revoke failed" else Status.GRANT_FAILED)
    assert REDACTED in failure and f"answered {status}" in failure
    assert any(REDACTED in detail for detail in audit), audit
    assert any(REDACTED in call for call in slack), "the failure was not shown in Slack at all"
    for name, secret in SECRETS.items():
        assert secret not in failure, f"{name} stored in requests.failure"
        assert not any(secret in detail for detail in audit), f"{name} in the audit trail"
        assert not any(secret in call for call in slack), f"{name} sent to Slack"


def _status(bot: LocalBot, request_id: int) -> Status:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        return Status(request.status)


# -- the end-to-end suite's leak scanner catches what it is there to catch ---------------------------------------

PLANTED = "planted-secret-0f1e2d3c4b5a"


def _plant_log(scan: LeakScan, secret: str) -> str:
    with scan.capturing_logs():
        logging.getLogger("some.library").debug("sending %s", secret)
    scan.scan_logs()
    return "log record"


def _plant_slack(scan: LeakScan, secret: str) -> str:
    with SlackStandIn(token=BOT_TOKEN) as standin:
        WebClient(token=BOT_TOKEN, base_url=standin.api_url).chat_postMessage(channel="C0X", text=f"hi {secret}")
    scan.scan_slack(standin)
    return "Slack call 1 (chat.postMessage)"


def _plant_database(scan: LeakScan, secret: str, url: str) -> str:
    engine = make_engine(url)
    schema.upgrade(engine)
    with engine.begin() as connection:
        row = {"at": datetime(2026, 1, 1, tzinfo=UTC), "actor": "U0BOB", "action": "noted", "detail": {"said": secret}}
        connection.execute(insert(AuditEvent), [row])
    engine.dispose()
    scan.scan_database(url)
    return "database audit_events.detail (row 1)"


def _plant_webhook(scan: LeakScan, secret: str) -> str:
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        requests.post(receiver.url, json={"event": "grant", "reason": f"see {secret}"}, timeout=5)
    scan.scan_webhooks(receiver)
    return "webhook call 1 body"


@pytest.mark.parametrize("place", ["log", "slack", "database", "webhook"])
@pytest.mark.parametrize("planted", [True, False])
def test_the_leak_scan_names_a_planted_secret_wherever_it_is(place: str, planted: bool, tmp_path: Path) -> None:
    scan = LeakScan()
    scan.add_secret("THE_PLANTED_SECRET", PLANTED)
    said = PLANTED if planted else "nothing to see"
    url = f"sqlite:///{tmp_path / 'scan.db'}"
    where = {
        "log": lambda: _plant_log(scan, said),
        "slack": lambda: _plant_slack(scan, said),
        "database": lambda: _plant_database(scan, said, url),
        "webhook": lambda: _plant_webhook(scan, said),
    }[place]()
    if not planted:
        assert scan.findings == []  # the same traffic without the secret: nothing found
        return
    assert any(finding.startswith(f"THE_PLANTED_SECRET in {where}") for finding in scan.findings), scan.findings
    assert PLANTED not in " ".join(scan.findings)  # named, never shown


@pytest.mark.parametrize(
    "secrets",
    [
        ("db.internal", "postgresql://app:PW@db.internal/app"),
        ("postgresql://app:PW@db.internal/app", "db.internal"),
        ("app:P", "PW@db"),  # one's end is the other's start
    ],
)
def test_an_adapters_own_redact_leaves_no_piece_of_overlapping_secrets(secrets: tuple[str, ...]) -> None:
    said = redact("connect to postgresql://app:PW@db.internal/app failed", *secrets)

    assert "PW" not in said and said.startswith("connect to ") and said.endswith(" failed")


def test_a_secret_named_only_in_a_levels_params_is_known_to_the_redactor() -> None:
    policy = parse_policy("""
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders:
    adapter: log
    approvers: [U0ALICE01]
    levels:
      read: {}
      write: {params: {token: "${WRITE_TOKEN}"}}
""")
    found = dict(referenced_secrets(policy, {"WRITE_TOKEN": "level-secret-value-123"}))
    assert found == {"resources.orders:write.params ${WRITE_TOKEN}": "level-secret-value-123"}


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("ALTER ROLE x WITH PASSWORD 'hunter2'", "ALTER ROLE x WITH PASSWORD '[redacted]'"),
        ("CREATE ROLE r LOGIN ENCRYPTED PASSWORD 'a''b'", "CREATE ROLE r LOGIN ENCRYPTED PASSWORD '[redacted]'"),
        ("CREATE USER u IDENTIFIED BY 'p'", "CREATE USER u IDENTIFIED BY '[redacted]'"),
        ('ALTER USER u IDENTIFIED WITH ed25519 AS "p"', "ALTER USER u IDENTIFIED WITH ed25519 AS '[redacted]'"),
        ("SET PASSWORD FOR u@h = PASSWORD('pw')", "SET PASSWORD FOR u@h = PASSWORD('[redacted]')"),
        (
            "SELECT 1; ALTER ROLE CURRENT_USER PASSWORD $$s3$$",
            "SELECT 1; ALTER ROLE CURRENT_USER PASSWORD '[redacted]'",
        ),
        ("alter role x password $q$a$b$q$", "alter role x password '[redacted]'"),
        ("ALTER ROLE x PASSWORD E'p\\'w'", "ALTER ROLE x PASSWORD '[redacted]'"),
        ("ALTER ROLE x PASSWORD /* c */ 'pw'", "ALTER ROLE x PASSWORD /* c */ '[redacted]'"),
        ("ALTER ROLE x PASSWORD -- c\n 'pw'", "ALTER ROLE x PASSWORD -- c\n '[redacted]'"),
        ("SELECT PASSWORD('pw'), 1", "SELECT PASSWORD('[redacted]'), 1"),
        ("SELECT 'password' FROM t", "SELECT 'password' FROM t"),
        ("SELECT * FROM users WHERE password_hash = 'x'", "SELECT * FROM users WHERE password_hash = 'x'"),
    ],
)
def test_a_password_typed_into_a_statement_is_blanked(typed: str, kept: str) -> None:
    assert blank_password_literals(typed) == kept
