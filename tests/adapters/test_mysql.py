"""The mysql adapter against the real MariaDB (or MySQL) server: the contract in both login modes, the expiry event,
the quoting, and what check() reports. The bot runs as a non-root login holding only the privileges the docs list."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pymysql
import pytest
import yaml

from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.adapters.mysql import MARKER_PREFIX, MysqlAdapter, MysqlParams, _Session, event_name
from bot.adapters.registry import build
from bot.devtools.ports import free_port
from bot.policy import PolicyError
from bot.testing.contract import (
    AdapterContract,
    BackendExpiryContract,
    ExtendContract,
    ListsContract,
    OneLiveGrantContract,
    SessionsContract,
    StandingAccessContract,
    VerifyContract,
    grant_context,
)

BOT_PASSWORD = "bot-pw-Xq7!" + uuid.uuid4().hex
PERSON_PASSWORD = "person-pw-Zr4!" + uuid.uuid4().hex  # the person's own password, in existing mode
ROWS = ((1, "visible"),)
INJECTION = "x'@'%' IDENTIFIED BY 'pwned'; --"
LOST = {1044, 1142, 1927, 2006, 2013}  # refused, or the connection was killed under us
CONTRACT_MARKER = MARKER_PREFIX + "contract"  # grant_context's resource


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    root_user: str
    root_password: str

    def connect(self, user: str | None = None, password: str = "", **options: Any) -> pymysql.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=user or self.root_user,
            password=password if user else self.root_password,
            autocommit=True,
            connect_timeout=5,
            read_timeout=10,
            charset="utf8mb4",
            **options,
        )

    def root(self, sql: str, args: tuple[Any, ...] | None = None) -> tuple[tuple[Any, ...], ...]:
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql, args)
            return tuple(cursor.fetchall())


@dataclass(frozen=True)
class World:
    server: Server
    database: str  # holds table `t`, which grants let principals read

    @property
    def escaped(self) -> str:
        return self.database.replace("_", "\\_")


@pytest.fixture(scope="module")
def server(mysql_server_url: str) -> Server:
    url = urlsplit(mysql_server_url)
    return Server(url.hostname or "127.0.0.1", url.port or 3306, url.username or "root", url.password or "")


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[World]:
    (before,) = server.root("SELECT @@GLOBAL.event_scheduler")[0]
    server.root("SET GLOBAL event_scheduler = ON")
    database = f"bg_contract_{uuid.uuid4().hex[:10]}"
    server.root(f"CREATE DATABASE `{database}`")
    server.root(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, label VARCHAR(20))")
    server.root(f"INSERT INTO `{database}`.t VALUES (1, 'visible')")
    try:
        yield World(server, database)
    finally:
        server.root(f"DROP DATABASE IF EXISTS `{database}`")  # its events go with it
        server.root(f"SET GLOBAL event_scheduler = {'ON' if before == 'ON' else 'OFF'}")
        # Shared by every bot of every run on this server: dropped by whichever run is last to use it.
        holders = "SELECT COUNT(*) FROM mysql.roles_mapping WHERE Role = %s AND User LIKE 'bg\\_bot\\_%%'"
        if not server.root(holders, (CONTRACT_MARKER,))[0][0]:
            server.root("DROP ROLE IF EXISTS %s", (CONTRACT_MARKER,))


def make_bot(world: World, mode: str, *, minimal: bool = True) -> str:
    """A bot login with the privileges docs/adapters/mysql.md lists as the minimum, and no more."""
    bot = f"bg_bot_{uuid.uuid4().hex[:8]}"
    root = world.server.root
    root("CREATE USER %s@'%%' IDENTIFIED BY %s", (bot, BOT_PASSWORD))
    if minimal:
        root(f"GRANT SELECT ON `{world.escaped}`.* TO %s@'%%' WITH GRANT OPTION", (bot,))
        root(f"GRANT EVENT ON `{world.escaped}`.* TO %s@'%%'", (bot,))
        root("GRANT PROCESS, CONNECTION ADMIN ON *.* TO %s@'%%'", (bot,))
        for table in ("db", "tables_priv", "roles_mapping"):  # verify and reconciliation read who holds what
            root(f"GRANT SELECT ON mysql.{table} TO %s@'%%'", (bot,))
        root("GRANT SELECT (User, Host, Select_priv) ON mysql.user TO %s@'%%'", (bot,))  # not the password hash
        if mode == "temporary":
            root("GRANT CREATE USER ON *.* TO %s@'%%'", (bot,))
            # Each test bot is a new login, like a rotated one: it needs the marker role an earlier one made.
            root("CREATE ROLE IF NOT EXISTS %s", (CONTRACT_MARKER,))
            root("GRANT %s TO %s@'%%' WITH ADMIN OPTION", (CONTRACT_MARKER, bot))
    return bot


def drop_user(world: World, login: str) -> None:
    world.server.root("DROP USER IF EXISTS %s@'%%'", (login,))


def adapter_for(world: World, bot: str, **changes: Any) -> MysqlAdapter:
    params: dict[str, Any] = {
        "host": world.server.host,
        "port": world.server.port,
        "user": bot,
        "password": BOT_PASSWORD,
        "privileges": ["SELECT"],
        "target": f"{world.database}.*",
        **changes,
    }
    return MysqlAdapter(MysqlParams(**params))


class Session:
    def __init__(self, connection: pymysql.Connection) -> None:
        self.connection = connection

    def works(self) -> bool:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT id, label FROM t")  # the database chosen at connect (a USE)
                return tuple(cursor.fetchall()) == ROWS
        except pymysql.InterfaceError:
            return False
        except pymysql.MySQLError as error:
            if error.args[0] in LOST:
                return False
            raise

    def close(self) -> None:
        if self.connection.open:
            self.connection.close()


class Probe:
    """Uses the access as the person: logs in as their login and reads the table."""

    def __init__(self, world: World, mode: str, prefix: str) -> None:
        self.world, self.mode, self.prefix = world, mode, prefix
        self.logins: list[str] = []
        self.standing: dict[str, str] = {}  # login -> password, for a temporary-mode login made by hand

    def principal(self, hint: str = "") -> str:
        name = f"{hint or 'p'}-{uuid.uuid4().hex[:8]}"
        login = self.prefix + name
        self.logins.append(login)
        if self.mode == "existing":  # the person's own login, made by someone else long before
            self.world.server.root("CREATE USER %s@'%%' IDENTIFIED BY %s", (login, PERSON_PASSWORD))
        return name

    def give_standing(self, principal: str) -> None:
        """As a DBA would, as root: SELECT on the database (written, like the bot's, with '_' escaped) for the
        person's login, or (temporary mode) a login under the bot's prefix with a password of its own and that grant,
        but without the bot's mark."""
        login = self.prefix + principal
        if self.mode == "temporary":
            self.standing[login] = "standing-pw-Q3!" + uuid.uuid4().hex
            self.world.server.root("CREATE USER %s@'%%' IDENTIFIED BY %s", (login, self.standing[login]))
        self.world.server.root(f"GRANT SELECT ON `{self.world.escaped}`.* TO %s@'%%'", (login,))

    def _login(self, ctx: GrantContext, receipt: Receipt, **options: Any) -> pymysql.Connection | None:
        login = self.prefix + ctx.principal
        password = PERSON_PASSWORD if self.mode == "existing" else receipt.credentials or self.standing.get(login, "")
        try:
            return self.world.server.connect(self.prefix + ctx.principal, password, **options)
        except pymysql.OperationalError as error:
            refused = {1044, 1045, 1698} if self.mode == "temporary" else {1044}  # no such login; no database
            if error.args[0] in refused:
                return None
            raise

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        connection = self._login(ctx, receipt)
        if connection is None:
            return False
        with connection:
            return Session(connection).works() if self._use(connection) else False

    def _use(self, connection: pymysql.Connection) -> bool:
        try:
            connection.select_db(self.world.database)
            return True
        except pymysql.OperationalError as error:
            if error.args[0] == 1044:
                return False
            raise

    def open_session(self, ctx: GrantContext, receipt: Receipt) -> Session:
        connection = self._login(ctx, receipt, database=self.world.database)
        assert connection is not None, "could not log in while the grant was held"
        return Session(connection)

    def secrets(self) -> list[str]:
        return [BOT_PASSWORD]

    def cleanup(self) -> None:
        for login in self.logins:
            drop_user(self.world, login)


class MysqlContract(AdapterContract, SessionsContract, BackendExpiryContract, ExtendContract, OneLiveGrantContract):
    mode: ClassVar[str]
    prefix: ClassVar[str]
    expiry_tolerance = 5.0  # the scheduler fires on the second; the probe polls every 0.25 s
    settle_seconds = 1.5  # the event runs at the expiry rounded up to the second, within the scheduler's tick
    extension_seconds = 3.0

    @pytest.fixture(scope="class")
    def bot(self, world: World) -> Iterator[str]:
        bot = make_bot(world, self.mode)
        yield bot
        drop_user(world, bot)

    @pytest.fixture
    def adapter(self, world: World, bot: str) -> MysqlAdapter:
        return adapter_for(world, bot, login=self.mode)

    @pytest.fixture
    def wrong_credentials(self, world: World, bot: str) -> MysqlAdapter:
        return adapter_for(world, bot, login=self.mode, password="not-" + BOT_PASSWORD[:8])

    @pytest.fixture
    def probe(self, world: World) -> Iterator[Probe]:
        probe = Probe(world, self.mode, self.prefix)
        yield probe
        probe.cleanup()


class TestMysqlExistingContract(MysqlContract, VerifyContract, StandingAccessContract):
    mode = "existing"
    prefix = ""

    def test_a_grant_to_an_existing_login_is_listed_only_when_everything_is_asked(
        self, adapter: MysqlAdapter, probe: Probe
    ) -> None:
        # MySQL keeps no grantor for database grants, so the bot cannot tell its grant from a DBA's.
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            assert not [h for h in adapter.holdings(everything=False) if h.principal == ctx.principal]
            (found,) = [h for h in adapter.holdings(everything=True) if h.principal == ctx.principal]
            assert not found.made_by_bot
            adapter.revoke(grant_context(found.principal), Receipt(data=found.data))
            assert not probe.can_use(ctx, receipt)
            assert adapter.verify(ctx, Receipt(data=receipt.data)) is False
        finally:
            adapter.revoke(ctx, Receipt(data=receipt.data))

    def test_verify_sees_a_global_grant(self, adapter: MysqlAdapter, probe: Probe, world: World) -> None:
        ctx = grant_context(probe.principal())
        world.server.root("GRANT SELECT ON *.* TO %s@'%%'", (ctx.principal,))
        assert adapter.verify(ctx, Receipt()) is True, "a global grant of the privilege went unseen"
        world.server.root("REVOKE SELECT ON *.* FROM %s@'%%'", (ctx.principal,))
        assert adapter.verify(ctx, Receipt()) is False

    def test_verify_sees_the_privilege_through_a_role(self, adapter: MysqlAdapter, probe: Probe, world: World) -> None:
        ctx = grant_context(probe.principal())
        role = f"bgt_role_{uuid.uuid4().hex[:8]}"
        world.server.root("CREATE ROLE %s", (role,))
        try:
            world.server.root(f"GRANT SELECT ON `{world.database}`.* TO %s", (role,))
            world.server.root("GRANT %s TO %s@'%%'", (role, ctx.principal))
            assert adapter.verify(ctx, Receipt()) is True, "a second path to the privilege went unseen"
        finally:
            world.server.root("DROP ROLE IF EXISTS %s", (role,))
        assert adapter.verify(ctx, Receipt()) is False


class TestMysqlTemporaryContract(MysqlContract, VerifyContract, ListsContract, StandingAccessContract):
    mode = "temporary"
    prefix = "bg_"

    def test_a_listed_login_is_revoked_with_its_expiry_event(
        self, adapter: MysqlAdapter, probe: Probe, world: World
    ) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            (found,) = [h for h in adapter.holdings(everything=False) if h.principal == ctx.principal]
            assert found.data["event"] == f"{world.database}.{event_name(ctx.grant_id)}"
            adapter.revoke(grant_context(found.principal), Receipt(data=found.data))
            events = "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s AND EVENT_NAME = %s"
            assert world.server.root(events, (world.database, event_name(ctx.grant_id)))[0][0] == 0
        finally:
            adapter.revoke(ctx, Receipt(data=receipt.data))

    def test_a_login_marked_for_another_resource_is_neither_verified_nor_revoked(
        self, adapter: MysqlAdapter, probe: Probe
    ) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            elsewhere = replace(ctx, resource="another")
            assert adapter.verify(elsewhere, Receipt(data=receipt.data)) is False
            adapter.revoke(elsewhere, Receipt(data=receipt.data))
            assert probe.can_use(ctx, receipt), "a reconciliation of another resource ended this one's login"
        finally:
            adapter.revoke(ctx, Receipt(data=receipt.data))


# Parameters and principals: no server needed.

BASE = {
    "host": "db.internal",
    "user": "breakglass",
    "password": "${DB_PW}",
    "privileges": ["SELECT"],
    "target": "app.*",
}


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"privileges": ["SELECT", "DROP DATABASE"]}, "privileges", "unknown privilege 'DROP DATABASE'"),
        ({"privileges": ["SELECT; DROP TABLE x"]}, "privileges", "unknown privilege"),
        ({"privileges": ["GRANT OPTION"]}, "privileges", "cannot be granted by Breakglass"),
        ({"privileges": ["PROCESS"]}, "privileges", "PROCESS cannot be granted on app.*"),
        ({"privileges": ["ALL", "SELECT"]}, "privileges", "cannot be combined"),
        ({"privileges": []}, "privileges", "at least one"),
        ({"target": "app"}, "target", "expected db.* or db.table"),
        ({"target": "app.*; DROP USER root"}, "target", "expected db.* or db.table"),
        ({"target": "`app`.*"}, "target", "expected db.* or db.table"),
        ({"target": "*.orders"}, "target", "expected db.* or db.table"),
        ({"target": "*.*"}, "events_database", "required when `target` is *.*"),
        ({"events_database": "ev-ents"}, "events_database", "expected a database name"),
        ({"login": "temporary", "login_prefix": ""}, "login_prefix", "need a prefix"),
    ],
)
def test_bad_params_name_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        build("mysql", {**BASE, **changes}, "resources.orders", {"DB_PW": "s3cret-db-pw"})
    assert f"resources.orders.params.{key}:" in str(caught.value)
    assert words in str(caught.value)
    assert "s3cret-db-pw" not in str(caught.value)


