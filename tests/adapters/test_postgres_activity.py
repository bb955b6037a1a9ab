"""Activity capture of the postgres adapter (pgaudit), against a private cluster that preloads pgaudit and writes a
JSON log: the shared server does not load pgaudit, and loading it needs a restart. The cluster is the test's own and
is removed afterwards, so its server settings need no undoing; role settings made by a test are undone by it.

The bot's account gets only what docs/adapters/postgres.md asks for capture, so a missing privilege fails here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from bot.adapters.base import MAX_ACTION, Activity, AdapterError, GrantContext, Receipt
from bot.adapters.postgres import PostgresAdapter
from bot.adapters.postgres_activity import CHUNK, WATCH_SETTING, csv_fields, log_time
from bot.adapters.registry import build
from bot.policy import PolicyError
from bot.testing.activity_contract import ActivityContract
from bot.testing.contract import grant_context
from tests.adapters.pg_cluster import Cluster, find_bindir, running_cluster
from tests.adapters.test_postgres import PREFIX, WRONG_PASSWORD, Backend, Probe, prepared, unique

pytestmark = pytest.mark.postgres

AUDIT_SETTINGS = {
    "shared_preload_libraries": "'pgaudit'",
    "logging_collector": "on",
    "log_destination": "'jsonlog'",
}
CAPTURE_GRANTS = [
    "GRANT pg_signal_backend TO {bot}",
    "GRANT SET ON PARAMETER pgaudit.log TO {bot}",
    f"GRANT SET ON PARAMETER {WATCH_SETTING} TO {{bot}}",
    "GRANT EXECUTE ON FUNCTION pg_current_logfile(text) TO {bot}",
    "GRANT EXECUTE ON FUNCTION pg_ls_logdir() TO {bot}",
    "GRANT EXECUTE ON FUNCTION pg_read_binary_file(text, bigint, bigint, boolean) TO {bot}",
]
SETTLE = 15.0


@pytest.fixture(scope="module")
def audited_cluster(postgres_server_url: str) -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("initdb not found: CI needs the PostgreSQL server binaries", pytrace=False)
        pytest.skip("PostgreSQL server binaries (initdb) not found: install postgresql to test activity capture")
    if not (bindir.parent / "lib" / "pgaudit.so").exists() and not os.environ.get("CI"):
        pytest.skip(f"pgaudit is not installed for {bindir.parent} (Debian: postgresql-<major>-pgaudit)")
    with running_cluster(bindir, AUDIT_SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def audited(audited_cluster: Cluster) -> Iterator[Backend]:
    """The bot's account with the least that capture needs, for both login modes."""
    backend = Backend(
        host=audited_cluster.host,
        port=audited_cluster.port,
        dbname="postgres",
        superuser={
            "host": audited_cluster.host,
            "port": audited_cluster.port,
            "dbname": "postgres",
            "user": audited_cluster.superuser,
            "password": audited_cluster.password,
        },
    )
    with backend.admin() as conn:
        admin_option = conn.info.server_version >= 160000
    grants = [*CAPTURE_GRANTS, *(["GRANT {reader} TO {bot} WITH ADMIN OPTION"] if admin_option else [])]
    yield from prepared(backend, "CREATEROLE", grants)


class ActingProbe(Probe):
    """Logs in as the principal (every login here has a password: the cluster checks them) and runs a statement."""

    def principal(self, hint: str = "") -> str:
        name = unique(f"{hint}bgt_user")
        self.made.append(self.prefix + name)
        if not self.temporary:
            self.standing[name] = "User-pw-" + uuid.uuid4().hex
            self.backend.create_role(name, f"LOGIN PASSWORD '{self.standing[name]}'")
        return name

    def act(self, ctx: GrantContext, receipt: Receipt, marker: str) -> None:
        self.run(
            ctx,
            receipt,
            sql.SQL("SELECT secret, {} FROM {}").format(sql.Literal(marker), sql.Identifier(self.backend.table)),
        )

    def run(self, ctx: GrantContext, receipt: Receipt, statement: sql.Composable | str) -> None:
        conn = self.login(ctx, receipt)
        assert conn is not None, "could not log in as the principal"
        with conn:
            conn.execute(statement)


def capture_adapter(backend: Backend, **changes: Any) -> PostgresAdapter:
    return PostgresAdapter(backend.params(capture="pgaudit", **changes))


