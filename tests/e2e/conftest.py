"""The real bot over HTTP, a Slack stand-in and a real webhook receiver, all on loopback."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from sqlalchemy import MetaData, select
from sqlalchemy.engine import make_url

from bot.devtools.local_bot import BOT_TOKEN, SIGNING_SECRET, LocalBot
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import Policy, parse_policy
from bot.services.deps import Tuning
from bot.store.chain import AuditSeal
from bot.store.db import make_engine
from bot.store.verify import verify

WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"

# The webhook's timeout is for a receiver in this process, sharing two cores with the bot and the databases: long
# enough that a busy machine never makes a healthy call look hung. Tests of hung calls hold them until released.
POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
  approvals_required: 1
review:
  required: emergency
  remind_every: 24h
resources:
  orders-db:
    description: Orders database, read/write
    adapter: webhook
    principal: "{email_local}"
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
    approvers: [S0SRELEADS, U0ALICE01]
    approvals_required: 1
    max_duration: 2h
    reason_pattern: '(INC|CHG)-[0-9]+'
    emergency: true
    requesters: [S0ONCALL]
  payments-admin:
    description: Payments admin console
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
    approvers: [S0SRELEADS]
    approvals_required: 2
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET) as running:
        yield running


@pytest.fixture
def make_bot(policy: Policy, database_url: str, receiver: WebhookReceiver) -> Iterator[Callable[..., LocalBot]]:
    started: list[LocalBot] = []

    def make(**kwargs: Any) -> LocalBot:
        kwargs.setdefault("tuning", Tuning(grant_retry_pause=0.01))
        # ``environ=`` adds to the fixed environment (e.g. an on-call service's keys, which the leak scan then
        # looks for as well).
        environ = {
            "WEBHOOK_URL": receiver.url,
            "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **kwargs.pop("environ", {}),
        }
        bot = LocalBot(kwargs.pop("policy", policy), database_url, environ=environ, **kwargs).start()
        started.append(bot)
        return bot

    yield make
    for bot in reversed(started):
        bot.stop()
    for bot in started:  # whatever the test did, the audit trail it left is an intact chain
        engine = make_engine(database_url)
        try:
            verdict = verify(engine, AuditSeal(bot.audit_key))
        finally:
            engine.dispose()
        assert verdict.ok, verdict.line()


@pytest.fixture
def bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    return make_bot()


# -- the leak scan: every e2e test ends by searching everything the bot wrote for every configured secret ---------

# Loggers raised to DEBUG for the test, whatever level they were given elsewhere.
CHATTY = ("slack_sdk", "slack_bolt", "urllib3", "sqlalchemy", "alembic", "apscheduler", "waitress", "breakglass")
# ...but SQLAlchemy only to INFO: every statement and its parameters (all that is written to the database), not the
# rows read back nor the pool's checkouts. The rows come from the database, which the scan reads whole; logging them
# doubled the time of every end-to-end test.
STATEMENTS_ONLY = ("sqlalchemy",)
MIN_SECRET = 8  # shorter values would be found by chance; none of the tests' secrets is that short
SIGNATURE_HEADER = "x-breakglass-signature"  # an HMAC of the body, made with the secret but not revealing it


def looks_secret(name: str) -> bool:
    return any(word in name.upper() for word in ("SECRET", "TOKEN", "PASSW", "KEY", "CREDENTIAL"))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[tuple[str, str]] = []  # (logger name, formatted record)
        self.paused = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.paused:
            self.lines.append((record.name, self.format(record)))


class LeakScan:
    """Searches the logs, Slack traffic, databases and webhook deliveries of a test for known secrets. Findings
    name the secret and the place, never the value."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # value -> name
        self.findings: list[str] = []
        self.capture = _Capture()
        self.bots: list[LocalBot] = []
        self.stand_ins: list[SlackStandIn] = []
        self.receivers: list[WebhookReceiver] = []
        self._scanned_databases: set[str] = set()

    def add_secret(self, name: str, value: str | SecretStr | None) -> None:
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if plain and len(plain) >= MIN_SECRET:
            self.secrets.setdefault(plain, name)

    def add_bot(self, bot: LocalBot) -> None:
        """The secrets a bot was configured with: its settings, environment and adapters."""
        self.bots.append(bot)
        assert bot.runtime is not None
        settings = bot.runtime.settings
        for field in type(settings).model_fields:
            value = getattr(settings, field)
            if isinstance(value, SecretStr):
                self.add_secret(f"settings.{field}", value)
        for name, value in bot.environ.items():
            if looks_secret(name):
                self.add_secret(name, value)
        for value in bot.runtime.deps.redactor.secrets:
            self.add_secret("an adapter's secret parameter", value)
        password = make_url(bot.database_url).password
        if password:
            self.add_secret("the database password", str(password))

    # -- searching ---------------------------------------------------------------------------------------------

    def search(self, where: str, text: str) -> None:
        for value, name in self.secrets.items():
            forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], quote(value, "")}
            if any(form in text for form in forms):
                self.findings.append(f"{name} in {where}")

    @contextmanager
    def capturing_logs(self) -> Iterator[None]:
        """Every record from every logger, at DEBUG, for the duration."""
        root = logging.getLogger()
        loggers = [root, *(logging.getLogger(name) for name in CHATTY)]
        loggers += [item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)]
        levels = {logger: logger.level for logger in loggers}
        for logger in levels:
            if logger.name.startswith(STATEMENTS_ONLY):
                logger.setLevel(logging.INFO)
            elif logger is root or logger.level > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
        root.addHandler(self.capture)
        try:
            yield
        finally:
            root.removeHandler(self.capture)
            for logger, level in levels.items():
                logger.setLevel(level)

    def scan_logs(self) -> None:
        for number, (logger, line) in enumerate(self.capture.lines, 1):
            self.search(f"log record {number} (logger {logger})", line)

    def scan_slack(self, slack: SlackStandIn) -> None:
        """What the bot sent the Slack API and response URLs, and the messages the stand-in holds and answers with."""
        for number, call in enumerate(slack.calls(), 1):
            self.search(f"Slack call {number} ({call.method})", json.dumps(call.args, default=str, ensure_ascii=False))
        for message in slack.messages(replies=True):
            shown = json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False)
            self.search(f"Slack message {message.channel}/{message.ts}", shown)
        for number, body in enumerate(slack.responses(), 1):
            self.search(f"response_url post {number}", json.dumps(body, default=str, ensure_ascii=False))

    def scan_replies(self, bot: LocalBot) -> None:
        for number, reply in enumerate(bot.replies, 1):
            self.search(f"the bot's HTTP reply {number}", f"{reply.ack}\n{reply.answer or ''}")

    def scan_webhooks(self, receiver: WebhookReceiver) -> None:
        for number, call in enumerate(receiver.calls, 1):
            headers = {key: value for key, value in call.headers.items() if key.lower() != SIGNATURE_HEADER}
            self.search(f"webhook call {number} body", json.dumps(call.body, default=str, ensure_ascii=False))
            self.search(f"webhook call {number} headers", json.dumps(headers, ensure_ascii=False))

    def scan_database(self, url: str) -> None:
        """Every column of every row of every table, found by reflection."""
        if url in self._scanned_databases:
            return
        self._scanned_databases.add(url)
        engine = make_engine(url)
        self.capture.paused = True  # the scan's own queries would log what they read
        try:
            tables = MetaData()
            tables.reflect(engine)
            with engine.connect() as connection:
                for table in tables.sorted_tables:
                    for number, row in enumerate(connection.execute(select(table)), 1):
                        for column, value in row._mapping.items():
                            text = value.decode(errors="replace") if isinstance(value, bytes) else value
                            if not isinstance(text, str):
                                text = json.dumps(text, default=str, ensure_ascii=False)
                            self.search(f"database {table.name}.{column} (row {number})", text)
        finally:
            self.capture.paused = False
            engine.dispose()

    def scan_everything(self) -> list[str]:
        """Whatever is still unscanned (logs, Slack, webhooks, replies, databases), then the findings."""
        self.scan_logs()
        for slack in {id(s): s for s in [*self.stand_ins, *(bot.slack for bot in self.bots)]}.values():
            self.scan_slack(slack)
        for receiver in self.receivers:
            self.scan_webhooks(receiver)
        for bot in self.bots:
            self.scan_replies(bot)
            self.scan_database(bot.database_url)
        return sorted(set(self.findings))


