"""A capturing backend in memory, for tests of the activity use case at the service seam (``bot.testing.services``):
it records what a principal "does" only while watched, pages it out from an opaque cursor, and fails on demand.
It keeps the contract of ``CapturesActivity``: a failed read leaves the cursor where it was, so nothing is skipped."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import ClassVar

from bot.adapters.base import Activity, ActivityPage, AdapterError, AdapterParams, GrantContext, Receipt


class CapturingParams(AdapterParams):
    pass


class CapturingAdapter:
    name: ClassVar[str] = "log"  # a built-in name, so the policy accepts the resource
    Params: ClassVar[type[AdapterParams]] = CapturingParams

    def __init__(self, page_size: int = 50, capture: bool = True) -> None:
        self.page_size = page_size
        self.capture = capture
        self.record: list[Activity] = []  # everything the backend recorded, in order
        self.watched: set[str] = set()
        self.calls: list[str] = []
        self.fail_watch = False
        self.fail_unwatch = 0  # the next N unwatches fail
        self.fail_reads = 0  # the next N activity calls fail
        self._lock = threading.Lock()

    # -- what a test does on the "backend" ----------------------------------------------------------------------

    def do(self, principal: str, action: str, at: datetime) -> None:
        """The principal runs ``action`` at ``at``; recorded only while watched, as a backend's audit log would."""
        with self._lock:
            if principal in self.watched:
                self.record.append(Activity(at, principal, action, {"n": len(self.record)}))

    # -- the adapter ----------------------------------------------------------------------------------------------

    def grant(self, ctx: GrantContext) -> Receipt:
        self.calls.append("grant")
        return Receipt(data={"principal": ctx.principal})

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        self.calls.append("revoke")

    def check(self) -> list[str]:
        return []

    def watching(self) -> bool:
        return self.capture

    def watch(self, ctx: GrantContext, receipt: Receipt) -> None:
        self.calls.append("watch")
        if self.fail_watch:
            raise AdapterError("audit logging is not enabled on this server", retryable=False)
        with self._lock:
            self.watched.add(ctx.principal)

    def activity(self, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None) -> ActivityPage:
        self.calls.append("activity")
        with self._lock:
            if self.fail_reads:
                self.fail_reads -= 1
                raise AdapterError("the audit log could not be read", retryable=True)
            start = int(cursor) if cursor is not None else 0
            mine = [
                (index, item)
                for index, item in enumerate(self.record)
                if index >= start and item.principal == ctx.principal and item.at >= since
            ]
            page = mine[: self.page_size]
            after = page[-1][0] + 1 if page else start
            return ActivityPage([item for _, item in page], str(after), more=len(mine) > len(page))

    def unwatch(self, ctx: GrantContext, receipt: Receipt) -> None:
        self.calls.append("unwatch")
        if self.fail_unwatch:
            self.fail_unwatch -= 1
            raise AdapterError("could not turn audit logging off", retryable=True)
        with self._lock:
            self.watched.discard(ctx.principal)
