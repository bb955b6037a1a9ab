"""No grant ends access that another live grant still gives (issue 11, point 1), on the real bot over HTTP.

The bug: one person held a short and a long grant of the same PostgreSQL access; the short one's revoke removed the
role membership (``login: existing``) or dropped the temporary login (``login: temporary``) the long one still
needed, while the bot went on showing the long one active. Now the second request is refused while the first is
live and points to `/breakglass extend`; once the first has ended, asking again gives access that really works.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.adapters.base import Receipt
from bot.clock import ManualClock
from bot.devtools.local_bot import LocalBot, Reply
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.slack.ids import ActionId
from bot.store.chain import AuditSeal
from bot.store.db import make_engine
from bot.store.models import AuditEvent, Request
from bot.store.verify import verify
from bot.testing.contract import grant_context
from tests.adapters.conftest import postgres_server_url  # noqa: F401  (a fixture the postgres backends use)
from tests.adapters.test_postgres import (  # noqa: F401  (fixtures: the shared server and the private cluster)
    BOT_PASSWORD,
    PREFIX,
    Backend,
    Probe,
    cluster,
    private,
    shared,
)
from tests.e2e.helpers import ALICE, BOB, channel_texts, state, view

pytestmark = pytest.mark.postgres

RESOURCE = "orders-pg"
CREDENTIALS = re.compile(r"one-time credentials for \*orders-pg\* \(request #(\d+)\): `([^`]+)`")


def postgres_policy(backend: Backend, principal: str, login: str) -> Policy:
    temporary = f"\n      login: temporary\n      login_prefix: {PREFIX}" if login == "temporary" else ""
    return parse_policy(f"""
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
resources:
  {RESOURCE}:
    adapter: postgres
    users:
      {BOB}: {principal}
    params:
      host: {backend.host}
      port: {backend.port}
      database: {backend.dbname}
      user: {backend.bot}
      password: ${{PG_BOT_PASSWORD}}
      sslmode: disable
      roles: [{backend.reader}]{temporary}
    approvers: [{ALICE}]
    emergency: true
    max_duration: 4h
""")


@pytest.fixture(params=["existing", "temporary"])
def login(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(login: str, request: pytest.FixtureRequest) -> Backend:
    # The private cluster checks passwords, which is what shows a temporary login really works or really is gone.
    return request.getfixturevalue("private" if login == "temporary" else "shared")  # type: ignore[no-any-return]


@pytest.fixture
def probe(backend: Backend, login: str) -> Iterator[Probe]:
    probe = Probe(backend, temporary=login == "temporary")
    yield probe
    probe.clean_up()


@pytest.fixture
def principal(probe: Probe) -> str:
    """Bob's login on the server: made beforehand for `existing` logins, by the grant for `temporary` ones."""
    return probe.principal()


@pytest.fixture
def pg_bot(backend: Backend, principal: str, login: str, database_url: str) -> Iterator[LocalBot]:
    # The bot's clock starts at the real now: PostgreSQL enforces a temporary login's VALID UNTIL by its own clock.
    clock = ManualClock(datetime.now(UTC))
    bot = LocalBot(
        postgres_policy(backend, principal, login),
        database_url,
        environ={"PG_BOT_PASSWORD": BOT_PASSWORD},
        clock=clock,
    ).start()
    try:
        yield bot
    finally:
        for request_id in stored_ids(bot):  # whatever a failed assertion left granted on the server
            if view(bot, request_id).status is Status.ACTIVE:
                bot.command(ALICE, f"revoke {request_id}")
        bot.stop()
        engine = make_engine(database_url)
        try:
            verdict = verify(engine, AuditSeal(bot.audit_key))
        finally:
            engine.dispose()
        assert verdict.ok, verdict.line()


def stored_ids(bot: LocalBot) -> list[int]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return list(session.scalars(select(Request.id).order_by(Request.id)))


def access_works(bot: LocalBot, probe: Probe, principal: str, request_id: int) -> bool:
    """Log in as the person (with the password they were sent, for a temporary login) and read what the grant
    allows."""
    sent = [CREDENTIALS.search(text) for text in dm_texts(bot)]
    password = next((m.group(2) for m in sent if m and int(m.group(1)) == request_id), None)
    return probe.can_use(grant_context(principal), Receipt(credentials=password))


