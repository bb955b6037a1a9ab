"""The mysql adapter's activity capture (MariaDB's server_audit plugin) against a real server with the plugin loaded.

The capture changes server-wide settings and reads the audit file, whose mode is fixed at start, so these tests run
a private mariadbd (``mariadb_server``) rather than the shared one; the fixtures and the probe of ``test_mysql`` are
reused on it. Every global a test changes beyond the module's own setup is put back by that test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from bot.adapters import mysql_activity, mysql_audit_log
from bot.adapters.base import MAX_ACTION, Activity, AdapterError, GrantContext, Receipt
from bot.adapters.mysql import MysqlAdapter
from bot.adapters.registry import build
from bot.policy import PolicyError
from bot.testing.activity_contract import ActivityContract
from bot.testing.contract import grant_context
from tests.adapters.mariadb_server import AuditedServer, audited_server
from tests.adapters.test_mysql import (
    BASE,
    BOT_PASSWORD,
    Probe,
    Server,
    World,
    adapter_for,
    drop_user,
    make_bot,
)
from tests.adapters.test_mysql import world as mysql_world

world = mysql_world  # the fixture of the database the grants are on, here on the private server (``server`` below)

SETTLE = 10.0
BEFORE_GRANT = timedelta(hours=1, minutes=1)  # grant_context's grants last an hour: since = a minute before the grant


@pytest.fixture(scope="module")
def audited(mysql_server_url: str) -> Iterator[AuditedServer]:
    # The shared server's URL gates these tests like the others (skip where unset, never in CI).
    with audited_server() as running:
        yield running


@pytest.fixture(scope="module")
def server(audited: AuditedServer) -> Iterator[Server]:
    private = Server(audited.host, audited.port, "root", "")
    private.root("SET GLOBAL server_audit_events = 'CONNECT,QUERY'")
    # As docs/adapters/mysql.md asks: a name no account has, so the plugin logs no one until a grant is watched.
    private.root("SET GLOBAL server_audit_incl_users = %s", (mysql_activity.IDLE,))
    private.root("SET GLOBAL server_audit_logging = ON")
    yield private


@pytest.fixture(scope="module")
def capture_database(server: Server) -> str:
    name = f"bg_capture_{uuid.uuid4().hex[:8]}"
    server.root(f"CREATE DATABASE `{name}`")
    return name


def make_capturing_bot(world: World, mode: str, capture_database: str) -> str:
    """A bot login with the adapter's minimum and what docs/adapters/mysql.md lists for capture."""
    bot = make_bot(world, mode)
    world.server.root("GRANT FILE, SUPER ON *.* TO %s@'%%'", (bot,))
    world.server.root(f"GRANT CREATE, SELECT, INSERT, DELETE ON `{capture_database}`.* TO %s@'%%'", (bot,))
    return bot


def capturing(world: World, bot: str, capture_database: str, **changes: Any) -> MysqlAdapter:
    return adapter_for(world, bot, capture="server_audit", capture_database=capture_database, **changes)


class ActingProbe(Probe):
    def act(self, ctx: GrantContext, receipt: Receipt, marker: str) -> None:
        self.run(ctx, receipt, f"SELECT '{marker}' FROM t")

    def run(self, ctx: GrantContext, receipt: Receipt, statement: str) -> None:
        connection = self._login(ctx, receipt, database=self.world.database)
        assert connection is not None, "could not log in while the grant was held"
        with connection, connection.cursor() as cursor:
            cursor.execute(statement)


class MysqlActivityContract(ActivityContract):
    mode: ClassVar[str]
    prefix: ClassVar[str]

    @pytest.fixture(scope="class")
    def bot(self, world: World, capture_database: str) -> Iterator[str]:
        bot = make_capturing_bot(world, self.mode, capture_database)
        yield bot
        drop_user(world, bot)

    @pytest.fixture
    def adapter(self, world: World, bot: str, capture_database: str) -> MysqlAdapter:
        return capturing(world, bot, capture_database, login=self.mode)

    @pytest.fixture
    def wrong_credentials(self, world: World, bot: str, capture_database: str) -> MysqlAdapter:
        return capturing(world, bot, capture_database, login=self.mode, password="not-" + BOT_PASSWORD[:8])

    @pytest.fixture
    def probe(self, world: World) -> Iterator[ActingProbe]:
        probe = ActingProbe(world, self.mode, self.prefix)
        yield probe
        probe.cleanup()