def test_privileges_are_normalised_and_levels_respected() -> None:
    params = MysqlParams(**{**BASE, "password": "x", "privileges": ["select", " lock   tables ", "SELECT"]})
    assert params.privileges == ("SELECT", "LOCK TABLES")
    assert MysqlParams(**{**BASE, "privileges": ["all"], "target": "*.*", "backstop": False}).privileges == (
        "ALL PRIVILEGES",
    )
    with pytest.raises(ValueError, match=r"LOCK TABLES cannot be granted on app\.orders"):
        MysqlParams(**{**BASE, "privileges": ["LOCK TABLES"], "target": "app.orders"})


def test_principals_mysql_cannot_hold_are_refused() -> None:
    existing = MysqlAdapter(MysqlParams(**{**BASE, "password": "x"}))
    temporary = MysqlAdapter(MysqlParams(**{**BASE, "password": "x", "login": "temporary"}))
    assert existing.principal_problem("zoe") is None
    assert existing.principal_problem('o\'brien "x"; --') is None  # quoted as a literal, not refused
    assert existing.principal_problem(INJECTION) is None  # 32 characters: the most MySQL allows
    assert "32 characters" in (existing.principal_problem(INJECTION + "-") or "")
    assert "with the login prefix 'bg_' it is longer than the 32" in (temporary.principal_problem(INJECTION) or "")
    assert "ends with a space" in (existing.principal_problem("zoe ") or "")
    assert "emoji" in (existing.principal_problem("zoe\U0001f600") or "")
    assert "bot's own login" in (existing.principal_problem("breakglass") or "")


