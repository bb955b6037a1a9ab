"""Engines and transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from bot.store.chain import AuditSeal, install
from bot.store.urls import engine_url


def make_engine(url: str) -> Engine:
    parsed = engine_url(url)  # psycopg 3 for postgresql://, PyMySQL for mysql://
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # By default libpq waits for a connection as long as the OS does (minutes): with the server unreachable,
        # /healthz and every person's command would hang instead of saying so. 2 s is libpq's smallest.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args=connect_args)


CONNECT_TIMEOUT = 2  # seconds


def _nothing() -> None:
    return None


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    if cursor.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class Database:
    """Transactions on one engine. Audit events added in a transaction are sealed into the hash chain as it commits,
    with ``seal``'s key; without one, with plain SHA-256 (key id "unkeyed"), which proves nothing against anyone
    who can write to the database: for tests and tools, never for `serve`."""

    def __init__(self, engine: Engine, seal: AuditSeal | None = None) -> None:
        self.engine = engine
        self.seal = seal or AuditSeal(None)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        install(self._sessions, self.seal)
        self.before_each: Callable[[], None] = _nothing  # the runtime lets acks go first here (bot/slack/after_ack.py)

    @classmethod
    def from_url(cls, url: str, seal: AuditSeal | None = None) -> Database:
        return cls(make_engine(url), seal)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success (sealing its audit events last), rolls back on any error."""
        self.before_each()
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