def dm_texts(bot: LocalBot) -> list[str]:
    return [str(call.args.get("text")) for call in bot.slack.dms(BOB)]


def granted(bot: LocalBot, text: str) -> int:
    asked = bot.command(BOB, text)
    match = re.search(r"Request #(\d+)", asked.text)
    assert match, asked.text
    request_id = int(match.group(1))
    bot.click(ALICE, ActionId.APPROVE, request_id)
    assert view(bot, request_id).status is Status.ACTIVE, view(bot, request_id).failure
    return request_id


def test_a_long_grant_cannot_overlap_a_short_one_and_asking_again_after_it_ends_gives_real_access(
    pg_bot: LocalBot, probe: Probe, principal: str
) -> None:
    bot = pg_bot

    def can_use(request_id: int) -> bool:
        return access_works(bot, probe, principal, request_id)

    short = granted(bot, f"{RESOURCE} 10m INC-1 a quick look")
    assert can_use(short)

    refused = bot.command(BOB, f"{RESOURCE} 2h INC-2 the long fix").text
    assert f"You hold access to `{RESOURCE}` until" in refused and f"(#{short})" in refused
    assert f"`/breakglass extend {short} …`" in refused
    assert stored_ids(bot) == [short], "the refused request was stored"
    assert can_use(short)

    report = bot.advance(timedelta(minutes=10))
    assert report.revoked == 1 and view(bot, short).status is Status.EXPIRED
    assert not can_use(short), "the expired grant left access behind"

    again = granted(bot, f"{RESOURCE} 2h INC-2 the long fix")
    assert again != short
    assert can_use(again), "the bot shows the new grant active, but the person has no access"
    bot.command(ALICE, f"revoke {again}")
    assert not can_use(again)


@contextmanager
def first_request_insert(bot: LocalBot, then: Callable[[], Any], wait: float = 20) -> Iterator[list[Any]]:
    """While inside, the first INSERT of a request waits until ``then()`` has finished in a thread of its own: the
    competing command is stored and answered in the widest window a real race has, after the first one's check."""
    assert bot.runtime is not None
    engine = bot.runtime.deps.db.engine
    result: list[Any] = []
    fired = threading.Event()

    def before_execute(*args: Any) -> None:
        statement = " ".join(str(args[2]).split()).upper()
        if fired.is_set() or not statement.startswith("INSERT INTO REQUESTS"):
            return
        fired.set()
        racer = threading.Thread(target=lambda: result.append(then()), daemon=True)
        racer.start()
        racer.join(wait)

    event.listen(engine, "before_cursor_execute", before_execute)
    try:
        yield result
    finally:
        event.remove(engine, "before_cursor_execute", before_execute)
    assert fired.is_set(), "the race was never run: no request was stored"


def test_two_requests_at_the_same_moment_store_exactly_one_and_tell_the_other_why(
    pg_bot: LocalBot, probe: Probe
) -> None:
    bot = pg_bot
    with first_request_insert(bot, lambda: bot.command(BOB, f"{RESOURCE} 30m INC-7 from the laptop")) as racer:
        first: Reply = bot.command(BOB, f"{RESOURCE} 1h INC-7 from the phone")
    second: Reply = racer[0]

    assert len(stored_ids(bot)) == 1
    [stored] = stored_ids(bot)
    answers = sorted([first.text, second.text], key=lambda text: "is with the approvers" in text)
    assert f"You already asked for `{RESOURCE}` (#{stored}); it is waiting for approval." in answers[0]
    assert f"Request #{stored} for `{RESOURCE}`" in answers[1]
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:  # nothing of the loser was written, not even in the trail
        requested = session.scalar(select(func.count()).where(AuditEvent.action == "requested"))
    assert requested == 1
    assert len(channel_texts(bot, "C0APPROVALS")) == 1, "the loser's request reached the approvers"
    assert "Waiting for approval" in state(bot.request_message(stored))
