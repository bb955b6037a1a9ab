"""The adapter contract.

An adapter makes access real for one principal until ``ctx.expires_at`` and takes it back. Both calls are
idempotent: granting what is already granted, or revoking what is already gone, succeeds. Where the backend
can end access by itself at expiry, the adapter makes it do so, so access ends even if the bot is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Person:
    """A Slack user as the backend sees them."""

    slack_id: str
    email: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class GrantContext:
    grant_id: str  # stable and unique across installations; backends may key idempotency on it
    request_number: int
    resource: str
    user: Person
    expires_at: datetime  # timezone-aware, UTC
    reason: str
    emergency: bool = False


@dataclass(frozen=True)
class Receipt:
    """What a grant produced. ``data`` is stored (JSON, no secrets) and handed back to revoke."""

    data: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None  # shown to the requester


class AdapterError(Exception):
    """A backend call failed. ``retryable`` says whether trying again can help. Never carries a secret."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class AdapterParams(BaseModel):
    """Base for an adapter's parameter model: unknown keys are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Adapter(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[AdapterParams]]

    def grant(self, ctx: GrantContext) -> Receipt: ...

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None: ...

    def check(self) -> list[str]:
        """Problems with configuration or credentials, found without granting anything; empty when fine."""
        ...
