"""The postgres adapter against real servers.

``existing`` logins run on the shared test server (trust auth on loopback, so logging in as a principal needs no
password). ``temporary`` logins run on a private cluster with scram-sha-256 (pg_cluster.py), because only real
password authentication shows that ``VALID UNTIL`` shuts the door with no revoke sent.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from bot.adapters import principal
from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.adapters.postgres import MARKER, PostgresAdapter, PostgresParams
from bot.adapters.registry import build
from bot.policy import PolicyError
from bot.testing.contract import (
    AdapterContract,
    BackendExpiryContract,
    ExtendContract,
    ListsContract,
    OneLiveGrantContract,
    ReconfiguredRevokeContract,
    SessionsContract,
    StandingAccessContract,
    VerifyContract,
    grant_context,
)
from tests.adapters.pg_cluster import Cluster, find_bindir, running_cluster

pytestmark = pytest.mark.postgres

BOT_PASSWORD = "Bot-pw-" + uuid.uuid4().hex  # distinctive: any message containing it is a leak
WRONG_PASSWORD = "Wrong-pw-" + uuid.uuid4().hex
PREFIX = "bg_"


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


@dataclass
class Backend:
    """A server, its superuser connection, and the objects made for the tests: a table only ``reader`` may read."""

    host: str
    port: int
    dbname: str
    superuser: dict[str, Any] = field(repr=False)
    reader: str = field(default_factory=lambda: unique("bgt_reader"))
    table: str = field(default_factory=lambda: unique("bgt_secret"))
    bot: str = field(default_factory=lambda: unique("bgt_bot"))

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(**self.superuser, connect_timeout=5, autocommit=True)

    def connect_as(self, user: str, password: str | None) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=user,
            password=password,
            connect_timeout=5,
            autocommit=True,
        )

    def params(self, **changes: Any) -> PostgresParams:
        values = {
            "host": self.host,
            "port": self.port,
            "database": self.dbname,
            "user": self.bot,
            "password": BOT_PASSWORD,
            "sslmode": "disable",
            "roles": [self.reader],
            **changes,
        }
        return PostgresParams.model_validate(values)

    def create_role(self, name: str, options: str = "") -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name)))

    def drop_roles(self, names: list[str]) -> None:
        with self.admin() as conn:
            for name in names:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                    conn.execute(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", [name]
                    )
                    conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))

    def members_of(self, role: str) -> list[str]:
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member"
                " JOIN pg_roles r ON r.oid = a.roleid WHERE r.rolname = %s AND m.rolname <> %s ORDER BY 1",
                [role, self.bot],
            ).fetchall()
        return [row[0] for row in rows]


def prepared(backend: Backend, bot_options: str, bot_grants: list[str]) -> Iterator[Backend]:
    """The reader role, its table and the bot's account on ``backend``; all dropped afterwards."""
    reader, table, bot = (sql.Identifier(name) for name in (backend.reader, backend.table, backend.bot))
    with backend.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(reader))
        conn.execute(sql.SQL("CREATE TABLE {} (secret text)").format(table))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('the crown jewels')").format(table))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(table))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, reader))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} " + bot_options).format(bot, sql.Literal(BOT_PASSWORD)))
        for grant in bot_grants:
            conn.execute(sql.SQL(grant).format(reader=reader, bot=bot))
    try:
        yield backend
    finally:
        with backend.admin() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        backend.drop_roles([backend.bot, backend.reader])


@pytest.fixture(scope="module")
def shared(postgres_server_url: str) -> Iterator[Backend]:
    """The shared server. The bot gets the minimum for `existing` logins: ADMIN OPTION and pg_signal_backend."""
    info = conninfo_to_dict(postgres_server_url)
    backend = Backend(
        host=str(info.get("host") or "127.0.0.1"),
        port=int(info.get("port") or 5432),
        dbname=str(info.get("dbname") or "postgres"),
        superuser=info,
    )
    grants = ["GRANT {reader} TO {bot} WITH ADMIN OPTION", "GRANT pg_signal_backend TO {bot}"]
    yield from prepared(backend, "NOCREATEROLE", grants)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("initdb not found: CI needs the PostgreSQL server binaries", pytrace=False)
        pytest.skip("PostgreSQL server binaries (initdb) not found: install postgresql to test temporary logins")
    with running_cluster(bindir) as running:
        yield running