class TestPostgresExistingLoginActivity(ActivityContract):
    @pytest.fixture
    def adapter(self, audited: Backend) -> PostgresAdapter:
        return capture_adapter(audited)

    @pytest.fixture
    def wrong_credentials(self, audited: Backend) -> PostgresAdapter:
        return capture_adapter(audited, password=WRONG_PASSWORD)

    @pytest.fixture
    def probe(self, audited: Backend) -> Iterator[ActingProbe]:
        probe = ActingProbe(audited, temporary=False)
        yield probe
        probe.clean_up()


class TestPostgresTemporaryLoginActivity(ActivityContract):
    @pytest.fixture
    def adapter(self, audited: Backend) -> PostgresAdapter:
        return capture_adapter(audited, login="temporary", login_prefix=PREFIX)

    @pytest.fixture
    def wrong_credentials(self, audited: Backend) -> PostgresAdapter:
        return capture_adapter(audited, login="temporary", login_prefix=PREFIX, password=WRONG_PASSWORD)

    @pytest.fixture
    def probe(self, audited: Backend) -> Iterator[ActingProbe]:
        probe = ActingProbe(audited, temporary=True)
        yield probe
        probe.clean_up()


@pytest.fixture
def probe(audited: Backend) -> Iterator[ActingProbe]:
    probe = ActingProbe(audited, temporary=False)
    yield probe
    probe.clean_up()


def read_until(
    adapter: PostgresAdapter, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None, marker: str
) -> tuple[list[Activity], str | None]:
    """Every page until ``marker`` shows up (or SETTLE seconds pass), and the cursor after them."""
    seen: list[Activity] = []
    give_up = time.monotonic() + SETTLE
    while True:
        page = adapter.activity(ctx, receipt, since, cursor)
        seen.extend(page.items)
        cursor = page.cursor
        if not page.more and (any(marker in item.action for item in seen) or time.monotonic() > give_up):
            return seen, cursor
        if not page.more:
            time.sleep(0.1)


def role_settings(backend: Backend, login: str) -> dict[str, str]:
    with backend.admin() as conn:
        row = conn.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname = %s AND s.setdatabase = 0",
            [login],
        ).fetchone()
    return dict(item.partition("=")[::2] for item in (row[0] if row and row[0] else []))


def watched(adapter: PostgresAdapter, ctx: GrantContext) -> Receipt:
    receipt = adapter.grant(ctx)
    adapter.watch(ctx, receipt)
    return receipt


def done(adapter: PostgresAdapter, ctx: GrantContext, receipt: Receipt) -> None:
    adapter.revoke(ctx, receipt)
    adapter.unwatch(ctx, receipt)


def test_a_statement_with_quotes_commas_and_newlines_is_read_back_exactly(audited: Backend, probe: ActingProbe) -> None:
    adapter = capture_adapter(audited)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    marker = f"bgq{uuid.uuid4().hex[:8]}"
    statement = f"SELECT 'it''s, \"{marker}\"\n  second line', 2 AS \"odd, name\""
    try:
        probe.run(ctx, receipt, statement)
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        mine = [item for item in seen if marker in item.action]
        assert [item.action for item in mine] == [statement]
        detail = mine[0].detail
        assert (detail["class"], detail["command"], detail["database"]) == ("READ", "SELECT", "postgres")
        assert detail["session"] and mine[0].principal == ctx.principal
    finally:
        done(adapter, ctx, receipt)


def test_a_statement_longer_than_a_log_read_is_cut_and_marked(audited: Backend, probe: ActingProbe) -> None:
    adapter = capture_adapter(audited)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    marker = f"bglong{uuid.uuid4().hex[:8]}"
    try:
        # Longer than one read of the log, too: the line is read again whole.
        probe.run(ctx, receipt, f"SELECT '{marker}', '{'x' * (CHUNK + CHUNK // 2)}'")
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        mine = [item for item in seen if marker in item.action]
        assert len(mine) == 1 and len(mine[0].action) == MAX_ACTION
        assert mine[0].action.endswith("[cut]") and "x" * 100 in mine[0].action
    finally:
        done(adapter, ctx, receipt)


def test_reading_goes_on_across_a_log_rotation_without_loss_or_repeat(audited: Backend, probe: ActingProbe) -> None:
    adapter = capture_adapter(audited)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    before, during, after = (f"bg{name}{uuid.uuid4().hex[:8]}" for name in ("before", "during", "after"))
    try:
        probe.act(ctx, receipt, before)
        _, cursor = read_until(adapter, ctx, receipt, since, None, before)
        assert cursor is not None
        probe.act(ctx, receipt, during)  # written to the old file, not read before it is rotated away
        with audited.admin() as conn:
            old = conn.execute("SELECT pg_current_logfile('jsonlog')").fetchone()
            time.sleep(1.1)  # log file names carry the second they were opened
            conn.execute("SELECT pg_rotate_logfile()")
            for _ in range(50):
                if conn.execute("SELECT pg_current_logfile('jsonlog')").fetchone() != old:
                    break
                time.sleep(0.1)
            assert conn.execute("SELECT pg_current_logfile('jsonlog')").fetchone() != old
        assert json.loads(cursor)["file"] == old[0]
        probe.act(ctx, receipt, after)
        later, cursor = read_until(adapter, ctx, receipt, since, cursor, after)
        actions = " ".join(item.action for item in later)
        assert before not in actions and actions.count(during) == 1 and actions.count(after) == 1
        assert json.loads(cursor or "{}")["file"] != old[0]
    finally:
        done(adapter, ctx, receipt)


