"""Shared fixtures: databases (SQLite always, PostgreSQL when its URL is set) and the real bot over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

POSTGRES_ENV = "BREAKGLASS_TEST_POSTGRES_URL"

# Hypothesis fails an example that takes over 200 ms, and a run whose examples are slow to make: both measure how
# busy the machine is, not the code. Properties here are about answers, never speed.
settings.register_profile("breakglass", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("breakglass")


# Run one at a time (.ci/test's second pass): tests that start their own servers (a PostgreSQL cluster, MariaDB,
# slapd, moto), measure takeovers in real time, or run the bot as a process. Everything else has a database of its own
# (a file, a schema) and loopback ports picked free, so it runs two at a time.
SERIAL = (
    "tests/resilience/",
    "tests/adapters/",
    "tests/attacks/",
    "tests/test_serve",
    "tests/test_cli.py",
    "tests/test_config_mistakes.py",
    "tests/test_audit_cli.py",
    "tests/test_drill_cli.py",
    "tests/test_operator_cli.py",  # roles on the shared PostgreSQL server, as test_verified_revokes makes them
    "tests/e2e/test_database_outage.py",
    "tests/e2e/test_heartbeat.py",
    "tests/e2e/test_watched_session.py",
    "tests/e2e/test_levels_postgres.py",
    "tests/e2e/test_reconcile.py",
    "tests/e2e/test_verified_revokes.py",
    "tests/e2e/test_metrics_database_down.py",  # a PostgreSQL cluster stopped; scrapes timed in real time
    "tests/services/test_audit_streaming.py",  # syslog and HMAC receivers restarted on fixed loopback ports
    "tests/services/test_audit_sinks_wiring.py",
)
NOT_SERIAL = (
    "tests/attacks/test_approval_flow_attacks.py",
    "tests/attacks/test_operations_attacks.py",  # its own SQLite file and toy databases; no server, no real time
    "tests/attacks/test_form_and_home_attacks.py",  # a database of its own per test; stand-ins on free ports
    # The bot over HTTP with its own database and free ports, on the injected clock: two at a time is safe.
    "tests/attacks/test_policy_and_record_integrity.py",
    "tests/attacks/test_same_person_and_levels.py",
    "tests/attacks/test_levels_and_reads.py",
    # Adapters whose backends the tests start themselves, each on a free port or in a directory of its own:
    "tests/adapters/test_kubernetes.py",
    "tests/adapters/test_aws_iam.py",
    "tests/adapters/test_webhook.py",
    "tests/adapters/test_command.py",
    "tests/adapters/test_registry.py",
    "tests/adapters/test_principal.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        where = item.path.relative_to(root).as_posix()
        if where.startswith(SERIAL) and not where.startswith(NOT_SERIAL):
            item.add_marker(pytest.mark.serial)


def _postgres_base() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_ENV} must be set in CI: PostgreSQL tests never skip there", pytrace=False)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh, empty database: a SQLite file, or a schema of its own on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'breakglass.db'}"
        return
    yield from _postgres_schema()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A schema of its own on PostgreSQL, for what only PostgreSQL can do (replicas sharing one database)."""
    yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    base = _postgres_base()
    if not base:
        pytest.skip(f"set {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) to run against PostgreSQL")
    schema = f"bg_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