@pytest.fixture(scope="module")
def private(cluster: Cluster) -> Iterator[Backend]:
    """A cluster that checks passwords. The bot gets the minimum for `temporary` logins."""
    backend = Backend(
        host=cluster.host,
        port=cluster.port,
        dbname="postgres",
        superuser={
            "host": cluster.host,
            "port": cluster.port,
            "dbname": "postgres",
            "user": cluster.superuser,
            "password": cluster.password,
        },
    )
    with backend.admin() as conn:
        version = conn.info.server_version
    grants = ["GRANT pg_signal_backend TO {bot}"]
    if version >= 160000:  # CREATEROLE alone no longer lets a role grant other roles
        grants.append("GRANT {reader} TO {bot} WITH ADMIN OPTION")
    yield from prepared(backend, "CREATEROLE", grants)


class Session:
    def __init__(self, conn: psycopg.Connection, table: str) -> None:
        self.conn = conn
        self.table = table

    def works(self) -> bool:
        try:
            self.conn.execute(sql.SQL("SELECT secret FROM {}").format(sql.Identifier(self.table))).fetchall()
        except (psycopg.OperationalError, errors.InsufficientPrivilege):
            return False
        return True

    def close(self) -> None:
        self.conn.close()


class Probe:
    """Uses access as the principal: logs in (with the receipt's password for temporary logins) and reads."""

    def __init__(self, backend: Backend, temporary: bool) -> None:
        self.backend = backend
        self.temporary = temporary
        self.prefix = PREFIX if temporary else ""
        self.made: list[str] = []
        self.standing: dict[str, str] = {}  # login -> password of a temporary-mode login a DBA made by hand

    def principal(self, hint: str = "") -> str:
        name = unique(f"{hint}bgt_user")
        self.made.append(self.prefix + name)
        if not self.temporary:  # an `existing` login must be there already
            self.backend.create_role(name, "LOGIN")
        return name

    def give_standing(self, principal: str) -> None:
        """As a DBA would: the superuser grants the role to the person's login, or (temporary mode) makes a login
        under the bot's prefix with a password of its own and the role, but without the bot's marker."""
        login = self.prefix + principal
        with self.backend.admin() as conn:
            if self.temporary:
                self.standing[login] = "Standing-pw-" + uuid.uuid4().hex
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(login), sql.Literal(self.standing[login])
                    )
                )
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.backend.reader), sql.Identifier(login)))

    def login(self, ctx: GrantContext, receipt: Receipt) -> psycopg.Connection | None:
        password = receipt.credentials or self.standing.get(self.prefix + ctx.principal)
        if self.temporary and not password:
            return None
        try:
            return self.backend.connect_as(self.prefix + ctx.principal, password)
        except psycopg.OperationalError:
            return None

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        conn = self.login(ctx, receipt)
        if conn is None:
            return False
        session = Session(conn, self.backend.table)
        try:
            return session.works()
        finally:
            session.close()

    def open_session(self, ctx: GrantContext, receipt: Receipt) -> Session:
        conn = self.login(ctx, receipt)
        assert conn is not None, "could not log in as the principal while the grant was held"
        return Session(conn, self.backend.table)

    def secrets(self) -> list[str]:
        return [BOT_PASSWORD, WRONG_PASSWORD, str(self.backend.superuser.get("password") or BOT_PASSWORD)]

    def clean_up(self) -> None:
        self.backend.drop_roles(self.made)