class TestMysqlActivityExisting(MysqlActivityContract):
    mode = "existing"
    prefix = ""


class TestMysqlActivityTemporary(MysqlActivityContract):
    mode = "temporary"
    prefix = "bg_"


# --- the adapter's own edge cases -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bot(world: World, capture_database: str) -> Iterator[str]:
    bot = make_capturing_bot(world, "existing", capture_database)
    yield bot
    drop_user(world, bot)


@pytest.fixture
def adapter(world: World, bot: str, capture_database: str) -> MysqlAdapter:
    return capturing(world, bot, capture_database)


@pytest.fixture
def probe(world: World) -> Iterator[ActingProbe]:
    probe = ActingProbe(world, "existing", "")
    yield probe
    probe.cleanup()


@contextmanager
def watched(adapter: MysqlAdapter, probe: ActingProbe, **changes: Any) -> Iterator[tuple[GrantContext, Receipt]]:
    ctx = grant_context(probe.principal(), **changes)
    receipt = adapter.grant(ctx)
    adapter.watch(ctx, receipt)
    try:
        yield ctx, receipt
    finally:
        adapter.revoke(ctx, receipt)
        adapter.unwatch(ctx, receipt)


def read_until(
    adapter: MysqlAdapter, ctx: GrantContext, receipt: Receipt, cursor: str | None, *markers: str
) -> tuple[list[Activity], str | None]:
    """Everything after ``cursor`` until every marker was seen (or SETTLE seconds passed)."""
    seen: list[Activity] = []
    give_up = time.monotonic() + SETTLE
    while True:
        page = adapter.activity(ctx, receipt, ctx.expires_at - BEFORE_GRANT, cursor)
        seen.extend(page.items)
        cursor = page.cursor
        if page.more:
            continue
        if all(any(marker in item.action for item in seen) for marker in markers) or time.monotonic() > give_up:
            return seen, cursor
        time.sleep(0.2)


def included(server: Server) -> list[str]:
    (value,) = server.root("SELECT @@GLOBAL.server_audit_incl_users")[0]
    return [name for name in value.replace(" ", ",").split(",") if name]


@contextmanager
def global_setting(server: Server, name: str, value: Any) -> Iterator[None]:
    (before,) = server.root(f"SELECT @@GLOBAL.{name}")[0]
    server.root(f"SET GLOBAL {name} = %s", (value,))
    try:
        yield
    finally:
        server.root(f"SET GLOBAL {name} = %s", (before,))


def test_the_cursor_goes_on_across_rotations(adapter: MysqlAdapter, probe: ActingProbe, server: Server) -> None:
    with watched(adapter, probe) as (ctx, receipt):
        first, second, third = (f"bg{word}{uuid.uuid4().hex[:8]}" for word in ("first", "second", "third"))
        probe.act(ctx, receipt, first)
        seen, cursor = read_until(adapter, ctx, receipt, None, first)
        assert any(first in item.action for item in seen)
        probe.act(ctx, receipt, second)
        server.root("SET GLOBAL server_audit_file_rotate_now = ON")  # the line the cursor names is now in .1
        probe.act(ctx, receipt, third)
        server.root("SET GLOBAL server_audit_file_rotate_now = ON")  # and now in .2
        later, _ = read_until(adapter, ctx, receipt, cursor, second, third)
        actions = [item.action for item in later]
        assert any(second in action for action in actions) and any(third in action for action in actions), actions
        assert not any(first in action for action in actions), "the cursor read the first action again"
        assert [a for a in actions if second in a or third in a] == [
            f"SELECT '{second}' FROM t",
            f"SELECT '{third}' FROM t",
        ]


