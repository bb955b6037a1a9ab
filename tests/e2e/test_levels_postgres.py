"""Read-only first, on a real PostgreSQL (issue 12): the first level of a resource grants a read-only role, a named
level a read-write one, through the real bot over HTTP. What the person can do on the server is checked by logging
in as them; the levels' roles are each level's own params, merged over the resource's connection params."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from bot.devtools.local_bot import LocalBot
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.slack.ids import ActionId
from tests.adapters.conftest import postgres_server_url  # noqa: F401  (a fixture the postgres backends use)
from tests.adapters.test_postgres import BOT_PASSWORD, Backend, shared  # noqa: F401  (fixtures)
from tests.e2e.helpers import ALICE, BOB, CAROL, view

pytestmark = pytest.mark.postgres


@pytest.fixture
def writer(shared: Backend) -> Iterator[str]:  # noqa: F811
    """A role that may also write the table, which the bot may grant like the reader."""
    name = f"bgt_writer_{uuid.uuid4().hex[:8]}"
    with shared.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(sql.Identifier(shared.table), sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(name), sql.Identifier(shared.bot))
        )
    yield name
    with shared.admin() as conn:
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(shared.table), sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def login(shared: Backend) -> Iterator[str]:  # noqa: F811
    name = f"bgt_bob_{uuid.uuid4().hex[:8]}"
    shared.create_role(name, "LOGIN")
    yield name
    shared.drop_roles([name])


@pytest.fixture
def pg_bot(shared: Backend, writer: str, login: str, database_url: str) -> Iterator[LocalBot]:  # noqa: F811
    policy = parse_policy(f"""
channels: {{approvals: C0APPROVALS, audit: C0SECURITY}}
resources:
  orders-pg:
    adapter: postgres
    users: {{{BOB}: {login}}}
    params:
      host: {shared.host}
      port: {shared.port}
      database: {shared.dbname}
      user: {shared.bot}
      password: ${{PG_BOT_PASSWORD}}
      sslmode: disable
    approvers: [{ALICE}]
    levels:
      read: {{params: {{roles: [{shared.reader}]}}, max_duration: 4h}}
      write: {{params: {{roles: [{writer}]}}, approvals_required: 2, approvers: [{ALICE}, {CAROL}], max_duration: 1h}}
""")
    bot = LocalBot(policy, database_url, environ={"PG_BOT_PASSWORD": BOT_PASSWORD}).start()
    try:
        yield bot
    finally:
        bot.stop()


def can(shared: Backend, login: str, statement: str) -> bool:  # noqa: F811
    try:
        with shared.connect_as(login, None) as conn:
            conn.execute(sql.SQL(statement).format(table=sql.Identifier(shared.table)))
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


def asked(bot: LocalBot, text: str) -> int:
    match = re.search(r"#(\d+)", bot.command(BOB, text).text)
    assert match
    return int(match.group(1))


def test_the_first_level_reads_and_a_named_level_writes_each_with_only_its_own_role(
    pg_bot: LocalBot,
    shared: Backend,  # noqa: F811
    writer: str,
    login: str,
) -> None:
    bot = pg_bot
    read_only, write = "SELECT * FROM {table}", "INSERT INTO {table} VALUES ('x')"
    assert not can(shared, login, read_only)

    read = asked(bot, "orders-pg 1h INC-1 look at stuck orders")
    bot.click(ALICE, ActionId.APPROVE, read)
    assert view(bot, read).status is Status.ACTIVE and view(bot, read).level == "read"
    assert can(shared, login, read_only)
    assert not can(shared, login, write), "the read level gave write access"
    assert shared.members_of(writer) == []

    bot.command(BOB, f"revoke {read}")
    assert not can(shared, login, read_only)

    change = asked(bot, "orders-pg:write 30m INC-1 fix the stuck orders")
    bot.click(ALICE, ActionId.APPROVE, change)
    assert view(bot, change).status is Status.PENDING, "write needs a second approver"
    bot.click(CAROL, ActionId.APPROVE, change)
    assert view(bot, change).status is Status.ACTIVE
    assert can(shared, login, write)
    assert login not in shared.members_of(shared.reader), "the write level granted the read level's role too"
    bot.command(BOB, f"revoke {change}")
    assert not can(shared, login, write)