class TestPostgresExistingLoginContract(
    AdapterContract,
    SessionsContract,
    ReconfiguredRevokeContract,
    VerifyContract,
    ListsContract,
    StandingAccessContract,
    OneLiveGrantContract,
):
    @pytest.fixture
    def adapter(self, shared: Backend) -> PostgresAdapter:
        return PostgresAdapter(shared.params())

    @pytest.fixture
    def reconfigured(self, shared: Backend) -> PostgresAdapter:
        # Switched to temporary logins after the grant: the revoke must still take the existing login's roles.
        return PostgresAdapter(shared.params(login="temporary", login_prefix=PREFIX))

    @pytest.fixture
    def wrong_credentials(self, shared: Backend) -> PostgresAdapter:
        return PostgresAdapter(shared.params(user=unique("bgt_nobody"), password=WRONG_PASSWORD))

    @pytest.fixture
    def probe(self, shared: Backend) -> Iterator[Probe]:
        probe = Probe(shared, temporary=False)
        yield probe
        probe.clean_up()


class TestPostgresTemporaryLoginContract(
    AdapterContract,
    SessionsContract,
    BackendExpiryContract,
    ExtendContract,
    ReconfiguredRevokeContract,
    VerifyContract,
    ListsContract,
    StandingAccessContract,
    OneLiveGrantContract,
):
    expiry_seconds = 3.0  # ExtendContract: a grant, a login and two extends (a few connections) must fit
    extension_seconds = 2.5  # the login after the first end must fit
    settle_seconds = 0.2  # VALID UNTIL is checked at every login, to the microsecond
    expiry_tolerance = 5.0

    @pytest.fixture
    def adapter(self, private: Backend) -> PostgresAdapter:
        return PostgresAdapter(private.params(login="temporary", login_prefix=PREFIX))

    @pytest.fixture
    def wrong_credentials(self, private: Backend) -> PostgresAdapter:
        return PostgresAdapter(private.params(login="temporary", login_prefix=PREFIX, password=WRONG_PASSWORD))

    @pytest.fixture
    def reconfigured(self, private: Backend) -> PostgresAdapter:
        # Switched to existing logins after the grant: the revoke must still disable and drop the temporary login.
        return PostgresAdapter(private.params())

    @pytest.fixture
    def probe(self, private: Backend) -> Iterator[Probe]:
        probe = Probe(private, temporary=True)
        yield probe
        probe.clean_up()


@pytest.fixture
def probe(shared: Backend) -> Iterator[Probe]:
    probe = Probe(shared, temporary=False)
    yield probe
    probe.clean_up()


@pytest.fixture
def temporary_probe(private: Backend) -> Iterator[Probe]:
    probe = Probe(private, temporary=True)
    yield probe
    probe.clean_up()


@pytest.fixture
def temporary(private: Backend) -> PostgresAdapter:
    return PostgresAdapter(private.params(login="temporary", login_prefix=PREFIX))


def failure_of(call: Any, *args: Any) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        call(*args)
    assert BOT_PASSWORD not in str(caught.value)
    return caught.value


def assert_no_password(messages: list[str]) -> None:
    assert messages
    for message in messages:
        assert BOT_PASSWORD not in message and WRONG_PASSWORD not in message


def stored(receipt: Receipt) -> Receipt:
    """The receipt as the bot hands it back to revoke: no credentials."""
    return Receipt(data=receipt.data, instructions=receipt.instructions)


def server_version(backend: Backend) -> int:
    with backend.admin() as conn:
        return conn.info.server_version


def set_role(session: Session, role: str) -> None:
    session.conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


# Existing logins, on the shared server.