def test_a_session_opened_before_watch_is_ended_and_the_next_one_recorded(audited: Backend, probe: ActingProbe) -> None:
    adapter = capture_adapter(audited, terminate_sessions=True)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    early = probe.open_session(ctx, Receipt())
    receipt = adapter.grant(ctx)
    assert early.works()  # it has the access and no capture: it must not outlive watch
    adapter.watch(ctx, receipt)
    marker = f"bgafter{uuid.uuid4().hex[:8]}"
    try:
        assert not early.works()
        later = probe.open_session(ctx, receipt)
        adapter.watch(ctx, receipt)  # repeated: a session recorded since the first watch stays open
        assert later.works()
        later.conn.execute(sql.SQL("SELECT {}").format(sql.Literal(marker)))  # a bound parameter shows as $1
        later.close()
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        assert any(marker in item.action for item in seen)
    finally:
        early.close()
        done(adapter, ctx, receipt)


def test_two_grants_of_one_login_are_counted_and_the_dbas_setting_comes_back(
    audited: Backend, probe: ActingProbe
) -> None:
    one, other = capture_adapter(audited), capture_adapter(audited, capture_classes=["ddl", "write"])
    principal = probe.principal()
    with audited.admin() as conn:  # a DBA already audits this login's DDL
        conn.execute(sql.SQL("ALTER ROLE {} SET pgaudit.log = 'ddl'").format(sql.Identifier(principal)))
    first, second = grant_context(principal), grant_context(principal)
    first_receipt, second_receipt = watched(one, first), watched(other, second)
    assert role_settings(audited, principal)["pgaudit.log"] == "ddl,all,write"
    since = datetime.now(UTC)
    one.unwatch(first, first_receipt)  # the other grant still watches
    assert role_settings(audited, principal)["pgaudit.log"] == "ddl,all,write"
    marker = f"bgstill{uuid.uuid4().hex[:8]}"
    probe.act(second, second_receipt, marker)
    seen, _ = read_until(other, second, second_receipt, since, None, marker)
    assert any(marker in item.action for item in seen)
    done(other, second, second_receipt)
    one.revoke(first, first_receipt)
    one.unwatch(first, first_receipt)  # again: idempotent
    assert role_settings(audited, principal) == {"pgaudit.log": "ddl"}
    with audited.admin() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(principal)))


def test_the_bots_own_statements_are_never_read(audited: Backend, probe: ActingProbe) -> None:
    adapter = capture_adapter(audited)
    with audited.admin() as conn:  # even with the bot's own account audited
        conn.execute(sql.SQL("ALTER ROLE {} SET pgaudit.log = 'all'").format(sql.Identifier(audited.bot)))
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    marker = f"bgown{uuid.uuid4().hex[:8]}"
    try:
        adapter.activity(ctx, receipt, since, None)
        probe.act(ctx, receipt, marker)
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        assert any(marker in item.action for item in seen)
        assert {item.principal for item in seen} == {ctx.principal}
        assert not any("pg_read_binary_file" in item.action or "ALTER ROLE" in item.action for item in seen)
    finally:
        done(adapter, ctx, receipt)
        with audited.admin() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} RESET pgaudit.log").format(sql.Identifier(audited.bot)))


def test_a_cursor_from_before_a_restart_goes_on_and_a_foreign_one_is_refused(
    audited: Backend, probe: ActingProbe
) -> None:
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(capture_adapter(audited), ctx)
    first, second = f"bgone{uuid.uuid4().hex[:8]}", f"bgtwo{uuid.uuid4().hex[:8]}"
    try:
        probe.act(ctx, receipt, first)
        _, cursor = read_until(capture_adapter(audited), ctx, receipt, since, None, first)
        probe.act(ctx, receipt, second)
        later, _ = read_until(capture_adapter(audited), ctx, receipt, since, cursor, second)  # a new process
        assert any(second in item.action for item in later) and not any(first in item.action for item in later)
        for foreign in ("0-42", '{"file": "../../etc/passwd", "offset": 0}', '{"file": "log/x.json", "offset": -1}'):
            with pytest.raises(AdapterError) as raised:
                capture_adapter(audited).activity(ctx, receipt, since, foreign)
            assert not raised.value.retryable
    finally:
        done(capture_adapter(audited), ctx, receipt)


