"""The contract of an adapter that ``CapturesActivity``, run against the real backend with its capture turned on.

Add ``ActivityContract`` beside ``AdapterContract`` in an adapter's test module, with an ``adapter`` fixture whose
params turn capture on, a ``wrong_credentials`` adapter the backend refuses, and a ``probe`` that is also an
``ActivityProbe``: it acts as the principal (runs a statement, sends a command) with a marker in what it does, so the
test can find that very action in what the adapter reads back. Backends write their record a little after the
action (a log flushed, a stream read), so the tests poll for a few seconds; they never pass with nothing recorded.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from bot.adapters.base import (
    Activity,
    Adapter,
    AdapterError,
    CapturesActivity,
    GrantContext,
    Receipt,
)
from bot.testing.contract import AccessProbe, grant_context

SETTLE = 15.0  # seconds a backend may take to make an action readable


class ActivityProbe(AccessProbe, Protocol):
    def act(self, ctx: GrantContext, receipt: Receipt, marker: str) -> None:
        """Use the access as ``ctx.principal`` once, doing something whose recorded text contains ``marker`` (a
        string literal in a statement, a key name in a command)."""
        ...


def _read_all(
    adapter: CapturesActivity, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None
) -> tuple[list[Activity], str | None]:
    items: list[Activity] = []
    for _ in range(50):
        page = adapter.activity(ctx, receipt, since, cursor)
        items.extend(page.items)
        cursor = page.cursor
        if not page.more:
            break
    return items, cursor


def _until_seen(
    adapter: CapturesActivity, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None, marker: str
) -> tuple[list[Activity], str | None]:
    seen: list[Activity] = []
    give_up = time.monotonic() + SETTLE
    while True:
        items, cursor = _read_all(adapter, ctx, receipt, since, cursor)
        seen.extend(items)
        if any(marker in item.action for item in seen) or time.monotonic() >= give_up:
            return seen, cursor
        time.sleep(0.2)


class ActivityContract:
    def _granted(self, adapter: Adapter, probe: ActivityProbe) -> tuple[GrantContext, Receipt]:
        assert isinstance(adapter, CapturesActivity) and adapter.watching()
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        adapter.watch(ctx, receipt)
        return ctx, receipt

    def _done(self, adapter: Adapter, ctx: GrantContext, receipt: Receipt) -> None:
        assert isinstance(adapter, CapturesActivity)
        adapter.revoke(ctx, receipt)
        adapter.unwatch(ctx, receipt)

    def test_what_the_principal_did_is_read_back_with_its_time(self, adapter: Adapter, probe: ActivityProbe) -> None:
        assert isinstance(adapter, CapturesActivity)
        since = datetime.now(UTC)
        ctx, receipt = self._granted(adapter, probe)
        marker = f"bgmark{uuid.uuid4().hex[:10]}"
        before = datetime.now(UTC)
        probe.act(ctx, receipt, marker)
        after = datetime.now(UTC)
        try:
            seen, _ = _until_seen(adapter, ctx, receipt, since, None, marker)
            mine = [item for item in seen if marker in item.action]
            assert mine, f"the action with {marker} was not captured; got {[i.action for i in seen][:5]}"
            item = mine[0]
            assert item.at.tzinfo is not None
            assert before - timedelta(seconds=2) <= item.at <= after + timedelta(seconds=2)
            assert item.principal
            assert all(item.at.tzinfo is not None for item in seen)
            assert [item.at for item in seen] == sorted(item.at for item in seen)
        finally:
            self._done(adapter, ctx, receipt)

    def test_only_the_principals_own_actions_are_read(self, adapter: Adapter, probe: ActivityProbe) -> None:
        assert isinstance(adapter, CapturesActivity)
        since = datetime.now(UTC)
        mine, receipt = self._granted(adapter, probe)
        other, other_receipt = self._granted(adapter, probe)
        theirs_marker, mine_marker = f"bgtheirs{uuid.uuid4().hex[:8]}", f"bgmine{uuid.uuid4().hex[:8]}"
        try:
            probe.act(other, other_receipt, theirs_marker)
            probe.act(mine, receipt, mine_marker)
            seen, _ = _until_seen(adapter, mine, receipt, since, None, mine_marker)
            assert any(mine_marker in item.action for item in seen)
            assert not any(theirs_marker in item.action for item in seen)
        finally:
            self._done(adapter, mine, receipt)
            self._done(adapter, other, other_receipt)

    def test_the_cursor_goes_on_from_where_the_last_read_stopped(self, adapter: Adapter, probe: ActivityProbe) -> None:
        assert isinstance(adapter, CapturesActivity)
        since = datetime.now(UTC)
        ctx, receipt = self._granted(adapter, probe)
        first, second = f"bgfirst{uuid.uuid4().hex[:8]}", f"bgsecond{uuid.uuid4().hex[:8]}"
        try:
            probe.act(ctx, receipt, first)
            seen, cursor = _until_seen(adapter, ctx, receipt, since, None, first)
            assert any(first in item.action for item in seen)
            probe.act(ctx, receipt, second)
            later, _ = _until_seen(adapter, ctx, receipt, since, cursor, second)
            assert any(second in item.action for item in later)
            assert not any(first in item.action for item in later), "the cursor read the first action again"
        finally:
            self._done(adapter, ctx, receipt)

    def test_watch_and_unwatch_are_idempotent(self, adapter: Adapter, probe: ActivityProbe) -> None:
        assert isinstance(adapter, CapturesActivity)
        ctx, receipt = self._granted(adapter, probe)
        adapter.watch(ctx, receipt)
        self._done(adapter, ctx, receipt)
        adapter.unwatch(ctx, receipt)

    def test_reading_with_wrong_credentials_fails_cleanly(
        self, wrong_credentials: Adapter, probe: ActivityProbe
    ) -> None:
        assert isinstance(wrong_credentials, CapturesActivity)
        ctx = grant_context(probe.principal())
        with pytest.raises(AdapterError) as raised:
            wrong_credentials.activity(ctx, Receipt(), datetime.now(UTC), None)
        assert not any(secret in str(raised.value) for secret in probe.secrets() if secret)