def test_an_injected_principal_is_granted_as_exactly_that_role(shared: Backend, probe: Probe) -> None:
    ctx = grant_context(probe.principal('x"; DROP ROLE postgres; --'))
    receipt = PostgresAdapter(shared.params()).grant(ctx)
    assert shared.members_of(shared.reader) == [ctx.principal]
    assert probe.can_use(ctx, receipt)
    with shared.admin() as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'").fetchone() == (True,)
        injected = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'x\"%%'").fetchone()
    assert injected == (1,)
    PostgresAdapter(shared.params()).revoke(ctx, receipt)
    assert shared.members_of(shared.reader) == []


def test_granting_to_a_login_that_does_not_exist_is_refused_and_revoking_it_succeeds(shared: Backend) -> None:
    adapter = PostgresAdapter(shared.params())
    ctx = grant_context(unique("bgt_ghost"))
    error = failure_of(adapter.grant, ctx)
    assert not error.retryable
    assert ctx.principal in str(error)
    adapter.revoke(ctx, Receipt())


def test_revoke_ends_every_session_of_the_principal(shared: Backend, probe: Probe) -> None:
    adapter = PostgresAdapter(shared.params())
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    with shared.connect_as(ctx.principal, None) as bystander:  # needs no granted privilege to stay useful
        adapter.revoke(ctx, receipt)
        with pytest.raises(psycopg.OperationalError):
            bystander.execute("SELECT 1")


def test_without_terminate_sessions_a_session_that_set_role_is_powerless_after_revoke_or_refused(
    shared: Backend, probe: Probe
) -> None:
    adapter = PostgresAdapter(shared.params(terminate_sessions=False))
    ctx = grant_context(probe.principal())
    if server_version(shared) < 160000:  # every membership allows SET ROLE, and no one can see who used it
        problems = adapter.check()
        assert len(problems) == 1, problems
        assert "params.terminate_sessions" in problems[0] and "SET ROLE" in problems[0]
        error = failure_of(adapter.grant, ctx)
        assert not error.retryable and "params.terminate_sessions" in str(error)
        assert shared.members_of(shared.reader) == []
        return
    assert adapter.check() == []
    receipt = adapter.grant(ctx)
    session = probe.open_session(ctx, receipt)
    try:
        assert session.works()  # through INHERIT
        with pytest.raises(errors.InsufficientPrivilege):
            set_role(session, shared.reader)
        adapter.revoke(ctx, receipt)
        assert session.conn.execute("SELECT 1").fetchone() == (1,)
        assert not session.works()
    finally:
        session.close()


def test_a_session_that_ran_set_role_loses_the_privilege_at_revoke(shared: Backend, probe: Probe) -> None:
    adapter = PostgresAdapter(shared.params())
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    session = probe.open_session(ctx, receipt)
    try:
        set_role(session, shared.reader)
        assert session.works()
        adapter.revoke(ctx, receipt)
        assert not session.works()
    finally:
        session.close()


def test_a_revoke_after_terminate_sessions_was_turned_off_still_ends_set_role_sessions(
    shared: Backend, probe: Probe
) -> None:
    ctx = grant_context(probe.principal())
    receipt = PostgresAdapter(shared.params()).grant(ctx)  # a membership that lets sessions SET ROLE
    session = probe.open_session(ctx, receipt)
    try:
        set_role(session, shared.reader)
        PostgresAdapter(shared.params(terminate_sessions=False)).revoke(ctx, stored(receipt))
        assert not session.works(), "a session that ran SET ROLE kept the role after the revoke"
    finally:
        session.close()


