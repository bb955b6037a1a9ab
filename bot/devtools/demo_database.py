"""A toy database inside the process, for `breakglass demo` and for trying a policy out: no server to install.

It keeps who may run statements (what a grant gives) and, like a database with an audit log turned on, records
every statement a watched principal runs, with its time. The ``demo-db`` adapter grants and revokes on it and reads
that record back (``CapturesActivity``), the same way the real adapters read pgaudit, server_audit or a MONITOR
stream. It protects nothing: a real resource needs a real backend.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import Field

from bot.adapters.base import (
    MAX_ACTION,
    Activity,
    ActivityPage,
    AdapterError,
    AdapterParams,
    GrantContext,
    Receipt,
    leading_command,
)

PAGE = 500


@dataclass
class _Statement:
    at: datetime
    principal: str
    text: str


@dataclass
class DemoDatabase:
    """One named toy database: its holders (principal -> access), the watched principals, and its statement log."""

    name: str
    holders: dict[str, str] = field(default_factory=dict)
    watched: dict[str, int] = field(default_factory=dict)  # principal -> grants watching it
    log: list[_Statement] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    _named: ClassVar[dict[str, DemoDatabase]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def named(cls, name: str) -> DemoDatabase:
        with cls._registry_lock:
            return cls._named.setdefault(name, cls(name))

    def run(self, principal: str, statement: str, at: datetime | None = None) -> str:
        """Run ``statement`` as ``principal``: refused without access, and recorded when the principal is watched."""
        with self.lock:
            access = self.holders.get(principal)
            if access is None:
                raise PermissionError(f"permission denied for {principal} on {self.name}")
            writes = not statement.lstrip().lower().startswith(("select", "show", "explain"))
            if writes and access != "write":
                raise PermissionError(f"{principal} may only read {self.name}")
            if principal in self.watched:
                self.log.append(_Statement(at or datetime.now(UTC), principal, statement))
        return "ok"


class DemoDatabaseParams(AdapterParams):
    database: str = Field(default="orders", min_length=1, max_length=64)
    access: Literal["read", "write"] = "read"
    capture: bool = False


class DemoDatabaseAdapter:
    name: ClassVar[str] = "demo-db"
    Params: ClassVar[type[AdapterParams]] = DemoDatabaseParams

    def __init__(self, params: AdapterParams | None = None) -> None:
        self.params = params if isinstance(params, DemoDatabaseParams) else DemoDatabaseParams()
        self.database = DemoDatabase.named(self.params.database)

    def grant(self, ctx: GrantContext) -> Receipt:
        with self.database.lock:
            self.database.holders[ctx.principal] = self.params.access
        return Receipt(
            data={"database": self.params.database, "access": self.params.access},
            instructions=f"{self.params.access} access to the demo database {self.params.database}.",
        )

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        with self.database.lock:
            self.database.holders.pop(ctx.principal, None)

    def check(self) -> list[str]:
        return []

    # -- Verifies: a revoke is believed once the database itself says so, and a drill can check both ways -----------

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        with self.database.lock:
            return self.database.holders.get(ctx.principal) == receipt.data.get("access", self.params.access)

    # -- CapturesActivity -----------------------------------------------------------------------------------------

    def watching(self) -> bool:
        return self.params.capture

    def watch(self, ctx: GrantContext, receipt: Receipt) -> None:
        with self.database.lock:
            self.database.watched[ctx.principal] = self.database.watched.get(ctx.principal, 0) + 1

    def unwatch(self, ctx: GrantContext, receipt: Receipt) -> None:
        with self.database.lock:
            left = self.database.watched.get(ctx.principal, 0) - 1
            if left > 0:
                self.database.watched[ctx.principal] = left
            else:
                self.database.watched.pop(ctx.principal, None)

    def activity(self, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None) -> ActivityPage:
        try:
            start = int(cursor) if cursor is not None else 0
        except ValueError:
            raise AdapterError(f"not a cursor of the demo database: {str(cursor)[:40]!r}", retryable=False) from None
        with self.database.lock:
            log = self.database.log[start:]
        items: list[Activity] = []
        read = 0
        for entry in log:
            if len(items) == PAGE:
                break
            read += 1
            if entry.principal == ctx.principal and (cursor is not None or entry.at >= since):
                detail = {"database": self.params.database}
                text = entry.text
                if len(text) > MAX_ACTION:
                    text, detail["command"] = text[: MAX_ACTION - 1] + "…", leading_command(text)
                items.append(Activity(entry.at, entry.principal, text, detail))
        return ActivityPage(items, str(start + read), more=read < len(log))
