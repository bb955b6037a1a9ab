"""The adapter contract.

An adapter makes access real for one principal until ``ctx.expires_at`` and takes it back. Both calls are
idempotent: granting what is already granted, or revoking what is already gone, succeeds. Where the backend
can end access by itself at expiry, the adapter makes it do so, so access ends even if the bot is down.

Beyond the protocol below an adapter may define:

- ``default_principal``: the principal template used when the resource names none (else ``{slack_id}``);
- ``principal_problem(principal) -> str | None``: why a name cannot be an identity on this backend, so the
  request is refused at once instead of failing at grant time;
- ``close()``: let go of connections when the bot stops.

Optional capabilities are typed Protocols below (``ExtendsExpiry``, ``Verifies``, ``Lists``, ``CapturesActivity``);
the contract suite has a mixin for each.

``bot.testing.contract`` is the test suite every adapter is expected to pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, SecretStr


@dataclass(frozen=True)
class Person:
    """A Slack user as the backend sees them."""

    slack_id: str
    email: str | None = None
    name: str | None = None  # the real name, for people to read
    handle: str | None = None  # the Slack username, unique in the workspace


@dataclass(frozen=True)
class GrantContext:
    grant_id: str  # stable and unique across installations; backends may key idempotency on it
    request_number: int
    resource: str
    user: Person
    expires_at: datetime  # timezone-aware, UTC
    principal: str  # the user's identity on the backend, from the resource's mapping (see principal.py)
    reason: str
    emergency: bool = False
    level: str | None = None  # the resource's access level asked for; None where the resource declares no levels

    @property
    def label(self) -> str:
        """The resource as people name it: `orders-db`, or `orders-db:write` for a level."""
        return self.resource if self.level is None else f"{self.resource}:{self.level}"


@dataclass(frozen=True)
class Receipt:
    """What a grant produced. ``data`` is stored (JSON, no secrets) and handed back to revoke.

    ``credentials`` is for a secret the requester needs to use the access, such as the password of a temporary
    login: it goes to the requester once, in a private message, and is never stored, logged or audited.
    """

    data: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None  # shown to the requester, and stored
    credentials: str | None = field(default=None, repr=False)


class AdapterError(Exception):
    """A backend call failed. ``retryable`` says whether trying again can help. Never carries a secret."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def redact(text: str, *secrets: str | SecretStr | None) -> str:
    """``text`` with every secret blanked out: for error messages that quote what a backend or a program said.

    Every character of every occurrence of every secret is covered before anything is replaced: replacing one
    secret at a time would let a shorter one (a host name) break up a longer one that contains it (a DSN with
    a password), which then no longer matches and is left in the text."""
    values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets} - {None, ""}
    covered = [False] * len(text)
    for value in values:
        assert value is not None
        start = text.find(value)
        while start != -1:
            covered[start : start + len(value)] = [True] * len(value)
            start = text.find(value, start + 1)
    pieces: list[str] = []
    for index, char in enumerate(text):
        if not covered[index]:
            pieces.append(char)
        elif index == 0 or not covered[index - 1]:
            pieces.append("[redacted]")
    return "".join(pieces)


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


@runtime_checkable
class ExtendsExpiry(Protocol):
    """An adapter whose backend ends access by itself at ``expires_at`` (a VALID UNTIL, a scheduled event, a policy
    condition) moves that end when a grant is extended. Adapters whose access only the bot's revoke ends need not
    implement it: extending those is the bot's own business."""

    def extend(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Make the access granted under ``ctx.grant_id`` last until ``ctx.expires_at`` (later than before).
        Idempotent. Raises AdapterError like grant."""
        ...


@runtime_checkable
class Verifies(Protocol):
    """An adapter that can ask its backend whether a grant's access is still there. The bot asks after every revoke:
    access still present is a failed revoke (retried, alerted, shown), never an ended grant."""

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """True if ``ctx.principal`` still holds what the grant under ``receipt`` gave, asked of the backend now (not
        of a cache). Raises AdapterError when the backend cannot tell (then the revoke is not confirmed)."""
        ...


@dataclass(frozen=True)
class Holding:
    """Access found on the backend for one principal of a resource, and what a revoke of it needs."""

    principal: str
    data: dict[str, Any] = field(default_factory=dict)  # handed to revoke as Receipt(data), like a grant's receipt
    made_by_bot: bool = True  # a temporary login, a labelled binding, a tagged policy: something only the bot makes


@runtime_checkable
class Lists(Protocol):
    """An adapter that can list who holds its resource's access on the backend, for reconciliation."""

    def holdings(self, everything: bool) -> list[Holding]:
        """Who holds this resource's access now. With ``everything`` false, only what the adapter can tell the bot
        made (marked logins, labelled bindings, tagged policies); with it true (the resource's ``reconcile: all``)
        every holder of the role or group. Raises AdapterError when the backend cannot be read."""
        ...


MAX_ACTION = 2000  # characters of one captured statement or command kept; the rest is cut and marked
_LEADING_NOISE = re.compile(r"(?:\s+|/\*.*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))*", re.DOTALL)


def leading_command(statement: str) -> str:
    """A SQL statement's first two words after any comments (`DROP TABLE`): what it does, for an Activity's detail
    (``command``) when the statement is cut, so padding it past the cut does not hide it from ``alert_on``."""
    start = _LEADING_NOISE.match(statement)
    rest = statement[start.end() if start else 0 :]
    return " ".join(rest.split()[:2]).upper()[:64]


@dataclass(frozen=True)
class Activity:
    """One thing a principal did on the backend during a grant, as the backend itself recorded it."""

    at: datetime  # when the backend saw it, timezone-aware UTC
    principal: str  # the backend identity that did it (the grant's principal or its temporary login)
    action: str  # the statement or command as recorded (at most MAX_ACTION characters, known secrets blanked)
    detail: dict[str, Any] = field(default_factory=dict)  # plain JSON: database, session, object, outcome…


@dataclass(frozen=True)
class ActivityPage:
    """What ``activity`` found, oldest first, and where the next call goes on from."""

    items: list[Activity]
    cursor: str | None  # opaque to the bot: stored with the request and handed back on the next call
    more: bool = False  # the page is full: call again at once with ``cursor`` for the rest


@runtime_checkable
class CapturesActivity(Protocol):
    """An adapter whose backend records what a grant's principal does (an audit log, a statement log, a command
    stream), so the bot can show it live, flag it and keep it for the review. The backend records; the bot never
    sits in the data path. ``watching`` says whether this resource's params turned capture on: an adapter may capture
    for some resources (or levels) and not others."""

    def watching(self) -> bool:
        """Whether capture is configured for this resource; when False the bot never calls the methods below."""
        ...

    def watch(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Make the backend record what ``ctx.principal`` does from now on (idempotent); called right after a grant.
        Raises AdapterError like grant (the grant stands; the bot says capture is not running)."""
        ...

    def activity(self, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None) -> ActivityPage:
        """What ``ctx.principal`` did after ``cursor`` (with no cursor: from ``since``, the grant's start), oldest
        first, at most a page. Only this principal's actions; never the bot's own. Raises AdapterError when the record
        cannot be read (the next call tries again from the same cursor, so nothing is skipped)."""
        ...

    def unwatch(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Stop recording for ``ctx.principal`` (idempotent); called after the revoke and a last ``activity`` call."""
        ...
