"""A PostgreSQL server as a resource's backend, for end-to-end tests of verify and reconcile: a role that exists only
for break-glass, the bot's own account with ADMIN OPTION on it, and logins for people, all with unique names and all
dropped afterwards. Runs on the shared test server (trust auth on loopback, so no passwords are involved)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg import connect, sql
from psycopg.conninfo import conninfo_to_dict


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


@dataclass
class PgBackend:
    conninfo: dict[str, Any] = field(repr=False)
    role: str = field(default_factory=lambda: unique("bge_oncall"))
    bot: str = field(default_factory=lambda: unique("bge_bot"))
    made: list[str] = field(default_factory=list)

    def admin(self, sql_text: str | sql.Composed, *args: Any) -> list[tuple[Any, ...]]:
        with connect(**self.conninfo, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql_text, args or None)
            return cursor.fetchall() if cursor.description else []

    def login(self, stem: str) -> str:
        name = unique(stem)
        self.admin(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        self.made.append(name)
        return name

    def role_made(self, stem: str) -> str:
        name = unique(stem)
        self.admin(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        self.made.append(name)
        return name

    def holds(self, login: str) -> bool:
        """Whether ``login`` has the break-glass role by any path."""
        [(held,)] = self.admin("SELECT pg_has_role(%s, %s, 'MEMBER')", login, self.role)
        return bool(held)

    def grant(self, role: str, to: str) -> None:
        """A grant made by hand (the server's superuser is its grantor): standing access, or a second path."""
        self.admin(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(to)))

    def revoke(self, role: str, frm: str) -> None:
        self.admin(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), sql.Identifier(frm)))

    def resource_yaml(self, name: str, users: dict[str, str], reconcile: str | None = None) -> str:
        params = {
            "host": self.conninfo.get("host") or "127.0.0.1",
            "port": int(self.conninfo.get("port") or 5432),
            "database": self.conninfo.get("dbname") or "postgres",
            "user": self.bot,
            "sslmode": "disable",
            "roles": [self.role],
        }
        flow = ", ".join(f"{key}: {value if isinstance(value, int) else repr(value)}" for key, value in params.items())
        people = ", ".join(f"{slack}: {login}" for slack, login in users.items())
        extra = f"\n    reconcile: {reconcile}" if reconcile else ""
        return (
            f"  {name}:\n    adapter: postgres\n    users: {{{people}}}\n    params: {{{flow}}}\n"
            f"    approvers: [U0ALICE01]{extra}\n"
        )


@pytest.fixture(name="pg_backend")
def pg_backend_fixture() -> Iterator[PgBackend]:
    """Import this into a test module to use the ``pg_backend`` fixture."""
    url = os.environ.get("BREAKGLASS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("BREAKGLASS_TEST_POSTGRES_URL must be set in CI", pytrace=False)
        pytest.skip("set BREAKGLASS_TEST_POSTGRES_URL to use PostgreSQL as a backend")
    backend = PgBackend(conninfo_to_dict(url))
    role, bot = sql.Identifier(backend.role), sql.Identifier(backend.bot)
    backend.admin(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    backend.admin(sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE").format(bot))
    backend.admin(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(role, bot))
    backend.admin(sql.SQL("GRANT pg_signal_backend TO {}").format(bot))
    try:
        yield backend
    finally:
        for name in [*backend.made, backend.bot, backend.role]:
            backend.admin(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