# Against the server.


@pytest.fixture(scope="module")
def bot(world: World) -> Iterator[str]:
    bot = make_bot(world, "temporary")
    yield bot
    drop_user(world, bot)


def mysql_user_rows(world: World, pattern: str) -> list[tuple[str, str]]:
    rows = world.server.root("SELECT User, Host FROM mysql.user WHERE User LIKE %s", (pattern,))
    return sorted((str(user), str(host)) for user, host in rows)


@pytest.mark.parametrize(
    ("mode", "prefix", "principal"),
    [("existing", "", INJECTION), ("temporary", "bg_", "x'@'%' IDENTIFIED BY 'p'; --")],  # each at most 32
)
def test_an_injection_attempt_is_exactly_one_login(
    world: World, bot: str, mode: str, prefix: str, principal: str
) -> None:
    adapter = adapter_for(world, bot, login=mode)
    probe = Probe(world, mode, prefix)
    if mode == "existing":
        world.server.root("CREATE USER %s@'%%' IDENTIFIED BY %s", (principal, PERSON_PASSWORD))
    probe.logins.append(prefix + principal)
    ctx = grant_context(principal)
    try:
        receipt = adapter.grant(ctx)
        assert mysql_user_rows(world, f"{prefix}x%") == [(prefix + principal, "%")]
        assert probe.can_use(ctx, receipt)
        with pytest.raises(pymysql.OperationalError):  # no login `x` with the injected password
            world.server.connect(f"{prefix}x", "pwned" if mode == "existing" else "p")
        adapter.revoke(ctx, receipt)
        assert not probe.can_use(ctx, receipt)
        assert mysql_user_rows(world, f"{prefix}x%") == ([] if mode == "temporary" else [(principal, "%")])
    finally:
        probe.cleanup()