def test_a_group_role_or_a_superuser_is_refused_as_an_existing_login(shared: Backend) -> None:
    adapter = PostgresAdapter(shared.params())
    group, superuser, member = unique("bgt_group"), unique("bgt_super"), unique("bgt_member")
    shared.create_role(group, "NOLOGIN")
    shared.create_role(superuser, "LOGIN SUPERUSER")
    shared.create_role(member, f"LOGIN IN ROLE {group}")
    try:
        cases = {group: "is a group role that cannot log in", superuser: "is a superuser"}
        for name, problem in cases.items():
            assert problem in (adapter.principal_problem(name) or "")
            with pytest.raises(principal.Unmappable) as refused:  # how the requester hears it
                principal.resolve(
                    grant_context(name).user,
                    resource="orders-db",
                    template=None,
                    users={"U0CONTRACT": name},
                    adapter=adapter,
                )
            assert str(refused.value).startswith(f"Your identity on orders-db would be `{name}`, which it cannot use")
            assert problem in str(refused.value)
            error = failure_of(adapter.grant, grant_context(name))  # the role may have changed since the request
            assert not error.retryable and problem in str(error) and name in str(error)
        assert shared.members_of(shared.reader) == []
        assert adapter.principal_problem(member) is None
        temporary = PostgresAdapter(shared.params(login="temporary", login_prefix=PREFIX))
        assert temporary.principal_problem(group) is None  # its logins are the bot's own: nothing to look up
    finally:
        shared.drop_roles([member, group, superuser])


def test_a_login_made_superuser_after_the_grant_is_still_revoked(shared: Backend, probe: Probe) -> None:
    adapter = PostgresAdapter(shared.params())
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    with shared.connect_as(ctx.principal, None):
        with shared.admin() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(ctx.principal)))
        adapter.revoke(ctx, stored(receipt))  # pg_signal_backend cannot end a superuser's session
    assert shared.members_of(shared.reader) == []


def test_revoke_takes_back_the_roles_the_receipt_names_not_the_ones_configured_now(
    shared: Backend, probe: Probe
) -> None:
    other = unique("bgt_other")
    shared.create_role(other, "NOLOGIN")
    try:
        with shared.admin() as conn:
            conn.execute(
                sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(other), sql.Identifier(shared.bot))
            )
        ctx = grant_context(probe.principal())
        receipt = PostgresAdapter(shared.params()).grant(ctx)
        with shared.admin() as conn:  # a membership of the principal's own, which no grant gave
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(other), sql.Identifier(ctx.principal)))
        PostgresAdapter(shared.params(roles=[other])).revoke(ctx, stored(receipt))
        assert shared.members_of(shared.reader) == []
        assert shared.members_of(other) == [ctx.principal]
        assert not probe.can_use(ctx, receipt)
    finally:
        shared.drop_roles([other])


def test_a_role_that_is_not_a_plain_identifier_is_refused_naming_the_key(shared: Backend) -> None:
    for bad in ("oncall; DROP ROLE postgres", "Oncall", '"oncall"', "1st", "x" * 64):
        with pytest.raises(ValidationError):
            shared.params(roles=["oncall", bad])
        settings = shared.params().model_dump(mode="json") | {"password": "${PG_PASSWORD}", "roles": ["oncall", bad]}
        with pytest.raises(PolicyError) as caught:
            build("postgres", settings, "resources.db", {"PG_PASSWORD": BOT_PASSWORD})
        assert "resources.db.params.roles.1" in str(caught.value)
        assert BOT_PASSWORD not in str(caught.value)
    with pytest.raises(ValidationError, match="login_prefix"):
        shared.params(login_prefix=PREFIX)  # only temporary logins get a prefix


def test_names_longer_than_postgres_allows_are_refused(shared: Backend) -> None:
    existing = PostgresAdapter(shared.params())
    assert existing.principal_problem("z" * 63) is None
    assert "63 bytes" in (existing.principal_problem("z" * 64) or "")
    assert existing.principal_problem("é" * 32)  # 64 bytes in UTF-8
    assert existing.principal_problem('o\'brien "x"; --') is None  # quoting handles it
    assert existing.principal_problem(shared.bot)  # the bot's own account
    assert existing.principal_problem(shared.reader)
    prefixed = PostgresAdapter(shared.params(login="temporary", login_prefix=PREFIX))
    assert prefixed.principal_problem("z" * 60) is None
    assert prefixed.principal_problem("z" * 61)
    with pytest.raises(AdapterError) as caught:
        existing.grant(grant_context("z" * 64))
    assert not caught.value.retryable


