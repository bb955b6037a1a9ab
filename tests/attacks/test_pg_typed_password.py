"""Attack kept as a regression test: a password typed into ALTER ROLE … PASSWORD, captured by pgaudit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bot.testing.contract import grant_context
from tests.adapters.conftest import postgres_server_url  # noqa: F401
from tests.adapters.test_postgres import Backend
from tests.adapters.test_postgres_activity import (  # noqa: F401
    ActingProbe,
    audited,
    audited_cluster,
    capture_adapter,
    done,
    probe,
    read_until,
    watched,
)


def test_a_password_in_a_captured_statement_is_blanked(audited: Backend, probe: ActingProbe) -> None:  # noqa: F811
    adapter = capture_adapter(audited)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    secret = "Typed-" + uuid.uuid4().hex
    marker = f"bgpw{uuid.uuid4().hex[:8]}"
    try:
        probe.run(ctx, receipt, f"ALTER ROLE CURRENT_USER PASSWORD '{secret}' /* {marker} */")
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        mine = [item.action for item in seen if marker in item.action or "PASSWORD" in item.action.upper()]
        assert mine, [item.action for item in seen]
        assert all(secret not in action for action in mine), f"a typed password was captured: {mine}"
    finally:
        done(adapter, ctx, receipt)