def test_a_line_rotated_out_of_every_copy_is_said_and_reading_goes_on_from_the_oldest(
    adapter: MysqlAdapter, probe: ActingProbe, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with global_setting(server, "server_audit_file_rotations", 1), watched(adapter, probe) as (ctx, receipt):
        first, second, third = (f"bg{word}{uuid.uuid4().hex[:8]}" for word in ("gone", "kept", "new"))
        probe.act(ctx, receipt, first)
        _, cursor = read_until(adapter, ctx, receipt, None, first)
        server.root("SET GLOBAL server_audit_file_rotate_now = ON")
        probe.act(ctx, receipt, second)
        server.root("SET GLOBAL server_audit_file_rotate_now = ON")  # the cursor's line is in no kept copy now
        probe.act(ctx, receipt, third)
        with caplog.at_level("WARNING", logger="breakglass.adapters.mysql"):
            later, _ = read_until(adapter, ctx, receipt, cursor, second, third)
    actions = [item.action for item in later]
    assert any(second in action for action in actions) and any(third in action for action in actions), actions
    assert not any(first in action for action in actions)
    assert "what was in between is lost" in caplog.text


def test_a_new_adapter_goes_on_from_a_stored_cursor(
    world: World, bot: str, capture_database: str, probe: ActingProbe
) -> None:
    before_restart = capturing(world, bot, capture_database)
    with watched(before_restart, probe) as (ctx, receipt):
        first, second = f"bgbefore{uuid.uuid4().hex[:8]}", f"bgafter{uuid.uuid4().hex[:8]}"
        probe.act(ctx, receipt, first)
        _, cursor = read_until(before_restart, ctx, receipt, None, first)
        probe.act(ctx, receipt, second)
        later, _ = read_until(capturing(world, bot, capture_database), ctx, receipt, cursor, second)
    actions = [item.action for item in later]
    assert any(second in action for action in actions) and not any(first in action for action in actions)


def test_a_statement_with_quotes_newlines_and_backslashes_reads_back_as_sent(
    adapter: MysqlAdapter, probe: ActingProbe
) -> None:
    marker = f"bgquote{uuid.uuid4().hex[:8]}"
    statement = f"SELECT 'it''s {marker}',\n\t\"double\", 'back\\\\slash', 'é' FROM t"
    with watched(adapter, probe) as (ctx, receipt):
        probe.run(ctx, receipt, statement)
        seen, _ = read_until(adapter, ctx, receipt, None, marker)
    mine = [item for item in seen if marker in item.action]
    assert [item.action for item in mine] == [statement]
    assert mine[0].detail["event"] == "QUERY" and mine[0].detail["error"] == 0
    assert mine[0].detail["database"] == probe.world.database


def test_a_long_statement_is_cut_and_marked(adapter: MysqlAdapter, probe: ActingProbe, server: Server) -> None:
    marker = f"bglong{uuid.uuid4().hex[:8]}"
    statement = f"SELECT '{marker}', '{'x' * 5000}' FROM t"
    with global_setting(server, "server_audit_query_log_limit", 10000), watched(adapter, probe) as (ctx, receipt):
        probe.run(ctx, receipt, statement)
        seen, _ = read_until(adapter, ctx, receipt, None, marker)
    (item,) = [item for item in seen if marker in item.action]
    assert len(item.action) == MAX_ACTION
    assert item.action.endswith(mysql_audit_log.CUT)
    assert statement.startswith(item.action.removesuffix(mysql_audit_log.CUT))


def test_a_session_opened_before_the_watch_and_brief_connections_are_recorded(
    adapter: MysqlAdapter, probe: ActingProbe
) -> None:
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    early = probe.open_session(ctx, receipt)  # logged in before capture started
    try:
        adapter.watch(ctx, receipt)
        marker = f"bgearly{uuid.uuid4().hex[:8]}"
        with early.connection.cursor() as cursor:
            cursor.execute(f"SELECT '{marker}'")
        quick = [f"bgquick{n}{uuid.uuid4().hex[:6]}" for n in range(5)]
        for each in quick:  # each its own connection, opened and closed at once
            probe.act(ctx, receipt, each)
        seen, _ = read_until(adapter, ctx, receipt, None, marker, *quick)
        actions = [item.action for item in seen]
        assert any(marker in action for action in actions)
        assert all(any(each in action for action in actions) for each in quick), actions
        assert {"CONNECT", "DISCONNECT"} <= set(actions)
    finally:
        early.close()
        adapter.revoke(ctx, receipt)
        adapter.unwatch(ctx, receipt)


def test_two_grants_of_one_login_keep_each_others_capture(
    world: World, bot: str, capture_database: str, probe: ActingProbe, server: Server
) -> None:
    before = included(server)
    first = capturing(world, bot, capture_database)
    second = capturing(world, bot, capture_database, target=f"{world.database}.t")
    principal = probe.principal()
    ctx_a, ctx_b = grant_context(principal, resource="orders"), grant_context(principal, resource="orders-t")
    receipt_a, receipt_b = first.grant(ctx_a), second.grant(ctx_b)
    try:
        first.watch(ctx_a, receipt_a)
        second.watch(ctx_b, receipt_b)
        second.watch(ctx_b, receipt_b)  # a repeated watch
        first.revoke(ctx_a, receipt_a)
        first.unwatch(ctx_a, receipt_a)
        first.unwatch(ctx_a, receipt_a)  # a repeated unwatch must not end the other grant's capture either
        assert principal in included(server)
        marker = f"bgstill{uuid.uuid4().hex[:8]}"
        probe.act(ctx_b, receipt_b, marker)
        seen, _ = read_until(second, ctx_b, receipt_b, None, marker)
        assert any(marker in item.action for item in seen)
    finally:
        second.revoke(ctx_b, receipt_b)
        second.unwatch(ctx_b, receipt_b)
    assert principal not in included(server)
    assert set(included(server)) - {mysql_activity.IDLE} == set(before) - {mysql_activity.IDLE}
    assert included(server), "an empty include-list would log every login"


def test_a_reset_include_list_is_restored_on_the_next_read(
    adapter: MysqlAdapter, probe: ActingProbe, server: Server
) -> None:
    with watched(adapter, probe) as (ctx, receipt):
        before = server.root("SELECT @@GLOBAL.server_audit_incl_users")[0][0]
        # What a server restart does: the list is back to its configured value, without the watched login.
        server.root("SET GLOBAL server_audit_incl_users = %s", (mysql_activity.IDLE,))
        try:
            adapter.activity(ctx, receipt, ctx.expires_at - BEFORE_GRANT, None)
            assert ctx.principal in included(server)
            marker = f"bgback{uuid.uuid4().hex[:8]}"
            probe.act(ctx, receipt, marker)
            seen, _ = read_until(adapter, ctx, receipt, None, marker)
            assert any(marker in item.action for item in seen)
        finally:
            server.root("SET GLOBAL server_audit_incl_users = %s", (before,))


def test_the_operators_own_names_in_the_list_are_kept(
    adapter: MysqlAdapter, probe: ActingProbe, server: Server
) -> None:
    with global_setting(server, "server_audit_incl_users", "dba_on_watch"):
        with watched(adapter, probe) as (ctx, _):
            assert set(included(server)) == {"dba_on_watch", ctx.principal}
        assert included(server) == ["dba_on_watch"]


def test_a_login_the_include_list_cannot_hold_is_refused(adapter: MysqlAdapter, probe: ActingProbe) -> None:
    ctx = grant_context("has,comma")
    with pytest.raises(AdapterError) as raised:
        adapter.watch(ctx, Receipt())
    assert "comma" in str(raised.value) and not raised.value.retryable
    assert "comma or a space" in (adapter.principal_problem("zoe smith") or "")
    assert adapter.principal_problem("zoe") is None


def test_a_bad_cursor_is_a_final_error(adapter: MysqlAdapter, probe: ActingProbe) -> None:
    with watched(adapter, probe) as (ctx, receipt), pytest.raises(AdapterError) as raised:
        adapter.activity(ctx, receipt, ctx.expires_at, '{"end": "x"}')
    assert "cursor" in str(raised.value) and not raised.value.retryable


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"capture": "server_audit"}, "capture_database", "required when capture is on"),
        ({"capture": "general_log", "capture_database": "bg"}, "capture", "'off' or 'server_audit'"),
        ({"capture": "server_audit", "capture_database": "a-b"}, "capture_database", "expected a database name"),
    ],
)
def test_bad_capture_params_name_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        build("mysql", {**BASE, **changes}, "resources.orders", {"DB_PW": "s3cret-db-pw"})
    assert f"resources.orders.params.{key}:" in str(caught.value)
    assert words in str(caught.value)