def test_check_names_a_configured_role_that_does_not_exist(shared: Backend) -> None:
    missing = unique("bgt_missing")
    adapter = PostgresAdapter(shared.params(roles=[shared.reader, missing]))
    problems = adapter.check()
    assert len(problems) == 1 and missing in problems[0]
    assert_no_password(problems)
    error = failure_of(adapter.grant, grant_context(shared.bot + "_x"))
    assert missing in str(error) and not error.retryable


def test_check_names_each_privilege_the_bots_account_lacks(shared: Backend) -> None:
    bare = unique("bgt_bare_bot")
    shared.create_role(bare, "LOGIN NOCREATEROLE")
    try:
        problems = PostgresAdapter(shared.params(user=bare, login="temporary")).check()
        assert_no_password(problems)
        text = "\n".join(problems)
        assert len(problems) == 3, problems
        assert f"cannot grant '{shared.reader}'" in text and "WITH ADMIN OPTION" in text
        assert "CREATEROLE" in text
        assert "pg_signal_backend" in text
        # The account from the `shared` fixture has exactly what an `existing` login needs, and no CREATEROLE.
        assert PostgresAdapter(shared.params()).check() == []
        lacking = PostgresAdapter(shared.params(login="temporary")).check()
        assert len(lacking) == 1 and "CREATEROLE" in lacking[0]
    finally:
        shared.drop_roles([bare])


def test_an_unreachable_server_is_a_retryable_failure(shared: Backend) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound but not listening: connections are refused
        adapter = PostgresAdapter(shared.params(port=port))
        problems = adapter.check()
        assert_no_password(problems)
        assert str(port) in problems[0] and "cannot connect" in problems[0]
        error = failure_of(adapter.grant, grant_context("zoe"))
        assert error.retryable
        assert failure_of(adapter.revoke, grant_context("zoe"), Receipt()).retryable
        assert adapter.principal_problem("zoe") is None  # the request goes ahead; the grant will ask again


def test_a_refused_login_is_not_retryable(shared: Backend) -> None:
    nobody = unique("bgt_nobody")
    adapter = PostgresAdapter(shared.params(user=nobody))
    error = failure_of(adapter.grant, grant_context("zoe"))
    assert not error.retryable
    assert "refused the bot's login" in str(error) and nobody in str(error)


# Temporary logins, on the private cluster that checks passwords.


def test_a_temporary_login_expires_on_the_server_and_its_password_is_stored_hashed(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    login = PREFIX + ctx.principal
    with private.admin() as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolvaliduntil, rolpassword, shobj_description(oid, 'pg_authid') FROM pg_authid"
            " WHERE rolname = %s",
            [login],
        ).fetchone()
    assert row is not None
    can_login, valid_until, verifier, comment = row
    assert can_login and valid_until == ctx.expires_at
    assert verifier.startswith("SCRAM-SHA-256$") and receipt.credentials not in verifier
    assert comment == MARKER + ctx.resource
    assert receipt.data == {"login": login, "mode": "temporary", "roles": [private.reader], "set_role": True}
    instructions = receipt.instructions or ""
    for part in (login, private.host, str(private.port), private.dbname):
        assert part in instructions
    temporary.revoke(ctx, receipt)
    with private.admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [login]).fetchone() is None