def test_an_underscore_in_the_database_is_not_a_wildcard(world: World, bot: str) -> None:
    sibling = world.database.replace("_", "X")  # what `bg_contract_…`.* would also match if left unescaped
    world.server.root(f"CREATE DATABASE `{sibling}`")
    world.server.root(f"CREATE TABLE `{sibling}`.t (id INT)")
    probe = Probe(world, "existing", "")
    adapter = adapter_for(world, bot)
    try:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        assert probe.can_use(ctx, receipt)
        with world.server.connect(ctx.principal, PERSON_PASSWORD) as connection, connection.cursor() as cursor:
            with pytest.raises(pymysql.OperationalError) as refused:
                cursor.execute(f"SELECT * FROM `{sibling}`.t")
            assert refused.value.args[0] == 1142
        adapter.revoke(ctx, receipt)
    finally:
        world.server.root(f"DROP DATABASE IF EXISTS `{sibling}`")
        probe.cleanup()


def test_a_table_grant_reaches_that_table_only(world: World, bot: str) -> None:
    world.server.root(f"CREATE TABLE `{world.database}`.other (id INT)")
    probe = Probe(world, "existing", "")
    adapter = adapter_for(world, bot, target=f"{world.database}.t")
    try:
        assert adapter.check() == []
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        assert probe.can_use(ctx, receipt)
        with (
            world.server.connect(ctx.principal, PERSON_PASSWORD) as connection,
            connection.cursor() as cursor,
            pytest.raises(pymysql.OperationalError),
        ):
            cursor.execute(f"SELECT * FROM `{world.database}`.other")
        adapter.revoke(ctx, receipt)
        assert not probe.can_use(ctx, receipt)
    finally:
        world.server.root(f"DROP TABLE IF EXISTS `{world.database}`.other")
        probe.cleanup()


def test_the_expiry_event_is_created_at_grant_in_utc_and_dropped_at_revoke(world: World, bot: str) -> None:
    probe = Probe(world, "existing", "")
    adapter = adapter_for(world, bot)
    expires_at = datetime(2031, 5, 6, 7, 8, 9, 250000, tzinfo=UTC)
    ctx = grant_context(probe.principal(), expires_at=expires_at)
    name = event_name(ctx.grant_id)
    query = (
        "SELECT EXECUTE_AT, TIME_ZONE, DEFINER FROM information_schema.EVENTS"
        " WHERE EVENT_SCHEMA = %s AND EVENT_NAME = %s"
    )
    try:
        receipt = adapter.grant(ctx)
        assert adapter.grant(ctx).data == receipt.data  # the repeat finds the event in place
        [(execute_at, zone, definer)] = world.server.root(query, (world.database, name))
        assert (execute_at, zone, definer) == (datetime(2031, 5, 6, 7, 8, 10), "+00:00", f"{bot}@%")
        assert receipt.data["event"] == f"{world.database}.{name}"
        adapter.revoke(ctx, receipt)
        assert world.server.root(query, (world.database, name)) == ()
    finally:
        probe.cleanup()


def test_without_backstop_no_event_is_made(world: World, bot: str) -> None:
    probe = Probe(world, "existing", "")
    adapter = adapter_for(world, bot, backstop=False)
    try:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        events = world.server.root(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (world.database,)
        )
        assert (event_name(ctx.grant_id),) not in events and receipt.data["event"] is None
        assert probe.can_use(ctx, receipt)
        adapter.revoke(ctx, receipt)
    finally:
        probe.cleanup()


