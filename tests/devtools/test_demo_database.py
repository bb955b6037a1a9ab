"""The demo's toy database passes the activity contract, like the adapters whose capture it stands in for."""

from __future__ import annotations

import uuid

import pytest

from bot.adapters.base import GrantContext, Receipt
from bot.devtools.demo_database import DemoDatabase, DemoDatabaseAdapter, DemoDatabaseParams
from bot.testing.activity_contract import ActivityContract
from bot.testing.contract import grant_context


class Probe:
    def __init__(self, database: str) -> None:
        self.database = DemoDatabase.named(database)

    def principal(self, hint: str = "") -> str:
        return f"demo_{uuid.uuid4().hex[:8]}"

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        try:
            self.database.run(ctx.principal, "SELECT 1")
        except PermissionError:
            return False
        return True

    def secrets(self) -> list[str]:
        return []

    def act(self, ctx: GrantContext, receipt: Receipt, marker: str) -> None:
        self.database.run(ctx.principal, f"SELECT '{marker}'")


class BrokenDemoDatabase(DemoDatabaseAdapter):
    """The demo database has no credentials to get wrong: a cursor from elsewhere is its unreadable record."""

    def activity(self, ctx, receipt, since, cursor):  # type: ignore[no-untyped-def]
        return super().activity(ctx, receipt, since, "not-a-cursor")


@pytest.fixture
def database() -> str:
    return f"contract_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def adapter(database: str) -> DemoDatabaseAdapter:
    return DemoDatabaseAdapter(DemoDatabaseParams(database=database, access="write", capture=True))


@pytest.fixture
def wrong_credentials(database: str) -> DemoDatabaseAdapter:
    return BrokenDemoDatabase(DemoDatabaseParams(database=database, capture=True))


@pytest.fixture
def probe(database: str) -> Probe:
    return Probe(database)


class TestDemoDatabaseActivity(ActivityContract):
    pass


def test_read_access_cannot_write_and_nothing_is_recorded_unwatched(database: str) -> None:
    adapter = DemoDatabaseAdapter(DemoDatabaseParams(database=database, access="read"))
    ctx = grant_context("demo_reader")
    receipt = adapter.grant(ctx)
    db = DemoDatabase.named(database)
    assert db.run("demo_reader", "SELECT * FROM orders") == "ok"
    with pytest.raises(PermissionError):
        db.run("demo_reader", "DELETE FROM orders")
    assert db.log == [], "an unwatched principal was recorded"
    adapter.revoke(ctx, receipt)
    with pytest.raises(PermissionError):
        db.run("demo_reader", "SELECT 1")
