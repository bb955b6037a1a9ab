"""Grants membership in PostgreSQL roles, to a person's own login or to a temporary login made for the grant.

Two modes, chosen by ``login``:

``existing`` (default)
    The principal is a login role that already exists, neither a group role (NOLOGIN: every member would get the
    access) nor a superuser (the access adds nothing, and ``pg_signal_backend`` cannot end its sessions); both are
    refused when the request is made and again at grant. Grant: ``GRANT <roles> TO <principal>``. Revoke:
    ``REVOKE <roles> FROM <principal>``, then every open session of the principal is ended with
    ``pg_terminate_backend`` (PostgreSQL cannot tell which sessions used the role). PostgreSQL has no expiring
    membership, so the bot revokes at expiry; while the bot is down, membership stays until it is back.

``temporary``
    Grant creates the login role ``<login_prefix><principal>`` with a random password, ``VALID UNTIL
    <expires_at>`` and membership of the roles; the password reaches the requester once, privately
    (``Receipt.credentials``), and is sent to the server only as a SCRAM verifier, so it is never in a server
    log. PostgreSQL itself refuses password logins after ``VALID UNTIL``, even with the bot down (open sessions
    last until the revoke). A repeated grant gives the same role a new password and expiry. Revoke disables
    the login (``NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'``), revokes the roles, drops the role, commits,
    then ends its sessions. A role that owns objects or holds privileges cannot be dropped: it stays, unable
    to log in and without membership, and the log says so. The bot only touches a login role it created for
    the same resource (marked by a comment on the role), never a same-named role someone else made.

Revoke and extend follow the receipt (the mode, the login, the roles granted and whether sessions could
``SET ROLE``), not the resource's params now: a policy change between grant and revoke must not leave access
behind. Only a receipt without those fields (a grant that timed out before it answered) falls back to the params.

``terminate_sessions: false`` keeps sessions open at revoke. A session that ran ``SET ROLE <role>`` keeps that
role's privileges whatever the membership says, and PostgreSQL shows no other session's current role, so the
option is honoured only where the grant can withhold SET: PostgreSQL 16 and later, ``GRANT … WITH INHERIT TRUE,
SET FALSE``. Before 16, ``check`` names the key and the grant is refused.

Extend (``ExtendsExpiry``): a temporary login gets ``VALID UNTIL <new expiry>``, and nothing else changes (not
the password, not a login a revoke has disabled); a login that is gone or disabled means the access has ended,
which is a final error. If the old ``VALID UNTIL`` has already passed but the bot has not revoked yet, the same
login and password work again. Existing logins: nothing on the server ends the membership, so nothing moves.

Verify (``Verifies``) asks the server after a revoke: for existing logins ``pg_has_role(login, role, 'MEMBER')``, which
sees membership through another role or from another grantor; for temporary logins whether the marked login is still
there and could log in. Reconcile (``Lists``) reads ``pg_auth_members``: bot-made are the marked temporary logins and
the memberships whose grantor is the bot's account; with ``reconcile: all`` every other direct member too (not the
bot, not the roles' admins). A holding's data is a receipt, so a revoke with it ends what was found. Both are in
``postgres_holdings``, which says why the grantor, and where it cannot tell.

Activity capture (``CapturesActivity``, ``capture: pgaudit``): pgaudit session logging set on the grant's login and
read back from the server's JSON log; ``postgres_activity`` keeps its invariants.

Each grant, extend and revoke is one short transaction on a fresh connection, with ``connect_timeout`` and a
``statement_timeout`` so a lock wait cannot hang the bot. Role names are always quoted with
``psycopg.sql.Identifier``; timestamps and verifiers are literals; lookups are parameter-bound.

The bot's account needs ADMIN OPTION on the roles (before PostgreSQL 16, CREATEROLE is enough),
``pg_signal_backend`` to end sessions, and CREATEROLE for temporary logins: see docs/adapters/postgres.md.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import psycopg
from psycopg import errors, sql
from pydantic import AfterValidator, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from bot.adapters import postgres_activity
from bot.adapters.base import ActivityPage, AdapterError, AdapterParams, GrantContext, Holding, Receipt, redact
from bot.adapters.postgres_activity import AuditClass
from bot.adapters.postgres_holdings import holds_any, list_holdings, login_works
from bot.clock import as_utc

log = logging.getLogger("breakglass.adapters.postgres")

MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL would silently truncate a longer name
STATEMENT_TIMEOUT_MS = 10_000
TERMINATE_WAIT_MS = 5_000
MARKER = "breakglass temporary login for resource "
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
# Server refusals at login that a retry cannot fix; anything else (refused, timeout, too many clients) can.
_LOGIN_REFUSALS = (
    "authentication failed",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "not permitted to log in",
    "no password supplied",
    "does not support ssl",
    "certificate",
)
SET_OPTION_VERSION = 160000  # GRANT … WITH SET FALSE: membership whose privileges no session can SET ROLE to
# Transient server states plus the races of two grants for one role ("tuple concurrently updated").
_RETRYABLE = (psycopg.OperationalError, psycopg.InternalError, errors.DuplicateObject, errors.UniqueViolation)


class _Role(NamedTuple):
    oid: int
    comment: str | None
    can_login: bool
    superuser: bool


class _Granted(NamedTuple):
    """What a grant did, from its receipt; what the receipt lacks is taken from the params."""

    login: str
    mode: str
    roles: list[str]
    set_role: bool  # whether sessions could SET ROLE to the roles, so that only ending them takes the access back


def _plain_role(name: str) -> str:
    if not _PLAIN.fullmatch(name) or len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(
            f"'{name}' is not a plain role name (lower-case letters, digits, _ and $, not starting with a digit, "
            f"at most {MAX_NAME_BYTES} bytes)"
        )
    return name


class PostgresParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be the password

    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: SecretStr | None = None  # None: libpq's own sources (PGPASSWORD, ~/.pgpass)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout: int = Field(default=5, ge=2, le=120)
    roles: list[Annotated[str, AfterValidator(_plain_role)]] = Field(min_length=1)
    login: Literal["existing", "temporary"] = "existing"
    login_prefix: str = Field(default="", max_length=32, pattern=r"^[a-z0-9_]*$")
    terminate_sessions: bool = True
    capture: Literal["off", "pgaudit"] = "off"  # activity capture: see postgres_activity and the docs
    capture_classes: list[AuditClass] = Field(default=["all"], min_length=1)  # pgaudit.log for the login

    @field_validator("roles")
    @classmethod
    def _unique(cls, roles: list[str]) -> list[str]:
        return list(dict.fromkeys(roles))

    @field_validator("capture_classes")
    @classmethod
    def _classes_need_capture(cls, classes: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("capture", "off") == "off":
            raise ValueError("only used with capture: pgaudit")
        return list(dict.fromkeys(classes))

    @model_validator(mode="after")
    def _prefix_needs_temporary(self) -> PostgresParams:
        if self.login_prefix and self.login != "temporary":
            raise ValueError("login_prefix is only used with login: temporary")
        return self


class PostgresAdapter:
    name: ClassVar[str] = "postgres"
    Params: ClassVar[type[AdapterParams]] = PostgresParams
    default_principal: ClassVar[str] = "{email_local}"

    def __init__(self, params: PostgresParams) -> None:
        self.params = params
        host = f"[{params.host}]" if ":" in params.host else params.host
        self._where = f"postgres at {host}:{params.port}"

    def __repr__(self) -> str:
        return f"PostgresAdapter({self._where!r}, login={self.params.login!r}, roles={self.params.roles!r})"

    def principal_problem(self, principal: str) -> str | None:
        """Asked when the request is made. For ``existing`` logins it also looks the role up, so a group role or a
        superuser is refused at once; a server that cannot be reached now is no reason to refuse (grant asks again).
        """
        problem = self._name_problem(principal)
        if problem or self.params.login != "existing":
            return problem
        try:
            with self._connection() as conn:
                found = _lookup(conn, principal)
        except AdapterError as error:
            log.info("could not look up %r on %s for a request (%s); the grant will", principal, self._where, error)
            return None
        return _login_problem(found) if found else None

    def _name_problem(self, principal: str) -> str | None:
        login = self._login_name(principal)
        size = len(login.encode())
        if size > MAX_NAME_BYTES:
            return f"PostgreSQL role names are at most {MAX_NAME_BYTES} bytes and {login!r} is {size}"
        if login == self.params.user:
            return "it is the bot's own account"
        if login in self.params.roles:
            return "it is one of the roles this resource grants"
        return None

    def grant(self, ctx: GrantContext) -> Receipt:
        login = self._login_name(ctx.principal)
        problem = self._name_problem(ctx.principal)
        if problem:
            raise AdapterError(f"cannot grant to {login!r} on {self._where}: {problem}", retryable=False)
        roles = self.params.roles
        until = as_utc(ctx.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        set_role = self.params.terminate_sessions  # else sessions stay open, so no session may hold the role
        with self._connection() as conn, conn.transaction():
            if not set_role and conn.info.server_version < SET_OPTION_VERSION:
                raise AdapterError(f"{self._where}: {self._kept_sessions_problem(conn)}", retryable=False)
            missing = sorted(set(roles) - _existing(conn, roles))
            if missing:
                raise AdapterError(
                    f"{self._where} has no role {', '.join(map(repr, missing))} (params.roles)", retryable=False
                )
            if self.params.login == "existing":
                found = _lookup(conn, login)
                if found is None:
                    raise AdapterError(f"{self._where} has no login role {login!r} to grant to", retryable=False)
                # Asked again: the role may have changed since the request was made.
                problem = _login_problem(found)
                if problem:
                    raise AdapterError(f"cannot grant to {login!r} on {self._where}: {problem}", retryable=False)
                self._grant_roles(conn, login, set_role)
                password = None
            else:
                password = secrets.token_urlsafe(24)
                self._create_or_renew(conn, login, password, ctx, set_role)
        log.info("grant %s: %s now in %s on %s until %s", ctx.grant_id, login, ",".join(roles), self._where, until)
        return Receipt(
            data={"login": login, "mode": self.params.login, "roles": list(roles), "set_role": set_role},
            instructions=self._instructions(login, until),
            credentials=password,
        )

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        granted = self._granted(ctx, receipt)
        login, roles = granted.login, granted.roles
        with self._connection() as conn:
            with conn.transaction():
                found = _lookup(conn, login)
                if found is None:
                    log.info("revoke %s: %s has no role %r; nothing to do", ctx.grant_id, self._where, login)
                    return
                temporary = granted.mode == "temporary"
                if temporary and found.comment != MARKER + ctx.resource:
                    log.warning(
                        "revoke %s: %r on %s is not a temporary login Breakglass made for %s; left untouched",
                        ctx.grant_id,
                        login,
                        self._where,
                        ctx.resource,
                    )
                    return
                if temporary:
                    conn.execute(
                        sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'").format(
                            sql.Identifier(login)
                        )
                    )
                existing = _existing(conn, roles)
                present = [role for role in roles if role in existing]
                if present:
                    conn.execute(sql.SQL("REVOKE {} FROM {}").format(_names(present), sql.Identifier(login)))
                kept = temporary and not _drop(conn, login)
            # A session that ran SET ROLE keeps the role whatever the membership says: where the grant let it, only
            # ending the session takes the access back, whatever terminate_sessions says now.
            end_sessions = self.params.terminate_sessions or granted.set_role
            if end_sessions and found.superuser:
                # pg_signal_backend cannot end a superuser's sessions, and they hold every privilege anyway.
                log.warning(
                    "revoke %s: %r on %s is a superuser, so its sessions were left open",
                    ctx.grant_id,
                    login,
                    self._where,
                )
                end_sessions = False
            # After the commit, so an ended session cannot log straight back in before the change is visible.
            ended = self._terminate(conn, found.oid) if end_sessions else 0
        if kept:
            log.warning(
                "revoke %s: %r on %s owns objects or holds privileges, so it was kept with login disabled and no "
                "membership; drop it by hand (REASSIGN OWNED, DROP OWNED, DROP ROLE)",
                ctx.grant_id,
                login,
                self._where,
            )
        log.info(
            "revoke %s: %s out of %s on %s, %d session(s) ended",
            ctx.grant_id,
            login,
            ",".join(roles),
            self._where,
            ended,
        )

    def extend(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Temporary logins: ``ALTER ROLE … VALID UNTIL <new expiry>`` on the login the grant made. Membership of an
        existing login has no end on the server, so there is nothing to move; the bot's revoke ends it."""
        granted = self._granted(ctx, receipt)
        if granted.mode == "existing":
            log.info("extend %s: membership on %s has no end on the server; nothing to move", ctx.grant_id, self._where)
            return
        login = granted.login
        until = as_utc(ctx.expires_at)
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", [login]
            ).fetchone()
            if row is not None and row[1] != MARKER + ctx.resource:
                raise AdapterError(
                    f"{self._where}: {login!r} is not this resource's temporary login; left untouched", retryable=False
                )
            if row is None or not row[0]:  # dropped, or disabled by a revoke that could not drop it
                raise AdapterError(
                    f"{self._where} has no usable login {login!r} any more: the access was revoked, so it cannot be "
                    "extended",
                    retryable=False,
                )
            # VALID UNTIL only: a login a revoke disabled meanwhile stays disabled.
            conn.execute(
                sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(login), sql.Literal(until.isoformat()))
            )
        log.info("extend %s: %s on %s now valid until %s", ctx.grant_id, login, self._where, until.isoformat())

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Existing logins: whether the login is still a member of any of the grant's roles by any path (through
        another role, or a membership someone else granted), which PostgreSQL answers with ``pg_has_role``.
        Temporary logins: whether the login the grant made is still there and can log in."""
        granted = self._granted(ctx, receipt)
        with self._connection() as conn:
            if granted.mode == "temporary":
                return login_works(conn, granted.login, MARKER + ctx.resource)
            return holds_any(conn, granted.login, granted.roles)

    def holdings(self, everything: bool) -> list[Holding]:
        """Bot-made: temporary logins carrying the marker, or memberships the bot's account granted (see
        postgres_holdings). With ``everything``, every other direct member of the roles too."""
        with self._connection() as conn:
            return list_holdings(
                conn,
                list(self.params.roles),
                temporary=self.params.login == "temporary",
                prefix=self.params.login_prefix,
                marker_prefix=MARKER,
                everything=everything,
            )

    def watching(self) -> bool:
        return self.params.capture != "off"

    def watch(self, ctx: GrantContext, receipt: Receipt) -> None:
        """pgaudit on for the grant's login, and its sessions from before that ended (see postgres_activity)."""
        login = self._granted(ctx, receipt).login
        with self._connection() as conn:
            ended = postgres_activity.watch(conn, login, ctx.grant_id, self.params.capture_classes, self._where)
        log.info(
            "watch %s: pgaudit on for %s on %s, %d older session(s) ended", ctx.grant_id, login, self._where, ended
        )

    def activity(self, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None) -> ActivityPage:
        login = self._granted(ctx, receipt).login
        with self._connection() as conn:
            return postgres_activity.read(conn, login, since, cursor, self.params.password, self._where)

    def unwatch(self, ctx: GrantContext, receipt: Receipt) -> None:
        login = self._granted(ctx, receipt).login
        with self._connection() as conn:
            stopped = postgres_activity.unwatch(conn, login, ctx.grant_id)
        log.info(
            "unwatch %s: %s on %s %s",
            ctx.grant_id,
            login,
            self._where,
            "no longer recorded" if stopped else "still watched for another grant",
        )

    def check(self) -> list[str]:
        try:
            with self._connection() as conn:
                problems = self._problems(conn)
                if self.watching():
                    problems += postgres_activity.problems(conn, self.params.user, self.params.login)
                return problems
        except AdapterError as error:
            return [str(error)]

    def _problems(self, conn: psycopg.Connection) -> list[str]:
        user = sql.Identifier(self.params.user).as_string(conn)
        superuser, createrole, can_signal = conn.execute(
            "SELECT rolsuper, rolcreaterole, pg_has_role(current_user, 'pg_signal_backend', 'USAGE')"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (False, False, False)
        createrole_grants = createrole and conn.info.server_version < 160000  # PostgreSQL 16 narrowed CREATEROLE
        rows = conn.execute(
            "SELECT rolname, rolsuper, pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION')"
            " FROM pg_roles WHERE rolname = ANY(%s)",
            [self.params.roles],
        ).fetchall()
        found = {name: (rolsuper, admin) for name, rolsuper, admin in rows}
        problems = []
        for role in self.params.roles:
            if role not in found:
                problems.append(f"params.roles: {self._where} has no role {role!r}")
                continue
            rolsuper, admin = found[role]
            if not (superuser or admin or (createrole_grants and not rolsuper)):
                problems.append(
                    f"the bot's account {self.params.user!r} cannot grant {role!r}: "
                    f"GRANT {sql.Identifier(role).as_string(conn)} TO {user} WITH ADMIN OPTION"
                )
        if self.params.login == "temporary" and not (superuser or createrole):
            problems.append(
                f"the bot's account {self.params.user!r} cannot create temporary logins: ALTER ROLE {user} CREATEROLE"
            )
        can_set_false = conn.info.server_version >= SET_OPTION_VERSION
        if not self.params.terminate_sessions and not can_set_false:
            problems.append(self._kept_sessions_problem(conn))
        if self.params.terminate_sessions and not (superuser or can_signal):
            problems.append(
                f"the bot's account {self.params.user!r} cannot end open sessions at revoke: "
                f"GRANT pg_signal_backend TO {user}{' (or set terminate_sessions: false)' if can_set_false else ''}"
            )
        return problems

    def _kept_sessions_problem(self, conn: psycopg.Connection) -> str:
        return (
            f"params.terminate_sessions: false cannot be honoured on PostgreSQL {conn.info.server_version // 10000}: "
            "a session that ran SET ROLE keeps the role's privileges after the revoke, and only PostgreSQL 16 and "
            "later can grant a role without SET; set terminate_sessions: true"
        )

    def _granted(self, ctx: GrantContext, receipt: Receipt) -> _Granted:
        data = receipt.data
        mode = data.get("mode")
        login = data.get("login")
        roles = data.get("roles")
        roles = [role for role in roles if isinstance(role, str) and role] if isinstance(roles, list) else []
        return _Granted(
            login=login if isinstance(login, str) and login else self._login_name(ctx.principal),
            mode=mode if mode in ("existing", "temporary") else self.params.login,
            roles=roles or list(self.params.roles),
            set_role=data.get("set_role") is not False,  # receipts from before the field: sessions could
        )

    def _grant_roles(self, conn: psycopg.Connection, login: str, set_role: bool) -> None:
        roles, name = _names(self.params.roles), sql.Identifier(login)
        if set_role:
            conn.execute(sql.SQL("GRANT {} TO {}").format(roles, name))
            return
        # INHERIT TRUE explicitly: a NOINHERIT login would otherwise get a membership it cannot use at all.
        conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE").format(roles, name))
        # Another grantor's grant, or membership through another role, would still let a session SET ROLE.
        settable = [
            row[0]
            for row in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND pg_has_role(%s, oid, 'SET')",
                [self.params.roles, login],
            )
        ]
        if settable:
            raise AdapterError(
                f"{self._where}: {login!r} can SET ROLE to {', '.join(map(repr, settable))} through a membership the "
                "bot did not grant, so with terminate_sessions: false the revoke could not take it back",
                retryable=False,
            )

    def _create_or_renew(
        self, conn: psycopg.Connection, login: str, password: str, ctx: GrantContext, set_role: bool
    ) -> None:
        name = sql.Identifier(login)
        verifier = conn.pgconn.encrypt_password(password.encode(), login.encode(), b"scram-sha-256").decode()
        until = sql.Literal(as_utc(ctx.expires_at).isoformat())
        found = _lookup(conn, login)
        if found is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL {}").format(name, sql.Literal(verifier), until)
            )
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(name, sql.Literal(MARKER + ctx.resource)))
            self._grant_roles(conn, login, set_role)
            return
        comment = found.comment or ""
        if comment != MARKER + ctx.resource:
            owner = f"the temporary login of {comment.removeprefix(MARKER)!r}" if comment.startswith(MARKER) else ""
            raise AdapterError(
                f"{self._where} already has a role {login!r} that is not this resource's temporary login"
                f"{' (it is ' + owner + ')' if owner else ''}; give each resource its own login_prefix",
                retryable=False,
            )
        conn.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {} VALID UNTIL {}").format(name, sql.Literal(verifier), until)
        )
        self._grant_roles(conn, login, set_role)

    def _terminate(self, conn: psycopg.Connection, oid: int) -> int:
        # With a timeout (PostgreSQL 14+) the call waits until each session has really gone.
        waits = conn.info.server_version >= 140000
        terminate = f"pg_terminate_backend(pid, {TERMINATE_WAIT_MS})" if waits else "pg_terminate_backend(pid)"
        query = (
            f"SELECT count(*) FILTER (WHERE {terminate}) FROM pg_stat_activity"
            " WHERE usesysid = %s AND pid <> pg_backend_pid()"
        )
        try:
            row = conn.execute(query, [oid]).fetchone()
        except errors.InsufficientPrivilege as error:
            raise AdapterError(
                f"{self._where}: access was revoked but open sessions could not be ended "
                f"({error.diag.message_primary}); the bot's account needs pg_signal_backend",
                retryable=False,
            ) from None
        return int(row[0]) if row else 0

    def _instructions(self, login: str, until: str) -> str:
        p = self.params
        roles = ", ".join(p.roles)
        closing = " Open sessions are closed when access ends." if p.terminate_sessions else ""
        if p.login == "existing":
            return (
                f"Your PostgreSQL login `{login}` on {p.host}:{p.port} (database {p.database}) has {roles} until "
                f"{until}. Sessions already open get it at once.{closing}"
            )
        return (
            f"Log in to PostgreSQL at {p.host}:{p.port}, database {p.database}, as `{login}` with the password sent to "
            f"you privately. The login has {roles} and stops working at {until}.{closing}"
        )

    def _login_name(self, principal: str) -> str:
        return self.params.login_prefix + principal if self.params.login == "temporary" else principal

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        p = self.params
        try:
            conn = psycopg.connect(
                host=p.host,
                port=p.port,
                dbname=p.database,
                user=p.user,
                password=p.password.get_secret_value() if p.password else None,
                sslmode=p.sslmode,
                connect_timeout=p.connect_timeout,
                application_name="breakglass",
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                autocommit=True,
            )
        except psycopg.Error as error:
            raise self._login_error(error) from None
        try:
            yield conn
        except psycopg.Error as error:
            reason = error.diag.message_primary or _first_line(str(error))  # never the statement text
            raise AdapterError(
                self._redact(f"{self._where}: {reason}"), retryable=isinstance(error, _RETRYABLE)
            ) from None
        finally:
            conn.close()

    def _login_error(self, error: psycopg.Error) -> AdapterError:
        reason = _first_line(str(error)).rpartition(" failed: ")[2].removeprefix("FATAL:").strip()
        if any(mark in reason.lower() for mark in _LOGIN_REFUSALS):
            message = f"{self._where} refused the bot's login as {self.params.user!r} ({reason})"
            return AdapterError(self._redact(message), retryable=False)
        return AdapterError(self._redact(f"cannot connect to {self._where} ({reason})"), retryable=True)

    def _redact(self, text: str) -> str:
        return redact(text, self.params.password)


def _names(roles: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(role) for role in roles)


def _existing(conn: psycopg.Connection, roles: list[str]) -> set[str]:
    return {row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [roles])}


def _lookup(conn: psycopg.Connection, role: str) -> _Role | None:
    """The role as the adapter needs to know it, or None when there is no such role."""
    row: Any = conn.execute(
        "SELECT oid, shobj_description(oid, 'pg_authid'), rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s",
        [role],
    ).fetchone()
    return _Role(int(row[0]), row[1], bool(row[2]), bool(row[3])) if row else None


def _login_problem(role: _Role) -> str | None:
    """Why an ``existing`` role cannot take break-glass access; worded to follow "…, which it cannot use: "."""
    if not role.can_login:
        return "it is a group role that cannot log in, so every member of it would get the access"
    if role.superuser:
        return "it is a superuser, so break-glass access would add nothing and could not be revoked cleanly"
    return None


def _drop(conn: psycopg.Connection, role: str) -> bool:
    """Drop the role; False, with nothing changed, when it still owns objects or holds privileges."""
    try:
        with conn.transaction():  # a savepoint: the disabling and the revoke stand either way
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    except errors.DependentObjectsStillExist:
        return False
    return True


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