def test_revoke_undoes_what_the_receipt_records_after_the_policy_changed(world: World, bot: str) -> None:
    world.server.root(f"GRANT INSERT ON `{world.escaped}`.* TO %s@'%%' WITH GRANT OPTION", (bot,))
    probe = Probe(world, "existing", "")
    try:
        ctx = grant_context(probe.principal())
        receipt = adapter_for(world, bot).grant(ctx)
        adapter_for(world, bot, privileges=["INSERT"]).revoke(ctx, receipt)  # the policy now names INSERT
        assert not probe.can_use(ctx, receipt)
    finally:
        probe.cleanup()
        world.server.root(f"REVOKE INSERT ON `{world.escaped}`.* FROM %s@'%%'", (bot,))


def test_a_repeated_temporary_grant_replaces_the_password(world: World, bot: str) -> None:
    adapter = adapter_for(world, bot, login="temporary")
    probe = Probe(world, "temporary", "bg_")
    try:
        ctx = grant_context(probe.principal())
        first, second = adapter.grant(ctx), adapter.grant(ctx)
        assert first.credentials and second.credentials and first.credentials != second.credentials
        assert probe.can_use(ctx, second) and not probe.can_use(ctx, first)
        assert first.credentials not in (first.instructions or "") and "bg_" + ctx.principal in (
            first.instructions or ""
        )
        adapter.revoke(ctx, second)
    finally:
        probe.cleanup()


def test_check_reports_a_stopped_scheduler_only_with_the_backstop(world: World, bot: str) -> None:
    world.server.root("SET GLOBAL event_scheduler = OFF")
    try:
        problems = adapter_for(world, bot).check()
        assert problems == [
            "event_scheduler is OFF: access ends only when the bot revokes it "
            "(turn the scheduler on in the server's configuration, or set backstop: false)"
        ]
        assert adapter_for(world, bot, backstop=False).check() == []
    finally:
        world.server.root("SET GLOBAL event_scheduler = ON")


def test_check_names_each_missing_privilege(world: World) -> None:
    weak = make_bot(world, "temporary", minimal=False)
    try:
        world.server.root(f"GRANT SELECT ON `{world.escaped}`.* TO %s@'%%'", (weak,))  # no GRANT OPTION
        problems = " | ".join(adapter_for(world, weak, login="temporary", privileges=["SELECT", "INSERT"]).check())
        for missing in (
            "lacks INSERT",
            "GRANT OPTION",
            "PROCESS",
            "CONNECTION ADMIN",
            "CREATE USER",
            "EVENT",
            "cannot read mysql.roles_mapping",
            "cannot read mysql.db",
            "cannot read mysql.tables_priv",
            "GRANT SELECT (User, Host, Select_priv, Insert_priv) ON mysql.user",
        ):
            assert missing in problems
        assert BOT_PASSWORD not in problems
    finally:
        drop_user(world, weak)


def test_a_bot_that_cannot_read_the_grants_cannot_tell_rather_than_saying_gone(world: World) -> None:
    weak = make_bot(world, "existing", minimal=False)
    probe = Probe(world, "existing", "")
    try:
        adapter = adapter_for(world, weak)
        ctx = grant_context(probe.principal())
        with pytest.raises(AdapterError) as verifying:
            adapter.verify(ctx, Receipt())
        with pytest.raises(AdapterError) as listing:
            adapter.holdings(everything=True)
        assert not verifying.value.retryable and not listing.value.retryable
        assert BOT_PASSWORD not in str(verifying.value) + str(listing.value)
    finally:
        probe.cleanup()
        drop_user(world, weak)


def test_check_names_a_missing_table(world: World, bot: str) -> None:
    problems = adapter_for(world, bot, target=f"{world.database}.nope").check()
    assert f"target: table {world.database}.nope does not exist" in problems[0]


def test_check_says_the_login_was_refused_without_the_password(world: World, bot: str) -> None:
    wrong = "wrong-" + BOT_PASSWORD
    [problem] = adapter_for(world, bot, password=wrong).check()
    assert problem.startswith(f"mysql at {world.server.host}:{world.server.port} refused the bot's login as '{bot}'")
    assert wrong not in problem and BOT_PASSWORD not in problem


def test_a_grant_to_a_missing_login_is_refused_and_creates_nothing(world: World, bot: str) -> None:
    ctx = grant_context(f"nobody-{uuid.uuid4().hex[:8]}")  # existing mode: the login must exist already
    [(before,)] = world.server.root("SELECT @@GLOBAL.sql_mode")
    world.server.root("SET GLOBAL sql_mode = 'STRICT_TRANS_TABLES'")  # a server that lets GRANT create logins
    try:
        with pytest.raises(AdapterError) as caught:
            adapter_for(world, bot, backstop=False).grant(ctx)
        made = mysql_user_rows(world, ctx.principal)
    finally:
        world.server.root("SET GLOBAL sql_mode = %s", (before,))
        drop_user(world, ctx.principal)
    assert made == [], "GRANT made a login without a password"
    assert not caught.value.retryable and "grant SELECT" in str(caught.value)


def test_an_unreachable_server_is_retryable(world: World, bot: str) -> None:
    port = free_port()
    adapter = adapter_for(world, bot, port=port, connect_timeout=2)
    with pytest.raises(AdapterError) as caught:
        adapter.grant(grant_context("zoe"))
    assert caught.value.retryable
    assert str(caught.value).startswith(f"cannot connect to mysql at {world.server.host}:{port}")
    assert adapter.check()[0].startswith("cannot connect")


