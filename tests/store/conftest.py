"""A migrated database whose transactions seal audit events with a known key, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.store import schema
from bot.store.chain import AuditSeal
from bot.store.db import Database

KEY = "test-audit-key-3f9a1c7e5b2d4816e0c97f3b5a1d2e84"
OLD_KEY = "retired-audit-key-8c1e0a7f3b9d2c4e6a5f7b1d3c9e"


@pytest.fixture
def seal() -> AuditSeal:
    return AuditSeal(KEY)


@pytest.fixture
def db(database_url: str, seal: AuditSeal) -> Iterator[Database]:
    database = Database.from_url(database_url, seal)
    schema.upgrade(database.engine)
    yield database
    database.dispose()