def test_revoke_ends_the_sessions_of_a_dropped_temporary_login(
    temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    session = temporary_probe.open_session(ctx, receipt)
    try:
        temporary.revoke(ctx, receipt)
        with pytest.raises(psycopg.OperationalError):  # a session of a dropped role could still use PUBLIC's rights
            session.conn.execute("SELECT 1")
    finally:
        session.close()


def test_a_login_that_owns_objects_is_kept_disabled_and_revoked_again_safely(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    login = PREFIX + ctx.principal
    with private.admin() as conn:
        conn.execute(sql.SQL("CREATE TABLE {0} (); ALTER TABLE {0} OWNER TO {0}").format(sql.Identifier(login)))
    with caplog.at_level(logging.WARNING, logger="breakglass.adapters.postgres"):
        temporary.revoke(ctx, receipt)
    assert "kept with login disabled" in caplog.text
    with private.admin() as conn:
        row = conn.execute("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s", [login]).fetchone()
    assert row == (False, None)
    assert private.members_of(private.reader) == []
    assert not temporary_probe.can_use(ctx, receipt)
    temporary.revoke(ctx, receipt)
    second = temporary.grant(replace(ctx, grant_id="again"))  # the kept role can be granted again
    assert temporary_probe.can_use(ctx, second)
    temporary.revoke(ctx, second)
    assert not temporary_probe.can_use(ctx, second)


def test_verify_sees_the_role_through_another_role_after_the_revoke(shared: Backend, probe: Probe) -> None:
    adapter = PostgresAdapter(shared.params())
    ctx = grant_context(probe.principal())
    group = unique("bgt_group")
    shared.create_role(group, "NOLOGIN")
    try:
        with shared.admin() as conn:  # a second path a DBA made: principal -> group -> reader
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(shared.reader), sql.Identifier(group)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(ctx.principal)))
        receipt = adapter.grant(ctx)
        adapter.revoke(ctx, stored(receipt))
        assert probe.can_use(ctx, receipt), "the second path did not work, so the test proves nothing"
        assert adapter.verify(ctx, stored(receipt)) is True, "the revoke was believed though access remains"
        # Not the bot's to list: the membership is the group's, granted by hand.
        assert [h for h in adapter.holdings(everything=False) if h.principal == ctx.principal] == []
    finally:
        shared.drop_roles([group])
    assert adapter.verify(ctx, stored(receipt)) is False