def test_a_revoke_ends_connections_that_kept_their_privileges(world: World, bot: str) -> None:
    """Why revoke kills: a connection that chose the database before a bare REVOKE keeps reading."""
    probe = Probe(world, "existing", "")
    adapter = adapter_for(world, bot, backstop=False)
    try:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        kept = probe.open_session(ctx, receipt)
        world.server.root(f"REVOKE SELECT ON `{world.escaped}`.* FROM %s@'%%'", (ctx.principal,))
        assert kept.works(), "MySQL now drops database privileges from open connections: the kill may be moot"
        adapter.revoke(ctx, receipt)
        assert not kept.works()
        kept.close()
    finally:
        probe.cleanup()


def test_instructions_for_an_existing_login(world: World, bot: str) -> None:
    probe = Probe(world, "existing", "")
    try:
        ctx = replace(
            grant_context(probe.principal()), expires_at=datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        )
        receipt = adapter_for(world, bot).grant(ctx)
        assert receipt.instructions and f"`{ctx.principal}` has SELECT on {world.database}.*" in receipt.instructions
        assert ctx.expires_at.strftime("%H:%M UTC") in receipt.instructions
        assert receipt.credentials is None
        adapter_for(world, bot).revoke(ctx, receipt)
    finally:
        probe.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["existing", "temporary"])
def test_the_expiry_event_also_ends_open_connections(world: World, bot: str, mode: str) -> None:
    probe = Probe(world, mode, "" if mode == "existing" else "bg_")
    adapter = adapter_for(world, bot, login=mode)
    try:
        ctx = grant_context(probe.principal(), expires_in=timedelta(seconds=1.5))
        receipt = adapter.grant(ctx)
        session = probe.open_session(ctx, receipt)
        assert session.works()
        deadline = ctx.expires_at + timedelta(seconds=60)  # ends as soon as the connection is cut
        while session.works() and datetime.now(UTC) < deadline:
            time.sleep(0.25)  # the server's own clock decides
        assert not session.works(), "the connection outlived the expiry event"
        assert datetime.now(UTC) >= ctx.expires_at - timedelta(seconds=0.5)
        session.close()
        adapter.revoke(ctx, receipt)
    finally:
        probe.cleanup()


def test_the_documented_policy_example_builds_and_reads_as_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "adapters" / "mysql.md").read_text()
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", doc, re.DOTALL).group(1))  # type: ignore[union-attr]
    ctx = grant_context("zoe", expires_at=datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    for name, resource in example["resources"].items():
        adapter = build(resource["adapter"], resource["params"], f"resources.{name}", {"ORDERS_DB_BOT_PASSWORD": "x"})
        assert isinstance(adapter, MysqlAdapter)
        instructions = adapter._instructions(ctx, adapter._plan(ctx))
        assert " ".join(instructions.split()) in " ".join(doc.split())


EVENT_QUERY = "SELECT EXECUTE_AT, DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s AND EVENT_NAME = %s"


@pytest.mark.parametrize("mode", ["existing", "temporary"])
def test_extend_moves_the_expiry_event(world: World, bot: str, mode: str) -> None:
    probe = Probe(world, mode, "" if mode == "existing" else "bg_")
    adapter = adapter_for(world, bot, login=mode)
    ctx = grant_context(probe.principal(), expires_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))
    later = replace(ctx, expires_at=datetime(2031, 5, 6, 9, 30, 0, 1, tzinfo=UTC))
    name = event_name(ctx.grant_id)
    try:
        receipt = adapter.grant(ctx)
        adapter.extend(later, Receipt(data=receipt.data))
        adapter.extend(later, Receipt(data=receipt.data))
        assert world.server.root(EVENT_QUERY, (world.database, name)) == ((datetime(2031, 5, 6, 9, 30, 1), f"{bot}@%"),)
        assert probe.can_use(later, receipt)
        adapter.revoke(later, receipt)
        assert world.server.root(EVENT_QUERY, (world.database, name)) == ()
    finally:
        probe.cleanup()


@pytest.mark.slow
def test_extend_after_the_event_ran_says_the_access_has_ended(world: World, bot: str) -> None:
    probe = Probe(world, "existing", "")  # the login outlives the event: extend must not grant again
    adapter = adapter_for(world, bot)
    try:
        ctx = grant_context(probe.principal(), expires_in=timedelta(seconds=1))
        receipt = adapter.grant(ctx)
        deadline = time.monotonic() + 60  # ends as soon as the event ran: a busy server's scheduler may be late
        while world.server.root(EVENT_QUERY, (world.database, event_name(ctx.grant_id))):
            assert time.monotonic() < deadline, "the expiry event did not run"
            time.sleep(0.2)  # the server's own clock decides
        with pytest.raises(AdapterError) as caught:
            adapter.extend(replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), Receipt(data=receipt.data))
        assert not caught.value.retryable and "already run" in str(caught.value)
        assert not probe.can_use(ctx, receipt)
        adapter.revoke(ctx, receipt)
    finally:
        probe.cleanup()


def test_without_backstop_extend_has_nothing_to_move(world: World, bot: str) -> None:
    probe = Probe(world, "existing", "")
    try:
        ctx = grant_context(probe.principal())
        receipt = adapter_for(world, bot, backstop=False).grant(ctx)
        later = replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1))
        adapter_for(world, bot, port=free_port()).extend(later, Receipt(data=receipt.data))  # asks nothing
        assert probe.can_use(later, receipt)
        adapter_for(world, bot, backstop=False).revoke(later, receipt)
    finally:
        probe.cleanup()


