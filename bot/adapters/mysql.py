"""Grants privileges on MySQL or MariaDB for the length of a grant, and takes them back.

Two modes, chosen by ``login``:

- ``existing`` (default): the person already has a login (``principal@user_host``). Grant runs
  ``GRANT <privileges> ON <target> TO login``; revoke runs the matching ``REVOKE`` and ends every open connection of
  that user name (``KILL CONNECTION`` for each row of ``information_schema.PROCESSLIST``), because MySQL keeps
  database and global privileges in an open connection. The login's other privileges are left alone, but those
  named in the policy are taken away at the end even if the login held them before: do not use this mode for
  privileges a login keeps permanently.
- ``temporary``: grant creates ``login_prefix + principal`` with a random password (a repeated grant sets a
  fresh one), which the requester receives once in a private message; revoke locks the login, ends its
  connections and drops it. Each login is marked as this resource's by granting it the role
  ``breakglass:<resource>`` (MariaDB has no account comments), read back from ``mysql.roles_mapping``. The bot
  re-passwords, extends and drops only logins that carry its resource's mark, so a principal that spells another
  resource's login (``ro_zoe`` under ``bg_`` is ``bg_ro_zoe``) or a real account is refused, never taken over.

Expiry: with ``backstop`` (default) each grant also creates a one-off event in ``events_database`` that fires at
``expires_at`` and does the revoke on the server itself (revoke or drop, then kill the connections), so access
ends on time even while the bot is down. The event is scheduled in UTC (the session's time zone is set to +00:00
when it is created) and needs the server's ``event_scheduler`` ON; revoke drops it. ``check()`` reports a
scheduler that is off. Extending a grant moves its event (``ExtendsExpiry``); an event that already ran has ended
the access, and the extend fails saying so.

Verify (``Verifies``): a temporary login is access while it carries this resource's mark; an existing login while any
account of that user name, or a role granted to it, holds any of the privileges on the target or its database.
Reconcile (``Lists``): accounts holding the privileges on exactly the target; bot-made are marked logins under the
prefix (each with its expiry event, so a reconciliation's revoke drops that too); existing logins carry no mark and
are listed only with ``reconcile: all``. A revoke ends only a login marked for its own resource. Both read
``mysql.db``, ``mysql.tables_priv``, ``mysql.roles_mapping`` and, through a column grant that leaves out the password
hash, the privilege columns of ``mysql.user`` (see ``mysql_holdings``).

Activity capture (``CapturesActivity``, ``capture: server_audit``): MariaDB's server_audit plugin records what the
grant's login does; ``mysql_activity`` keeps its shared include-list and reads the audit file back.

Account names and the host part are bound as string literals by PyMySQL; database and table names are checked
against ``[A-Za-z0-9_$]`` and quoted with backticks (``_`` escaped in database-level grants, where it is a
wildcard); privileges come from an allow-list. The bot's own login needs the privileges it hands out WITH GRANT
OPTION, PROCESS and CONNECTION ADMIN (or SUPER), EVENT for the backstop, CREATE USER for temporary logins, and
SELECT on ``mysql.roles_mapping``, ``mysql.db``, ``mysql.tables_priv`` and some columns of ``mysql.user``; see
docs/adapters/mysql.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

import pymysql
from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from bot.adapters import mysql_activity
from bot.adapters.base import ActivityPage, AdapterError, AdapterParams, GrantContext, Holding, Receipt, redact
from bot.adapters.mysql_holdings import expiry_events, global_columns, holders, holds_any, marks
from bot.clock import as_utc

log = logging.getLogger("breakglass.adapters.mysql")

MAX_USER_LENGTH = 32  # MySQL's limit; MariaDB allows 80, but one rule for both servers
TEMPORARY_PREFIX = "bg_"
MARKER_PREFIX = "breakglass:"  # + the resource name: the role that marks a temporary login as that resource's

# Privileges by the narrowest level they can be granted at. They are keywords, which cannot be bound.
TABLE_PRIVILEGES = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "ALTER",
        "INDEX",
        "REFERENCES",
        "TRIGGER",
        "CREATE VIEW",
        "SHOW VIEW",
        "DELETE HISTORY",
        "ALL PRIVILEGES",
    }
)
DATABASE_PRIVILEGES = TABLE_PRIVILEGES | {
    "EVENT",
    "EXECUTE",
    "LOCK TABLES",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "CREATE TEMPORARY TABLES",
}
GLOBAL_PRIVILEGES = DATABASE_PRIVILEGES | {
    "PROCESS",
    "RELOAD",
    "SHUTDOWN",
    "FILE",
    "SUPER",
    "SHOW DATABASES",
    "CREATE USER",
    "CREATE TABLESPACE",
    "REPLICATION CLIENT",
    "REPLICATION SLAVE",
    "BINLOG MONITOR",
    "SLAVE MONITOR",
    "CONNECTION ADMIN",
    "READ_ONLY ADMIN",
}
KILL_PRIVILEGES = {"SUPER", "CONNECTION ADMIN", "CONNECTION_ADMIN"}  # MariaDB 10.5+, MySQL 8, either

_IDENTIFIER = re.compile(r"[A-Za-z0-9_$]{1,64}")
_RETRYABLE = {1040, 1053, 1205, 1213}  # too many connections, shutting down, lock wait timeout, deadlock
_CLIENT_ERRORS = range(2000, 3000)  # PyMySQL's and libmysql's own; server codes also run from 3000 up (4151 …)
_ACCOUNT_EXISTS = 1396  # CREATE USER on an account (or role) that is already there
_NO_SUCH_GRANT = {1141, 1147}
_UNKNOWN_THREAD = 1094
_NO_SUCH_EVENT = 1539
_UNKNOWN_SQL_MODE = 1231  # MySQL 8 has no NO_AUTO_CREATE_USER: it never creates users in GRANT anyway
# Exact, case-sensitive matches: user names are case-sensitive, but information_schema compares them without case,
# which would also end the connections of `Zoe` when revoking `zoe`.
_SESSIONS = "SELECT ID FROM information_schema.PROCESSLIST WHERE CAST(USER AS BINARY) = CAST(%s AS BINARY)"
_MARKED = (
    "SELECT COUNT(*) FROM mysql.roles_mapping WHERE CAST(User AS BINARY) = CAST(%s AS BINARY)"
    " AND LOWER(Host) = LOWER(%s) AND CAST(Role AS BINARY) = CAST(%s AS BINARY)"  # the server stores hosts lower-cased
)


@dataclass(frozen=True)
class _Object:
    """What the privileges are on: ``*.*``, ``db.*`` or ``db.table``."""

    database: str | None
    table: str | None

    @classmethod
    def parse(cls, text: str) -> _Object:
        database, dot, table = text.strip().partition(".")
        if not dot or not _part_ok(database) or not _part_ok(table) or (database == "*" and table != "*"):
            raise ValueError(f"expected db.* or db.table ({_IDENTIFIER.pattern} each) or *.*, not '{text}'")
        return cls(None if database == "*" else database, None if table == "*" else table)

    @property
    def level(self) -> str:
        return "table" if self.table else "database" if self.database else "global"

    def __str__(self) -> str:
        return f"{self.database or '*'}.{self.table or '*'}"

    def sql(self) -> str:
        if self.database is None:
            return "*.*"
        if self.table is None:  # in a database-level grant '_' and '%' are wildcards
            return f"`{self.database.replace('_', chr(92) + '_')}`.*"
        return f"`{self.database}`.`{self.table}`"


def _part_ok(part: str) -> bool:
    return part == "*" or _IDENTIFIER.fullmatch(part) is not None


def _privileges(values: Iterable[str], on: _Object) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(" ".join(str(value).upper().split()) for value in values))
    names = tuple("ALL PRIVILEGES" if name == "ALL" else name for name in names)
    if not names:
        raise ValueError("name at least one privilege")
    if "ALL PRIVILEGES" in names and len(names) > 1:
        raise ValueError("ALL PRIVILEGES cannot be combined with other privileges")
    allowed = {"global": GLOBAL_PRIVILEGES, "database": DATABASE_PRIVILEGES, "table": TABLE_PRIVILEGES}[on.level]
    for name in names:
        if name in ("GRANT OPTION", "PROXY", "USAGE"):
            raise ValueError(f"{name} cannot be granted by Breakglass")
        if name not in GLOBAL_PRIVILEGES:
            raise ValueError(f"unknown privilege '{name}' (expected one of {', '.join(sorted(GLOBAL_PRIVILEGES))})")
        if name not in allowed:
            raise ValueError(f"{name} cannot be granted on {on} (a {on.level}-level object)")
    return names


class MysqlParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be the password

    host: str = Field(min_length=1)
    port: int = Field(default=3306, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=80)
    password: SecretStr | None = None
    connect_timeout: float = Field(default=5, gt=0, le=60)
    query_timeout: float = Field(default=30, gt=0, le=600)
    target: str  # not `on`: YAML 1.1 reads that key as the boolean true
    privileges: tuple[str, ...]
    login: Literal["existing", "temporary"] = "existing"
    user_host: str = Field(default="%", min_length=1, max_length=255)
    login_prefix: str | None = Field(default=None, max_length=16)
    backstop: bool = True
    events_database: str | None = Field(default=None, validate_default=True)
    capture: Literal["off", "server_audit"] = "off"  # activity capture (CapturesActivity): see mysql_activity
    capture_database: str | None = Field(default=None, validate_default=True)  # holds the table of watches

    @field_validator("target")
    @classmethod
    def _object(cls, value: str) -> str:
        return str(_Object.parse(value))

    @field_validator("privileges")
    @classmethod
    def _allowed(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        target = info.data.get("target")
        return _privileges(value, _Object.parse(target)) if target else value

    @field_validator("login_prefix")
    @classmethod
    def _prefix(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "" and info.data.get("login") == "temporary":
            raise ValueError("temporary logins are dropped at revoke, so they need a prefix no real account uses")
        return value

    @field_validator("events_database")
    @classmethod
    def _events_database(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _IDENTIFIER.fullmatch(value):
            raise ValueError(f"expected a database name ({_IDENTIFIER.pattern}), not '{value}'")
        if value is None and info.data.get("backstop") and info.data.get("target") == "*.*":
            raise ValueError("required when `target` is *.* and backstop is on: the expiry events live in a database")
        return value

    @field_validator("capture_database")
    @classmethod
    def _capture_database(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _IDENTIFIER.fullmatch(value):
            raise ValueError(f"expected a database name ({_IDENTIFIER.pattern}), not '{value}'")
        if value is None and info.data.get("capture", "off") != "off":
            raise ValueError("required when capture is on: the table of watched grants lives there")
        return value

    @property
    def on(self) -> _Object:
        return _Object.parse(self.target)

    @property
    def prefix(self) -> str:
        if self.login_prefix is not None:
            return self.login_prefix
        return TEMPORARY_PREFIX if self.login == "temporary" else ""

    @property
    def events_schema(self) -> str | None:
        return (self.events_database or self.on.database) if self.backstop else None


@dataclass(frozen=True)
class _Plan:
    """What one grant did, kept in the receipt, so revoke undoes exactly that even if the policy changed since."""

    login: str
    host: str
    mode: str
    privileges: tuple[str, ...]
    on: _Object
    event: tuple[str, str] | None  # (database, name)
    marker: str | None = None  # temporary logins; None in receipts from before logins were marked

    def data(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "host": self.host,
            "mode": self.mode,
            "privileges": list(self.privileges),
            "target": str(self.on),
            "event": ".".join(self.event) if self.event else None,
            "marker": self.marker,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> _Plan:
        """Checked like the policy: these values end up in SQL as keywords and identifiers."""
        on = _Object.parse(data["target"])
        event = None
        if data.get("event"):
            database, _, name = data["event"].partition(".")
            if not (_IDENTIFIER.fullmatch(database) and _IDENTIFIER.fullmatch(name)):
                raise ValueError("bad event name")
            event = (database, name)
        if data["mode"] not in ("existing", "temporary"):
            raise ValueError("bad mode")
        marker = data.get("marker")
        if marker is not None and not (isinstance(marker, str) and marker.startswith(MARKER_PREFIX)):
            raise ValueError("bad marker")
        privileges = _privileges(data["privileges"], on)
        return cls(str(data["login"]), str(data["host"]), data["mode"], privileges, on, event, marker)


class MysqlAdapter:
    name: ClassVar[str] = "mysql"
    Params: ClassVar[type[AdapterParams]] = MysqlParams
    default_principal: ClassVar[str] = "{email_local}"

    def __init__(self, params: MysqlParams) -> None:
        self.params = params
        self._where = f"mysql at {params.host}:{params.port}"

    def __repr__(self) -> str:
        return f"MysqlAdapter(host={self.params.host!r}, port={self.params.port}, target={self.params.target!r})"

    def principal_problem(self, principal: str) -> str | None:
        login = self.params.prefix + principal
        if len(login) > MAX_USER_LENGTH:
            prefixed = f"with the login prefix '{self.params.prefix}' " if self.params.prefix else ""
            return f"{prefixed}it is longer than the {MAX_USER_LENGTH} characters MySQL allows in a user name"
        if login != login.rstrip():
            return "it ends with a space, which MySQL drops, so it would name another login"
        if any(ord(char) > 0xFFFF for char in login):
            return "it contains characters MySQL cannot store in a user name (such as emoji)"
        if login == self.params.user:
            return "it is the bot's own login"
        if self.params.capture != "off":
            return mysql_activity.login_problem(login)
        return None

    def grant(self, ctx: GrantContext) -> Receipt:
        problem = self.principal_problem(ctx.principal)
        if problem:
            raise AdapterError(f"cannot grant to {ctx.principal!r} on {self._where}: {problem}", retryable=False)
        plan = self._plan(ctx)
        account = (plan.login, plan.host)
        password = _new_password() if plan.mode == "temporary" else None
        with self._connect() as db:
            if plan.event:  # first, so that nothing is granted without its expiry in place
                db.run("create the expiry event", *self._event(ctx, plan))
            if password:
                self._create_or_renew(db, ctx, plan, password)
            grant = f"GRANT {', '.join(plan.privileges)} ON {plan.on.sql()} TO %s@%s"
            db.run(f"grant {', '.join(plan.privileges)} on {plan.on}", grant, account)
        log.info("grant %s: %s on %s to %r@%r", ctx.grant_id, ",".join(plan.privileges), plan.on, *account)
        return Receipt(data=plan.data(), instructions=self._instructions(ctx, plan), credentials=password)

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        plan = self._plan(ctx, receipt)
        account = (plan.login, plan.host)
        ended = 0
        with self._connect() as db:
            if plan.mode == "existing":
                revoke = f"REVOKE {', '.join(plan.privileges)} ON {plan.on.sql()} FROM %s@%s"
                db.run(f"revoke {', '.join(plan.privileges)} on {plan.on}", revoke, account, ignore=_NO_SUCH_GRANT)
                # After the revoke, so that a reconnect cannot win the race; open connections keep what they had.
                ended = self._end_connections(db, plan)
            # A receipt from before logins were marked: the login is the one that grant made or re-passworded.
            # A mark of another resource (a reconciliation's find) is not this resource's to end.
            elif plan.marker is None or (plan.marker == MARKER_PREFIX + ctx.resource and self._marked(db, plan)):
                # Locked first, so that no reconnect wins the race, and dropped last, so that a retry after a
                # crash still finds the mark and ends the connections.
                db.run("lock the temporary login", "ALTER USER IF EXISTS %s@%s ACCOUNT LOCK", account)
                ended = self._end_connections(db, plan)
                db.run("drop the temporary login", "DROP USER IF EXISTS %s@%s", account)
            else:  # gone already, or never this resource's: either way not ours to lock, kill or drop
                log.info(
                    "revoke %s: %r@%r on %s is not (or no longer) a login made for %s; left untouched",
                    ctx.grant_id,
                    *account,
                    self._where,
                    plan.marker.removeprefix(MARKER_PREFIX),
                )
            if plan.event:
                db.run("drop the expiry event", f"DROP EVENT IF EXISTS `{plan.event[0]}`.`{plan.event[1]}`")
        log.info("revoke %s: %r@%r on %s, %d connection(s) ended", ctx.grant_id, *account, plan.on, ended)

    def extend(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Moves the grant's expiry event to the new expiry (``ALTER EVENT … ON SCHEDULE AT``), in either mode. An
        event that has run is gone (``ON COMPLETION NOT PRESERVE``), and so is the access it ended: a final error,
        not a new grant. Without the backstop nothing on the server ends access, so nothing moves."""
        plan = self._plan(ctx, receipt)
        if plan.event is None:
            log.info("extend %s: no expiry event on %s (backstop off); nothing to move", ctx.grant_id, self._where)
            return
        database, name = plan.event
        schedule = "ON SCHEDULE AT GREATEST(CAST(%s AS DATETIME), UTC_TIMESTAMP() + INTERVAL 1 SECOND)"
        find = "SELECT EXECUTE_AT FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s AND EVENT_NAME = %s"
        at = _event_time(ctx.expires_at)
        with self._connect() as db:
            alter = f"ALTER EVENT `{database}`.`{name}` {schedule}"
            db.run("move the expiry event", alter, (at,), ignore={_NO_SUCH_EVENT})
            # Read back: an event that ran while we altered it is gone too.
            moved = db.run("read the expiry event", find, (database, name))
            # The event only ends a login that carries the mark: one that lost it (dropped) has no access to extend.
            if moved and plan.mode == "temporary" and plan.marker and not self._marked(db, plan):
                moved = ()
        if not moved:
            raise AdapterError(
                f"{self._where}: the expiry event of grant {ctx.grant_id} has already run or been dropped (or its "
                "temporary login is gone), so the access has ended and cannot be extended; request it again",
                retryable=False,
            )
        log.info("extend %s: expiry event %s.%s on %s moved to %s UTC", ctx.grant_id, database, name, self._where, at)

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Temporary logins: whether the login still carries this resource's mark (it exists; a revoke drops it).
        Existing logins: whether any account of that user name, or any role granted to it, still holds any of the
        grant's privileges on its target or its database (see mysql_holdings)."""
        plan = self._plan(ctx, receipt)
        with self._connect() as db:
            if plan.mode == "temporary":
                marker = MARKER_PREFIX + ctx.resource
                ((count,),) = db.run("look up the temporary login's mark", _MARKED, (plan.login, plan.host, marker))
                return bool(count)
            return holds_any(db, plan.login, plan.privileges, plan.on)

    def holdings(self, everything: bool) -> list[Holding]:
        """Accounts holding this resource's privileges on its target, as the bot grants them. Bot-made: temporary
        logins under the prefix that carry a mark. Existing logins are never bot-made here: MySQL keeps no grantor
        for database grants and the bot does not mark a person's account, so only ``reconcile: all`` lists them."""
        p = self.params
        temporary = p.login == "temporary"
        with self._connect() as db:
            accounts = holders(db, p.privileges, p.on)
            marked = marks(db, MARKER_PREFIX) if temporary else {}
            mine = {(user, host): marked.get((user, host.lower())) for user, host in accounts}
            mine = {account: mark for account, mark in mine.items() if mark and account[0].startswith(p.prefix)}
            if not everything:
                accounts = list(mine)
            events = expiry_events(db, p.events_schema, [user for user, _ in mine])
        found = []
        for user, host in accounts:
            mark = mine.get((user, host))
            mode = "temporary" if mark else "existing"
            event = None
            if mark and user in events:
                database, _, name = events[user].partition(".")
                event = (database, name)
            plan = _Plan(user, host, mode, p.privileges, p.on, event, mark)
            principal = user.removeprefix(p.prefix) if user.startswith(p.prefix) else user
            found.append(Holding(principal, plan.data(), made_by_bot=mark is not None))
        return found

    def watching(self) -> bool:
        return self.params.capture != "off"

    def watch(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Adds the grant's login to server_audit's include-list (shared, under a lock; see mysql_activity)."""
        login, database = self._watched(ctx, receipt)
        with self._connect() as db:
            mysql_activity.watch(db, self._where, database, ctx.grant_id, login)

    def activity(self, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None) -> ActivityPage:
        login, database = self._watched(ctx, receipt)
        with self._connect() as db:
            return mysql_activity.read(db, self._where, database, ctx.grant_id, login, since, cursor)

    def unwatch(self, ctx: GrantContext, receipt: Receipt) -> None:
        login, database = self._watched(ctx, receipt)
        with self._connect() as db:
            mysql_activity.unwatch(db, self._where, database, ctx.grant_id, login)

    def _watched(self, ctx: GrantContext, receipt: Receipt) -> tuple[str, str]:
        if self.params.capture_database is None:
            raise AdapterError(f"{self._where}: activity capture is off for {ctx.resource!r}", retryable=False)
        return self._plan(ctx, receipt).login, self.params.capture_database

    def check(self) -> list[str]:
        try:
            with self._connect() as db:
                return self._problems(db)
        except AdapterError as error:
            return [str(error)]

    def _plan(self, ctx: GrantContext, receipt: Receipt | None = None) -> _Plan:
        if receipt and receipt.data.get("login"):
            try:
                return _Plan.from_data(receipt.data)
            except (KeyError, TypeError, ValueError):
                raise AdapterError(
                    f"the stored receipt of grant {ctx.grant_id} is not valid", retryable=False
                ) from None
        schema = self.params.events_schema
        return _Plan(
            login=self.params.prefix + ctx.principal,
            host=self.params.user_host,
            mode=self.params.login,
            privileges=self.params.privileges,
            on=self.params.on,
            event=(schema, event_name(ctx.grant_id)) if schema else None,
            marker=MARKER_PREFIX + ctx.resource if self.params.login == "temporary" else None,
        )

    def _create_or_renew(self, db: _Session, ctx: GrantContext, plan: _Plan, password: str) -> None:
        """Makes the temporary login and marks it as this resource's, or gives the login this resource marked
        before a new password (a repeated grant). Any other account of that name is left untouched."""
        assert plan.marker
        account = (plan.login, plan.host)
        if self._marked(db, plan):
            reset = "ALTER USER %s@%s IDENTIFIED BY %s"  # a repeated grant: the previous password is gone
            db.run("set the temporary login's password", reset, (*account, password), secret=password)
            return
        # The creator of a role holds it WITH ADMIN OPTION, which is what granting it needs.
        db.run("create the role that marks temporary logins", "CREATE ROLE IF NOT EXISTS %s", (plan.marker,))
        create = "CREATE USER %s@%s IDENTIFIED BY %s"  # no IF NOT EXISTS: an account already there is not ours
        if not db.attempt("create the temporary login", create, (*account, password), _ACCOUNT_EXISTS, password):
            if plan.event:  # this grant's own event, made above: the grant does not happen
                db.run("drop the expiry event", f"DROP EVENT IF EXISTS `{plan.event[0]}`.`{plan.event[1]}`")
            raise AdapterError(
                f"cannot grant to {ctx.principal!r} on {self._where}: the account '{plan.login}'@'{plan.host}' "
                f"already exists and is not a temporary login Breakglass made for {ctx.resource!r} (it belongs to a "
                "person or to another resource); it was left untouched. Give each resource its own login_prefix",
                retryable=False,
            )
        try:
            mark = "GRANT %s TO %s@%s"
            db.run(f"mark the temporary login with the role '{plan.marker}'", mark, (plan.marker, *account))
        except AdapterError as error:
            # Unmarked, no later call would touch it: drop it now (made a moment ago, its password never sent).
            db.run("drop the unmarked temporary login", "DROP USER IF EXISTS %s@%s", account)
            hint = f"; the bot's login needs the role WITH ADMIN OPTION (GRANT '{plan.marker}' TO it WITH ADMIN OPTION)"
            raise AdapterError(f"{error}{hint}", retryable=error.retryable) from None

    def _marked(self, db: _Session, plan: _Plan) -> bool:
        """Whether the login carries this resource's mark: a role only the bot (holding it WITH ADMIN OPTION) or
        an administrator can grant."""
        ((count,),) = db.run("look up the temporary login's mark", _MARKED, (plan.login, plan.host, plan.marker))
        return bool(count)

    @staticmethod
    def _end_connections(db: _Session, plan: _Plan) -> int:
        ended = 0
        find = _SESSIONS + " AND ID <> CONNECTION_ID()"
        for (thread,) in db.run("find the login's connections", find, (plan.login,)):
            db.run("end a connection", "KILL CONNECTION %s", (thread,), ignore={_UNKNOWN_THREAD})
            ended += 1
        return ended

    def _event(self, ctx: GrantContext, plan: _Plan) -> tuple[str, tuple[Any, ...]]:
        assert plan.event
        if plan.mode == "temporary":
            remove = "DROP USER IF EXISTS %s@%s"
        else:
            remove = f"REVOKE {', '.join(plan.privileges)} ON {plan.on.sql()} FROM %s@%s"
        at = _event_time(ctx.expires_at)
        comment = f"breakglass: ends request #{ctx.request_number}"[:64]
        end = f"""BEGIN
    DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
    {remove};
  END;
  BEGIN
    DECLARE done BOOL DEFAULT FALSE;
    DECLARE victim BIGINT;
    DECLARE sessions CURSOR FOR {_SESSIONS};
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = TRUE;
    OPEN sessions;
    sweep: LOOP
      FETCH sessions INTO victim;
      IF done THEN LEAVE sweep; END IF;
      BEGIN
        DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
        KILL CONNECTION victim;
      END;
    END LOOP;
    CLOSE sessions;
  END;"""
        args: tuple[Any, ...] = (plan.login, plan.host, plan.login)
        if plan.mode == "temporary":
            # Checked when it fires: by then the login may have been dropped and made again by another resource.
            end = f"""DECLARE ours INT DEFAULT 0;
  BEGIN
    DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
    {_MARKED.replace("SELECT COUNT(*)", "SELECT COUNT(*) INTO ours", 1)};
  END;
  IF ours > 0 THEN
  {end}
  END IF;"""
            args = (plan.login, plan.host, plan.marker, *args)
        sql = f"""CREATE EVENT IF NOT EXISTS `{plan.event[0]}`.`{plan.event[1]}`
ON SCHEDULE AT GREATEST(CAST(%s AS DATETIME), UTC_TIMESTAMP() + INTERVAL 1 SECOND)
ON COMPLETION NOT PRESERVE COMMENT %s
DO BEGIN
  {end}
END"""
        return sql, (at, comment, *args)

    def _instructions(self, ctx: GrantContext, plan: _Plan) -> str:
        until = as_utc(ctx.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        what = f"{', '.join(plan.privileges)} on {plan.on}"
        if plan.mode == "temporary":
            command = f"mysql -h {shlex.quote(self.params.host)} -P {self.params.port} -u {shlex.quote(plan.login)} -p"
            return (
                f"Log in to {self.params.host}:{self.params.port} as `{plan.login}` with the password sent to you "
                f"privately (`{command}`). It has {what}. The login is deleted and its connections closed at "
                f"{until}."
            )
        return (
            f"Your login `{plan.login}` has {what} until {until}. Open a new connection to use it (connections "
            "opened before the grant may not see it); your connections are closed when access ends."
        )

    def _problems(self, db: _Session) -> list[str]:
        (me,) = db.run("read the bot's own account", "SELECT CURRENT_USER()")[0]
        user, _, host = me.rpartition("@")
        grantee = f"'{user}'@'{host}'"
        on = self.params.on
        held, grantable = self._held(db, grantee, on)
        problems: list[str] = []
        if on.table:
            exists = "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
            if not db.run("look up the table", exists, (on.database, on.table))[0][0]:
                problems.append(f"target: table {on} does not exist, or the bot's login {me} cannot see it")
        missing = [p for p in self.params.privileges if p != "ALL PRIVILEGES" and p not in held]
        if missing:
            problems.append(f"the bot's login {me} lacks {', '.join(missing)} on {on}: it can only grant what it holds")
        if not grantable:
            problems.append(f"the bot's login {me} lacks GRANT OPTION on {on}")
        everywhere, _ = self._held(db, grantee, _Object(None, None))
        if "PROCESS" not in everywhere:
            problems.append(f"the bot's login {me} lacks PROCESS on *.*: it cannot find the connections to end")
        if not everywhere & KILL_PRIVILEGES:
            problems.append(f"the bot's login {me} lacks CONNECTION ADMIN (or SUPER): it cannot end connections")
        if self.params.login == "temporary" and "CREATE USER" not in everywhere:
            problems.append(f"the bot's login {me} lacks CREATE USER, which temporary logins need")
        problems.extend(self._reading_problems(db, me))
        if self.params.capture != "off" and self.params.capture_database is not None:
            there, _ = self._held(db, grantee, _Object(self.params.capture_database, None))
            problems.extend(mysql_activity.problems(db, me, self.params.capture_database, there, everywhere))
        if self.params.login == "temporary":
            try:
                db.run("read mysql.roles_mapping", "SELECT COUNT(*) FROM mysql.roles_mapping WHERE 1 = 0")
            except AdapterError:
                problems.append(
                    f"the bot's login {me} cannot read mysql.roles_mapping, where it finds the marks of its "
                    "temporary logins (GRANT SELECT ON mysql.roles_mapping; MariaDB 10.4 or later)"
                )
        schema = self.params.events_schema
        if schema:
            events, _ = self._held(db, grantee, _Object(schema, None))
            if "EVENT" not in events:
                problems.append(f"the bot's login {me} lacks EVENT on {schema}.*, which the expiry backstop needs")
            (state,) = db.run("read event_scheduler", "SELECT @@GLOBAL.event_scheduler")[0]
            if str(state).upper() != "ON":
                problems.append(
                    f"event_scheduler is {state}: access ends only when the bot revokes it "
                    "(turn the scheduler on in the server's configuration, or set backstop: false)"
                )
        return problems

    def _reading_problems(self, db: _Session, me: str) -> list[str]:
        """What stops verify and reconciliation from reading who holds what: the grant tables, and of ``mysql.user``
        only the columns they need (never the password hash)."""
        problems = []
        tables = ["db", "tables_priv"] if self.params.login == "temporary" else ["db", "tables_priv", "roles_mapping"]
        for table in tables:
            try:
                db.run(f"read mysql.{table}", f"SELECT COUNT(*) FROM mysql.{table} WHERE 1 = 0")
            except AdapterError:
                problems.append(
                    f"the bot's login {me} cannot read mysql.{table}, which verifying a revoke and reconciliation "
                    f"read (GRANT SELECT ON mysql.{table}; it holds no passwords)"
                )
        try:
            columns = ", ".join(global_columns(self.params.privileges, self.params.on))
        except AdapterError as error:
            return [*problems, f"revokes cannot be verified: {error}"]
        try:
            db.run("read mysql.user", f"SELECT {columns} FROM mysql.user WHERE 1 = 0")
        except AdapterError:
            problems.append(
                f"the bot's login {me} cannot read the global grants verify and reconciliation look at "
                f"(GRANT SELECT ({columns}) ON mysql.user: those columns only, not the password hash)"
            )
        return problems

    @staticmethod
    def _held(db: _Session, grantee: str, on: _Object) -> tuple[set[str], bool]:
        """The privileges the bot's login holds directly on ``on`` (from any level above it too), and whether
        it holds GRANT OPTION there. Privileges that come through roles are not seen."""
        queries: list[tuple[str, tuple[Any, ...]]] = [
            ("SELECT GRANTEE, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES", ())
        ]
        if on.database:
            schema = "SELECT GRANTEE, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES"
            queries.append((schema + " WHERE %s LIKE TABLE_SCHEMA", (on.database,)))  # grants hold patterns
        if on.table:
            table = "SELECT GRANTEE, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.TABLE_PRIVILEGES"
            queries.append((table + " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (on.database, on.table)))
        held: set[str] = set()
        grantable = False
        for sql, args in queries:
            for who, privilege, is_grantable in db.run("read the bot's privileges", sql, args):
                if who == grantee:
                    held.add(privilege)
                    grantable = grantable or is_grantable == "YES"
        return held, grantable

    def _connect(self) -> _Session:
        return _Session(self.params, self._where)


class _Session:
    """One connection as the bot, for one call; every failure comes out as an AdapterError without secrets."""

    def __init__(self, params: MysqlParams, where: str) -> None:
        self.params = params
        self.where = where
        self._password = params.password.get_secret_value() if params.password else ""

    def __enter__(self) -> Self:
        try:
            self.connection = pymysql.connect(
                host=self.params.host,
                port=self.params.port,
                user=self.params.user,
                password=self._password,
                connect_timeout=self.params.connect_timeout,
                read_timeout=self.params.query_timeout,
                write_timeout=self.params.query_timeout,
                charset="utf8mb4",
                autocommit=True,
                init_command="SET SESSION time_zone = '+00:00'",  # the expiry event's AT is read in UTC
            )
        except pymysql.MySQLError as error:
            raise self._failure(error, f"log in as '{self.params.user}'", connecting=True) from None
        no_auto_create = (
            "SET SESSION sql_mode = IF(@@SESSION.sql_mode = '', 'NO_AUTO_CREATE_USER', "
            "CONCAT(@@SESSION.sql_mode, ',NO_AUTO_CREATE_USER'))"  # GRANT must never create a passwordless login
        )
        try:
            self.run("set the session's sql_mode", no_auto_create, ignore={_UNKNOWN_SQL_MODE})
        except AdapterError:
            self.connection.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.connection.close()

    def run(
        self, doing: str, sql: str, args: Sequence[Any] = (), *, ignore: Iterable[int] = (), secret: str | None = None
    ) -> tuple[tuple[Any, ...], ...]:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, tuple(args) or None)
                return tuple(cursor.fetchall())
        except pymysql.MySQLError as error:
            if _code(error) in set(ignore):
                return ()
            raise self._failure(error, doing, secret) from None

    def attempt(self, doing: str, sql: str, args: Sequence[Any], refused: int, secret: str | None = None) -> bool:
        """Runs a statement without results; False, instead of an error, when the server answers ``refused``."""
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, tuple(args))
            return True
        except pymysql.MySQLError as error:
            if _code(error) == refused:
                return False
            raise self._failure(error, doing, secret) from None

    def _failure(
        self, error: pymysql.MySQLError, doing: str, secret: str | None = None, *, connecting: bool = False
    ) -> AdapterError:
        code = _code(error)
        detail = str(error.args[1]) if len(error.args) > 1 else type(error).__name__
        detail = redact(detail, self._password, secret)
        if code in (1045, 1698) and connecting:  # 1698 is also a refused GRANT of a role
            message = f"{self.where} refused the bot's login as '{self.params.user}' ({detail})"
        elif code in (2003, 2002):
            message = f"cannot connect to {self.where} ({detail})"
        else:
            message = f"{self.where}: could not {doing} ({f'{code}: ' if code else ''}{detail})"
        # Client-side errors (2000-2999: connection refused, lost, timed out) and a busy server are worth a retry.
        # Server errors are not, whatever their number (4151, a locked account, is as final as 1045).
        if code is None:
            retryable = isinstance(error, pymysql.OperationalError | pymysql.InterfaceError)
        else:
            retryable = code in _RETRYABLE or code in _CLIENT_ERRORS
        return AdapterError(message, retryable=retryable)


def _code(error: pymysql.MySQLError) -> int | None:
    return error.args[0] if error.args and isinstance(error.args[0], int) and error.args[0] else None


def _event_time(expires_at: datetime) -> datetime:
    """When the expiry event runs, in UTC (the session's time zone): whole seconds, rounded up, so that access
    never ends before ``expires_at``."""
    return datetime.fromtimestamp(math.ceil(as_utc(expires_at).timestamp()), UTC).replace(tzinfo=None)


def event_name(grant_id: str) -> str:
    """A valid, unique event name for a grant: readable where the id allows, with a hash against collisions."""
    readable = re.sub(r"[^A-Za-z0-9]", "", grant_id)[:32]
    return f"breakglass_{readable}_{hashlib.sha256(grant_id.encode()).hexdigest()[:8]}"


def _new_password() -> str:
    # The fixed tail meets common password-validation plugins (upper, lower, digit, symbol).
    return secrets.token_urlsafe(24) + "-Aa9"