def _wrap(monkeypatch: pytest.MonkeyPatch, kind: type, method: str, after: Callable[[Any], None]) -> None:
    original = getattr(kind, method)

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        after(self)
        return result

    monkeypatch.setattr(kind, method, wrapped)


def known_secrets() -> Iterable[tuple[str, str]]:
    yield "SLACK_BOT_TOKEN", BOT_TOKEN
    yield "SLACK_SIGNING_SECRET", SIGNING_SECRET
    yield "the webhook secret", WEBHOOK_SECRET
    postgres = os.environ.get("BREAKGLASS_TEST_POSTGRES_URL")
    password = make_url(postgres).password if postgres else None
    if password:
        yield "the test database password", str(password)


@pytest.fixture(autouse=True)
def leak_scan(monkeypatch: pytest.MonkeyPatch) -> Iterator[LeakScan]:
    """Fails the test if a configured secret shows up anywhere the bot wrote to during it."""
    scan = LeakScan()
    for name, value in known_secrets():
        scan.add_secret(name, value)
    _wrap(monkeypatch, LocalBot, "start", scan.add_bot)
    # A stopped bot has written everything; its database is scanned now, before the fixtures drop it.
    _wrap(monkeypatch, LocalBot, "stop", lambda bot: scan.scan_database(bot.database_url))
    _wrap(monkeypatch, SlackStandIn, "start", scan.stand_ins.append)
    _wrap(monkeypatch, WebhookReceiver, "start", scan.receivers.append)
    with scan.capturing_logs():
        yield scan
    findings = scan.scan_everything()
    if findings:
        pytest.fail("a secret leaked: " + "; ".join(findings), pytrace=False)