def test_capture_is_off_by_default() -> None:
    adapter = build("mysql", BASE, "resources.orders", {"DB_PW": "s3cret-db-pw"})
    assert isinstance(adapter, MysqlAdapter) and not adapter.watching()


def test_check_passes_on_a_server_set_up_for_capture(adapter: MysqlAdapter) -> None:
    assert adapter.check() == []


def test_check_names_logging_that_is_off(adapter: MysqlAdapter, server: Server) -> None:
    with global_setting(server, "server_audit_logging", "OFF"):
        problems = adapter.check()
    assert any("server_audit_logging is OFF" in problem for problem in problems), problems


def test_check_names_the_missing_privileges(world: World, capture_database: str) -> None:
    bot = make_bot(world, "existing")  # without FILE, SUPER and the capture database
    try:
        problems = capturing(world, bot, capture_database).check()
    finally:
        drop_user(world, bot)
    text = "\n".join(problems)
    assert "lacks FILE" in text and "lacks SUPER" in text
    assert f"lacks CREATE, SELECT, INSERT, DELETE on {capture_database}.*" in text
    assert BOT_PASSWORD not in text


def test_check_names_an_audit_file_it_cannot_read(adapter: MysqlAdapter, audited: AuditedServer) -> None:
    mode = audited.audit_log.stat().st_mode
    audited.audit_log.chmod(0o640)  # what the server's default UMASK (0660) makes: LOAD_FILE reads none of it
    try:
        problems = adapter.check()
    finally:
        audited.audit_log.chmod(mode)
    assert any("LOAD_FILE cannot read the audit file" in problem for problem in problems), problems


def test_check_names_a_server_without_the_plugin(mysql_server_url: str) -> None:
    with audited_server(plugin=False) as plain:
        server = Server(plain.host, plain.port, "root", "")
        server.root("CREATE DATABASE app")
        bot = "bg_bot_plain"
        server.root("CREATE USER %s@'%%' IDENTIFIED BY %s", (bot, BOT_PASSWORD))
        params = {**BASE, "host": plain.host, "port": plain.port, "user": bot, "password": BOT_PASSWORD}
        checked = MysqlAdapter(
            MysqlAdapter.Params.model_validate({**params, "capture": "server_audit", "capture_database": "app"})
        ).check()
    assert any("server_audit plugin is not loaded" in problem for problem in checked), checked


def test_a_bot_without_the_capture_privileges_gets_an_error_not_an_empty_page(
    world: World, capture_database: str, probe: ActingProbe
) -> None:
    bot = make_bot(world, "existing")  # may log in, may not read the audit file
    try:
        reader = capturing(world, bot, capture_database)
        with pytest.raises(AdapterError) as raised:
            reader.activity(grant_context(probe.principal()), Receipt(), grant_context("x").expires_at, None)
    finally:
        drop_user(world, bot)
    assert BOT_PASSWORD not in str(raised.value)
