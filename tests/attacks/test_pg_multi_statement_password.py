"""Attack kept as a regression test: a password in a multi-statement query, captured by pgaudit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from bot.redaction import blank_password_literals
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


@pytest.mark.parametrize(
    "template",
    [
        "SELECT '{marker}'; ALTER ROLE CURRENT_USER PASSWORD '{secret}'",
        "SELECT '{marker}'; ALTER ROLE CURRENT_USER PASSWORD $${secret}$$",
        "SELECT '{marker}'; ALTER ROLE CURRENT_USER PASSWORD E'{secret}'",
        "SELECT '{marker}'; ALTER ROLE CURRENT_USER PASSWORD /* c */ '{secret}'",
    ],
)
def test_a_password_in_a_multi_statement_query_is_blanked(
    audited: Backend,  # noqa: F811
    probe: ActingProbe,  # noqa: F811
    template: str,
) -> None:
    adapter = capture_adapter(audited)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    secret = "Typed" + uuid.uuid4().hex
    marker = f"bgmul{uuid.uuid4().hex[:8]}"
    try:
        probe.run(ctx, receipt, template.format(secret=secret, marker=marker))
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        kept = [blank_password_literals(item.action) for item in seen if marker in item.action]
        assert kept
        assert all(secret not in action for action in kept), f"a typed password would be kept and posted: {kept}"
    finally:
        done(adapter, ctx, receipt)