def test_check_passes_with_the_documented_privileges(audited: Backend) -> None:
    assert capture_adapter(audited).check() == []
    assert capture_adapter(audited, login="temporary", login_prefix=PREFIX).check() == []


def test_check_names_each_missing_privilege(audited: Backend) -> None:
    bare = unique("bgt_bare")
    with audited.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'bare-pw'").format(sql.Identifier(bare)))
    try:
        problems = capture_adapter(audited, user=bare, password="bare-pw").check()
        capture = [problem for problem in problems if problem.startswith("params.capture")]
        text = "\n".join(capture)
        for needed in (
            "GRANT SET ON PARAMETER pgaudit.log",
            f"GRANT SET ON PARAMETER {WATCH_SETTING}",
            "pg_read_binary_file",
            "pg_ls_logdir",
            "pg_current_logfile",
            "CREATEROLE",
            "pg_signal_backend",
        ):
            assert needed in text, (needed, capture)
    finally:
        audited.drop_roles([bare])


def test_check_says_when_the_server_does_not_load_pgaudit(postgres_server_url: str) -> None:
    """The shared server runs without pgaudit: exactly what a server not set up for capture looks like."""
    info = psycopg.conninfo.conninfo_to_dict(postgres_server_url)
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    if preload and "pgaudit" in preload[0]:
        pytest.skip("the shared server preloads pgaudit")
    adapter = PostgresAdapter(
        PostgresAdapter.Params.model_validate(
            {
                "host": str(info.get("host") or "127.0.0.1"),
                "port": int(info.get("port") or 5432),
                "database": str(info.get("dbname") or "postgres"),
                "user": str(info.get("user") or "postgres"),
                "sslmode": "disable",
                "roles": ["pg_monitor"],
                "capture": "pgaudit",
            }
        )
    )
    problems = adapter.check()
    assert any(
        p.startswith("params.capture: pgaudit is not loaded") and "shared_preload_libraries" in p for p in problems
    ), problems


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"capture": "on"}, "params.capture:"),
        ({"capture_classes": ["ddl"]}, "params.capture_classes: only used with capture: pgaudit"),
        ({"capture": "pgaudit", "capture_classes": ["everything"]}, "params.capture_classes.0:"),
        ({"capture": "pgaudit", "capture_classes": []}, "params.capture_classes:"),
    ],
)
def test_capture_params_are_validated_naming_the_key(params: dict[str, Any], key: str) -> None:
    base = {"host": "db", "database": "app", "user": "bot", "roles": ["reader"]}
    with pytest.raises(PolicyError) as raised:
        build("postgres", {**base, **params}, "resources.db", {})
    assert key in str(raised.value)


def test_a_session_cannot_turn_its_own_recording_off(audited: Backend, probe: ActingProbe) -> None:
    adapter = capture_adapter(audited)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    try:
        session = probe.open_session(ctx, receipt)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.conn.execute("SET pgaudit.log = 'none'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.conn.execute(sql.SQL("ALTER ROLE {} RESET pgaudit.log").format(sql.Identifier(ctx.principal)))
        session.close()
    finally:
        done(adapter, ctx, receipt)


def test_log_times_in_a_local_zone_are_read_as_utc_on_both_sides_of_a_clock_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # 2026-10-25 03:00 CEST goes back to 02:00 CET
    assert log_time("2026-10-25 02:30:00.250 CEST", berlin) == datetime(2026, 10, 25, 0, 30, 0, 250000, tzinfo=UTC)
    assert log_time("2026-10-25 02:30:00.250 CET", berlin) == datetime(2026, 10, 25, 1, 30, 0, 250000, tzinfo=UTC)
    assert log_time("2026-12-03 13:59:30.752 UTC", berlin) == datetime(2026, 12, 3, 13, 59, 30, 752000, tzinfo=UTC)


@pytest.mark.parametrize(
    "line",
    ['SESSION,1,1,READ,SELECT,TABLE,"public.""a,b""","SELECT 1, \'x""y\'\n",<not logged>', "a,,b,", '"",x', "plain"],
)
def test_pgaudit_csv_is_split_as_the_csv_module_would(line: str) -> None:
    assert csv_fields(line) == next(csv.reader(io.StringIO(line)))