# Temporary logins are marked per resource; nothing else is ever re-passworded, extended or dropped.


@pytest.fixture
def resource_name(world: World) -> Iterator[Callable[[], str]]:
    """Fresh resource names, so each test's bot makes (and this drops) its own marker roles."""
    made: list[str] = []

    def fresh() -> str:
        made.append(f"res-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield fresh
    for name in made:
        world.server.root("DROP ROLE IF EXISTS %s", (MARKER_PREFIX + name,))


def event_exists(world: World, ctx: GrantContext) -> bool:
    return bool(world.server.root(EVENT_QUERY, (world.database, event_name(ctx.grant_id))))


def wait_for_the_event_to_run(world: World, ctx: GrantContext) -> None:
    deadline = time.monotonic() + 60  # ends as soon as the event ran: a busy server's scheduler may be late
    while event_exists(world, ctx):
        assert time.monotonic() < deadline, "the expiry event did not run"
        time.sleep(0.2)  # the server's own clock decides


def test_a_crafted_principal_cannot_take_over_another_resources_temporary_login(
    world: World, bot: str, resource_name: Callable[[], str]
) -> None:
    """Zoe holds `bg_ro_zoe…` from one resource; Mallory's principal `ro_zoe…` spells the same login under `bg_`."""
    readers, writers = resource_name(), resource_name()
    first = adapter_for(world, bot, login="temporary", login_prefix="bg_ro_")
    second = adapter_for(world, bot, login="temporary", login_prefix="bg_")
    tag = uuid.uuid4().hex[:8]
    zoe = grant_context(f"zoe{tag}", resource=readers)
    mallory = grant_context(f"ro_zoe{tag}", resource=writers)
    probe = Probe(world, "temporary", "bg_ro_")
    probe.logins.append(f"bg_ro_zoe{tag}")
    try:
        receipt = first.grant(zoe)
        session = probe.open_session(zoe, receipt)
        with pytest.raises(AdapterError) as caught:
            second.grant(mallory)
        assert not caught.value.retryable
        assert f"'bg_ro_zoe{tag}'@'%' already exists and is not a temporary login" in str(caught.value)
        assert repr(writers) in str(caught.value) and receipt.credentials not in str(caught.value)
        assert not event_exists(world, mallory)
        # What the bot may do next with the failed grant: revoke it, bare or with the receipt it would have made.
        made_up = Receipt(data=second._plan(mallory).data())
        second.revoke(mallory, Receipt())
        second.revoke(mallory, made_up)
        with pytest.raises(AdapterError) as ended:
            second.extend(replace(mallory, expires_at=mallory.expires_at + timedelta(hours=1)), made_up)
        assert not ended.value.retryable
        assert probe.can_use(zoe, receipt), "Zoe's password was changed, or her login dropped"
        assert session.works(), "Zoe's connection was ended"
        session.close()
        again = first.grant(zoe)  # her own resource still re-grants her marked login
        assert probe.can_use(zoe, again) and not probe.can_use(zoe, receipt)
        first.revoke(zoe, again)
        assert mysql_user_rows(world, f"bg\\_ro\\_zoe{tag}") == []
    finally:
        probe.cleanup()


def test_a_temporary_grant_refuses_an_account_it_did_not_make(
    world: World, bot: str, resource_name: Callable[[], str]
) -> None:
    name = f"alice{uuid.uuid4().hex[:8]}"
    world.server.root("CREATE USER %s@'%%' IDENTIFIED BY %s", ("bg_" + name, PERSON_PASSWORD))  # a real account
    adapter = adapter_for(world, bot, login="temporary")
    ctx = grant_context(name, resource=resource_name())
    try:
        with pytest.raises(AdapterError) as caught:
            adapter.grant(ctx)
        assert not caught.value.retryable and "left untouched" in str(caught.value)
        adapter.revoke(ctx, Receipt())
        adapter.revoke(ctx, Receipt(data=adapter._plan(ctx).data()))
        assert mysql_user_rows(world, f"bg\\_{name}") == [("bg_" + name, "%")]
        world.server.connect("bg_" + name, PERSON_PASSWORD).close()  # same password, not locked
    finally:
        drop_user(world, "bg_" + name)


@pytest.mark.slow
def test_an_expiry_event_leaves_a_login_another_resource_made_since(
    world: World, bot: str, resource_name: Callable[[], str]
) -> None:
    """Mallory's login is dropped by hand before her event runs (as by a revoke that stopped halfway); Zoe's
    resource then makes a login of the same name. The late event must not drop Zoe's."""
    tag = uuid.uuid4().hex[:8]
    mallory = grant_context(f"ro_zoe{tag}", expires_in=timedelta(seconds=3), resource=resource_name())
    zoe = grant_context(f"zoe{tag}", resource=resource_name())
    probe = Probe(world, "temporary", "bg_ro_")
    probe.logins.append(f"bg_ro_zoe{tag}")
    try:
        adapter_for(world, bot, login="temporary").grant(mallory)
        drop_user(world, f"bg_ro_zoe{tag}")
        receipt = adapter_for(world, bot, login="temporary", login_prefix="bg_ro_").grant(zoe)
        session = probe.open_session(zoe, receipt)
        assert event_exists(world, mallory), "test too slow: Mallory's event ran before Zoe's grant"
        wait_for_the_event_to_run(world, mallory)
        assert session.works(), "the other resource's event ended Zoe's connection"
        assert probe.can_use(zoe, receipt), "the other resource's event dropped Zoe's login"
        session.close()
    finally:
        probe.cleanup()


def test_a_receipt_from_before_marking_still_drops_its_login(world: World, bot: str) -> None:
    """Grants made before logins were marked record no mark; their revoke must still end the access."""
    adapter = adapter_for(world, bot, login="temporary")
    probe = Probe(world, "temporary", "bg_")
    ctx = grant_context(probe.principal())
    try:
        receipt = adapter.grant(ctx)
        world.server.root("REVOKE %s FROM %s@'%%'", (CONTRACT_MARKER, "bg_" + ctx.principal))  # as made back then
        old = {key: value for key, value in receipt.data.items() if key != "marker"}
        adapter.revoke(ctx, Receipt(data=old))
        assert not probe.can_use(ctx, receipt)
        assert mysql_user_rows(world, "bg\\_" + ctx.principal) == []
    finally:
        probe.cleanup()


def test_a_bot_login_without_the_marker_role_says_so_and_leaves_no_login(
    world: World, bot: str, resource_name: Callable[[], str]
) -> None:
    resource = resource_name()
    adapter = adapter_for(world, bot, login="temporary")
    first = grant_context(f"p-{uuid.uuid4().hex[:8]}", resource=resource)
    adapter.revoke(first, adapter.grant(first))  # `bot` made the resource's marker role
    other = make_bot(world, "temporary")  # a new bot login, as after a rotation
    probe = Probe(world, "temporary", "bg_")
    ctx = grant_context(probe.principal(), resource=resource)
    try:
        with pytest.raises(AdapterError) as caught:
            adapter_for(world, other, login="temporary").grant(ctx)
        assert "WITH ADMIN OPTION" in str(caught.value) and "refused the bot's login" not in str(caught.value)
        assert not caught.value.retryable
        assert mysql_user_rows(world, "bg\\_" + ctx.principal) == []
    finally:
        probe.cleanup()
        drop_user(world, other)


# Connections are matched by the exact user name.


def two_logins_differing_in_case(world: World, mode: str) -> tuple[Probe, str, str]:
    tag = uuid.uuid4().hex[:8]
    probe = Probe(world, mode, "" if mode == "existing" else "bg_")
    upper, lower = f"Kim{tag}", f"kim{tag}"
    for name in (upper, lower):
        probe.logins.append(probe.prefix + name)
        if mode == "existing":
            world.server.root("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, PERSON_PASSWORD))
    return probe, upper, lower


@pytest.mark.parametrize("mode", ["existing", "temporary"])
def test_revoke_ends_only_the_connections_of_the_exact_login(world: World, bot: str, mode: str) -> None:
    probe, upper, lower = two_logins_differing_in_case(world, mode)
    adapter = adapter_for(world, bot, login=mode)
    try:
        granted = [(ctx, adapter.grant(ctx)) for ctx in (grant_context(upper), grant_context(lower))]
        (kim, kim_receipt), (other, other_receipt) = granted
        ended, kept = probe.open_session(kim, kim_receipt), probe.open_session(other, other_receipt)
        adapter.revoke(kim, kim_receipt)
        assert not ended.works()
        assert kept.works(), "revoking one login ended the connection of a login differing only in case"
        kept.close()
        adapter.revoke(other, other_receipt)
    finally:
        probe.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["existing", "temporary"])
def test_the_expiry_event_ends_only_the_connections_of_the_exact_login(world: World, bot: str, mode: str) -> None:
    probe, upper, lower = two_logins_differing_in_case(world, mode)
    adapter = adapter_for(world, bot, login=mode)
    try:
        kim = grant_context(upper, expires_in=timedelta(seconds=1.5))
        other = grant_context(lower)
        kim_receipt, other_receipt = adapter.grant(kim), adapter.grant(other)
        ended, kept = probe.open_session(kim, kim_receipt), probe.open_session(other, other_receipt)
        wait_for_the_event_to_run(world, kim)
        assert not ended.works()
        assert kept.works(), "the expiry event ended the connection of a login differing only in case"
        kept.close()
        adapter.revoke(other, other_receipt)
    finally:
        probe.cleanup()


# Which failures are worth a retry.


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (4151, False),  # MariaDB: account locked
        (3118, False),  # MySQL 8: account locked
        (1045, False),
        (1142, False),
        (1213, True),  # deadlock
        (2006, True),  # the client lost the server
        (2013, True),
    ],
)
def test_server_errors_are_final_whatever_their_number(code: int, retryable: bool) -> None:
    session = _Session(MysqlParams(**{**BASE, "password": "x"}), "mysql at db.internal:3306")
    error = session._failure(pymysql.OperationalError(code, "the server's words"), "grant SELECT on app.*")
    assert error.retryable is retryable


def test_a_locked_bot_login_is_a_final_error(world: World) -> None:
    locked = make_bot(world, "existing")
    world.server.root("ALTER USER %s@'%%' ACCOUNT LOCK", (locked,))
    try:
        with pytest.raises(AdapterError) as caught:
            adapter_for(world, locked).grant(grant_context("zoe"))
        assert not caught.value.retryable
        assert "4151" in str(caught.value) and BOT_PASSWORD not in str(caught.value)
    finally:
        drop_user(world, locked)