def test_a_temporary_login_kept_disabled_is_neither_access_nor_a_holding(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    login = PREFIX + ctx.principal
    with private.admin() as conn:  # owns an object, so the revoke cannot drop it
        conn.execute(sql.SQL("CREATE TABLE {0} (); ALTER TABLE {0} OWNER TO {0}").format(sql.Identifier(login)))
    assert temporary.verify(ctx, stored(receipt)) is True
    temporary.revoke(ctx, stored(receipt))
    assert temporary.verify(ctx, stored(receipt)) is False
    assert [h for h in temporary.holdings(everything=True) if h.principal == ctx.principal] == []


def test_a_same_named_role_the_bot_did_not_create_is_left_alone(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    login = PREFIX + ctx.principal
    theirs = Receipt(credentials="Theirs-" + uuid.uuid4().hex)
    private.create_role(login, f"LOGIN PASSWORD '{theirs.credentials}'")
    error = failure_of(temporary.grant, ctx)
    assert not error.retryable and login in str(error)
    temporary.revoke(ctx, Receipt(data={"login": login}))
    with private.connect_as(login, theirs.credentials) as conn:  # its own password still works
        assert conn.execute("SELECT current_user").fetchone() == (login,)


def test_a_temporary_login_belongs_to_one_resource(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal(), resource="reporting-db")
    receipt = temporary.grant(ctx)
    error = failure_of(temporary.grant, replace(ctx, resource="billing-db"))
    assert "reporting-db" in str(error) and "login_prefix" in str(error)
    temporary.revoke(replace(ctx, resource="billing-db"), receipt)  # not its login: untouched
    assert temporary_probe.can_use(ctx, receipt)
    temporary.revoke(ctx, receipt)
    assert not temporary_probe.can_use(ctx, receipt)


def test_a_temporary_login_is_dropped_by_a_revoke_after_the_resource_switched_to_existing_logins(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    login = PREFIX + ctx.principal
    session = temporary_probe.open_session(ctx, receipt)
    try:
        PostgresAdapter(private.params()).revoke(ctx, stored(receipt))
        with pytest.raises(psycopg.OperationalError):
            session.conn.execute("SELECT 1")
    finally:
        session.close()
    with private.admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [login]).fetchone() is None
    with pytest.raises(psycopg.OperationalError):  # not even PUBLIC's rights are left to the password
        private.connect_as(login, receipt.credentials).close()


def test_a_login_with_a_wrong_password_is_refused_without_showing_it(private: Backend) -> None:
    adapter = PostgresAdapter(private.params(password=WRONG_PASSWORD, login="temporary"))
    problems = adapter.check()
    assert_no_password(problems)
    assert "password authentication failed" in problems[0]
    assert not failure_of(adapter.grant, grant_context("zoe")).retryable
    assert PostgresAdapter(private.params(login="temporary", login_prefix=PREFIX)).check() == []


def test_expiry_must_be_in_the_future_for_a_login_to_work(temporary: PostgresAdapter, temporary_probe: Probe) -> None:
    ctx = grant_context(temporary_probe.principal(), expires_in=timedelta(seconds=-1))
    receipt = temporary.grant(ctx)  # e.g. a grant retried after its window closed
    assert not temporary_probe.can_use(ctx, receipt)
    temporary.revoke(ctx, receipt)


def test_extend_moves_valid_until_and_nothing_else(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    login = PREFIX + ctx.principal
    query = "SELECT rolcanlogin, rolvaliduntil, rolpassword FROM pg_authid WHERE rolname = %s"
    with private.admin() as conn:
        before = conn.execute(query, [login]).fetchone()
    later = replace(ctx, expires_at=ctx.expires_at + timedelta(hours=2))
    temporary.extend(later, Receipt(data=receipt.data))
    with private.admin() as conn:
        after = conn.execute(query, [login]).fetchone()
    assert before is not None and after is not None
    assert after == (True, later.expires_at, before[2])  # the same password verifier
    assert private.members_of(private.reader) == [login]
    temporary.revoke(later, receipt)


def test_extend_leaves_a_same_named_role_the_bot_did_not_create_alone(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    login = PREFIX + ctx.principal
    private.create_role(login, "LOGIN VALID UNTIL '2031-01-01'")
    error = failure_of(temporary.extend, replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), Receipt())
    assert not error.retryable and "not this resource's temporary login" in str(error)
    with private.admin() as conn:
        row = conn.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", [login]).fetchone()
    assert row is not None and row[0].year == 2031


def test_extend_does_not_wake_a_login_a_revoke_kept_disabled(
    private: Backend, temporary: PostgresAdapter, temporary_probe: Probe
) -> None:
    ctx = grant_context(temporary_probe.principal())
    receipt = temporary.grant(ctx)
    login = PREFIX + ctx.principal
    with private.admin() as conn:  # it owns a table, so the revoke keeps it, disabled
        conn.execute(sql.SQL("CREATE TABLE {0} (); ALTER TABLE {0} OWNER TO {0}").format(sql.Identifier(login)))
    temporary.revoke(ctx, receipt)
    error = failure_of(temporary.extend, replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), receipt)
    assert not error.retryable and "revoked" in str(error)
    with private.admin() as conn:
        row = conn.execute("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s", [login]).fetchone()
    assert row == (False, None)
    assert not temporary_probe.can_use(ctx, receipt)


def test_extending_membership_of_an_existing_login_is_left_to_the_bots_revoke(shared: Backend, probe: Probe) -> None:
    adapter = PostgresAdapter(shared.params())
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    later = replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1))
    unreachable = PostgresAdapter(shared.params(port=1))  # nothing to move, so nothing is even asked
    unreachable.extend(later, Receipt(data=receipt.data))
    adapter.extend(later, Receipt(data=receipt.data))
    assert probe.can_use(later, receipt)
    adapter.revoke(later, receipt)
    assert not probe.can_use(later, receipt)
