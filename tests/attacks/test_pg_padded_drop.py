"""A DROP padded past MAX_ACTION, captured by pgaudit, is still where the bot matches alert_on."""

from __future__ import annotations

import re
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


def test_a_padded_drop_keeps_drop_in_the_captured_text(audited: Backend, probe: ActingProbe) -> None:  # noqa: F811
    adapter = capture_adapter(audited)
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = watched(adapter, ctx)
    marker = f"bgpad{uuid.uuid4().hex[:8]}"
    try:
        probe.run(ctx, receipt, f"/* {marker} {'x' * 2100} */ DROP TABLE IF EXISTS no_such_{marker}")
        seen, _ = read_until(adapter, ctx, receipt, since, None, marker)
        mine = [item for item in seen if marker in item.action]
        assert mine, [item.action[:80] for item in seen]
        # The text is cut, but what pgaudit said the statement does is kept beside it, where alert_on looks too.
        said = [f"{item.action} {' '.join(str(v) for v in item.detail.values())}" for item in mine]
        assert any(re.search(r"(?i)\bdrop\b", text) for text in said), "DROP cut off: alert_on cannot see it"
    finally:
        done(adapter, ctx, receipt)
