"""Gives a person a temporary Redis ACL user, and deletes it again.

Grant runs ``ACL SETUSER <prefix><principal> reset on ><fresh password> <rules…>``, each rule a separate
argument. ``reset`` makes a repeated grant land on exactly the same rules, with a new password that replaces
the old one. The password goes to the requester once, privately (``Receipt.credentials``); it is not stored.

Revoke runs ``ACL DELUSER <name>``: Redis deletes the user and closes every connection authenticated as it
(checked on Redis 7). Deleting a user that is not there is success.

Expiry: Redis has no way to expire an ACL user by itself, so access ends when the bot revokes, and the bot
retries a failed revoke until it succeeds. ACL changes live in memory; with an ``aclfile`` set ``acl_save``
so a deleted user cannot come back from the file when Redis restarts.

Verify (``Verifies``): ``ACL GETUSER``; access while the user exists, is ``on`` and has a password. Reconcile
(``Lists``): ``ACL LIST``; every user under ``user_prefix`` is the bot's, and with ``reconcile: all`` so is every other
user (but ``default`` and the bot's own) whose rules, as Redis writes them out, are exactly the resource's.

Activity (``CapturesActivity``, with ``capture: monitor``): a MONITOR stream attributed to the grant's user through
``CLIENT LIST``, buffered in this process (``redis_activity.py``).

The bot's own Redis user needs ``+acl|setuser +acl|deluser +acl|whoami +acl|dryrun +acl|getuser +acl|list`` (and
``+acl|save`` with ``acl_save``, ``+monitor +client|list`` with ``capture``). Every name starting with ``user_prefix``
belongs to the bot.
"""

from __future__ import annotations

import inspect
import logging
import re
import secrets
import shlex
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

import redis
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.adapters.base import ActivityPage, AdapterError, AdapterParams, GrantContext, Holding, Receipt
from bot.adapters.redis_activity import RedisCapture
from bot.clock import as_utc
from bot.redaction import Redactor

log = logging.getLogger("breakglass.adapters.redis")

MAX_USER_NAME = 128
_KEYWORDS = {"allkeys", "resetkeys", "allchannels", "resetchannels", "allcommands", "nocommands"}
# Key patterns (optionally read- or write-only), channel patterns, and command or category rules. Anything
# else (on/off, passwords, nopass, reset, selectors) is the adapter's business or not supported.
_RULE = re.compile(r"(?:%R|%W|%RW)?~.+|&.+|[+-]@?[^@]+")
# redis-py announces itself with CLIENT SETINFO after AUTH; the bot's user may not, and would fill ACL LOG.
_NO_SETINFO: dict[str, Any] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)

# Failures that mean "not now" rather than "no": the same command succeeds once the server is reachable again, has
# finished a script or function (BUSY, which redis-py has no class for), loaded its data (LOADING), finished moving a
# slot (TRYAGAIN), or has its master or cluster back (MASTERDOWN, CLUSTERDOWN).
_NOT_NOW: tuple[type[redis.RedisError], ...] = (
    redis.ConnectionError,  # BusyLoadingError (LOADING) among them
    redis.TimeoutError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # MasterDownError too
)
_NOT_NOW_CODES = frozenset({"BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"})

T = TypeVar("T")


def retryable(error: redis.RedisError) -> bool:
    """Whether the same call can succeed later: the server was out of reach or busy, not refusing it."""
    if isinstance(error, redis.AuthenticationError):
        return False  # a ConnectionError to redis-py, but a wrong password stays wrong
    if isinstance(error, _NOT_NOW):
        return True
    return str(error).split(" ", 1)[0] in _NOT_NOW_CODES


def rule_problem(rule: str) -> str | None:
    """Why ``rule`` may not be part of a policy's ACL rules, or None."""
    if not rule or any(char.isspace() for char in rule):
        return "must be one ACL rule without whitespace"
    if not rule.isprintable():
        return "contains characters that are not printable"
    if rule.lower() in _KEYWORDS or _RULE.fullmatch(rule):
        return None
    # Not quoted back: a rule such as ">…" is a password.
    return (
        "is not allowed: give key (~, %R~, %W~), channel (&) and command (+, -) rules only; "
        "the adapter sets the user's password and on/off state itself"
    )


class RedisParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be the password

    host: str = Field(min_length=1)
    port: int = Field(default=6379, ge=1, le=65535)
    username: str | None = None  # the bot's ACL user; None is the "default" user
    password: SecretStr | None = None
    tls: bool = False
    tls_ca_file: str | None = None  # CA bundle for the server's certificate; None = the system's CAs
    connect_timeout: float = Field(default=5, gt=0, le=120)
    timeout: float = Field(default=5, gt=0, le=120)
    rules: list[str] = Field(min_length=1)
    user_prefix: str = Field(default="bg-", min_length=1, max_length=32)
    acl_save: bool = False
    # "monitor": a MONITOR stream read by the bot, attributed to the grant's user (see redis_activity.py)
    capture: Literal["off", "monitor"] = "off"
    capture_buffer: int = Field(default=10_000, ge=100, le=1_000_000)  # commands kept per watched user

    @field_validator("rules")
    @classmethod
    def _rules_allowed(cls, rules: list[str]) -> list[str]:
        for index, rule in enumerate(rules):
            problem = rule_problem(rule)
            if problem:
                raise ValueError(f"rule {index + 1} {problem}")
        return rules

    @field_validator("user_prefix")
    @classmethod
    def _prefix_is_a_name(cls, prefix: str) -> str:
        if any(char.isspace() for char in prefix) or not prefix.isprintable():
            raise ValueError("must be printable and without whitespace")
        return prefix

    @model_validator(mode="after")
    def _username_needs_password(self) -> RedisParams:
        if self.username and self.password is None:
            raise ValueError("username is set but password is not: Redis would log the bot in as 'default'")
        return self


class RedisAdapter:
    name: ClassVar[str] = "redis"
    Params: ClassVar[type[AdapterParams]] = RedisParams
    default_principal: ClassVar[str] = "{email_local}"

    def __init__(self, params: RedisParams) -> None:
        self.params = params
        self._where = f"{params.host}:{params.port}"
        self._capture: RedisCapture | None = None

    def __repr__(self) -> str:
        return f"RedisAdapter(host={self._where!r}, username={self.params.username!r})"

    def user_name(self, principal: str) -> str:
        return self.params.user_prefix + principal

    def principal_problem(self, principal: str) -> str | None:
        name = self.user_name(principal)
        if any(char.isspace() for char in principal):
            return "Redis ACL user names cannot contain spaces"
        if not principal.isprintable():
            return "it contains characters that are not printable"
        if len(name) > MAX_USER_NAME:
            return f"the Redis user {self.params.user_prefix}… would be longer than {MAX_USER_NAME} characters"
        if name in ("default", self.params.username):
            return f"'{name}' is a Redis user the bot does not manage"
        return None

    def grant(self, ctx: GrantContext) -> Receipt:
        problem = self.principal_problem(ctx.principal)
        if problem:
            raise AdapterError(f"cannot grant on redis at {self._where}: {problem}", retryable=False)
        user = self.user_name(ctx.principal)
        password = secrets.token_urlsafe(32)

        def setuser(client: redis.Redis) -> None:
            client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *self.params.rules)
            if self.params.acl_save:
                try:
                    client.execute_command("ACL", "SAVE")
                except redis.RedisError:
                    client.execute_command("ACL", "DELUSER", user)  # no access the bot would not know to end
                    raise

        self._run(f"create ACL user {user}", setuser, password)
        log.info("grant %s: redis %s user %s created", ctx.grant_id, self._where, user)
        return Receipt(data={"user": user}, instructions=self._instructions(user, ctx), credentials=password)

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        stored = receipt.data.get("user")
        user = stored if isinstance(stored, str) and stored else self.user_name(ctx.principal)

        def deluser(client: redis.Redis) -> None:
            client.execute_command("ACL", "DELUSER", user)  # also closes the user's connections
            if self.params.acl_save:  # even when nothing was deleted: an earlier try may have failed to save
                client.execute_command("ACL", "SAVE")

        self._run(f"delete ACL user {user}", deluser)
        log.info("revoke %s: redis %s user %s deleted", ctx.grant_id, self._where, user)

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Whether the grant's ACL user still exists, is ``on`` and has a way to log in (a password, or ``nopass``).
        Asked with ``ACL GETUSER``; Redis has no other path to a user's rules than the user itself."""
        stored = receipt.data.get("user")
        user = stored if isinstance(stored, str) and stored else self.user_name(ctx.principal)
        found = self._run(f"look up ACL user {user}", lambda client: client.acl_getuser(user))
        if not found:
            return False
        flags = found.get("flags")
        flags = flags if isinstance(flags, list) else []  # typed by redis-py as any value GETUSER can give
        return "on" in flags and bool(found.get("passwords") or "nopass" in flags)

    def holdings(self, everything: bool) -> list[Holding]:
        """Every ACL user under ``user_prefix``, which only the bot makes. With ``everything`` (``reconcile: all``)
        also every other user whose rules are exactly this resource's, as Redis itself writes them out, except the
        ``default`` user and the bot's own."""
        lines: list[str] = self._run("list ACL users", lambda client: client.execute_command("ACL", "LIST"))
        users = dict(_user_and_rules(line) for line in lines)
        prefix = self.params.user_prefix
        found = [Holding(user.removeprefix(prefix), {"user": user}) for user in users if user.startswith(prefix)]
        if not everything:
            return found
        me = self._run("look up the bot's own user", lambda client: client.execute_command("ACL", "WHOAMI"))
        ours = self._rules_as_redis_writes_them()
        for user, rules in users.items():
            if not user.startswith(prefix) and user not in ("default", me) and rules == ours:
                found.append(Holding(user, {"user": user}, made_by_bot=False))
        return found

    def _rules_as_redis_writes_them(self) -> str:
        """The resource's rules in Redis's own normal form, read back from a scratch user that is ``off`` and has no
        password (so nobody can log in as it), deleted at once. Comparing the policy's text with ``ACL LIST`` would
        miss users whose rules were written in another order or spelling."""
        scratch = f"{self.params.user_prefix}reconcile-{secrets.token_hex(8)}"

        def describe(client: redis.Redis) -> str:
            try:
                client.execute_command("ACL", "SETUSER", scratch, "reset", "off", *self.params.rules)
                lines = client.execute_command("ACL", "LIST")
            finally:
                client.execute_command("ACL", "DELUSER", scratch)
            return next(rules for user, rules in map(_user_and_rules, lines) if user == scratch)

        return self._run("read the resource's rules back", describe)

    def watching(self) -> bool:
        return self.params.capture != "off"

    def watch(self, ctx: GrantContext, receipt: Receipt) -> None:
        self._capturing().watch(self._user(ctx, receipt), as_utc(ctx.expires_at))

    def activity(self, ctx: GrantContext, receipt: Receipt, since: datetime, cursor: str | None) -> ActivityPage:
        return self._capturing().read(self._user(ctx, receipt), as_utc(ctx.expires_at), as_utc(since), cursor)

    def unwatch(self, ctx: GrantContext, receipt: Receipt) -> None:
        if self._capture is not None:
            self._capture.unwatch(self._user(ctx, receipt))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.close()

    def _user(self, ctx: GrantContext, receipt: Receipt) -> str:
        stored = receipt.data.get("user")
        return stored if isinstance(stored, str) and stored else self.user_name(ctx.principal)

    def _capturing(self) -> RedisCapture:
        if self._capture is None:
            wait = self.params.connect_timeout + self.params.timeout
            scrub = Redactor([self.params.password]).scrub
            self._capture = RedisCapture(self._connect, self._failure, scrub, wait, self.params.capture_buffer)
        return self._capture

    def check(self) -> list[str]:
        try:
            return self._run("check the bot's privileges", self._privilege_problems)
        except AdapterError as error:
            return [str(error)]

    def _privilege_problems(self, client: redis.Redis) -> list[str]:
        me = client.execute_command("ACL", "WHOAMI")
        problems = []
        if me.startswith(self.params.user_prefix):
            problems.append(f"the bot's Redis user {me} starts with user_prefix '{self.params.user_prefix}'")
        needed = [
            ("ACL", "SETUSER", f"{self.params.user_prefix}check"),
            ("ACL", "DELUSER", "x"),
            ("ACL", "GETUSER", "x"),  # verify
            ("ACL", "LIST"),  # reconciliation
        ]
        if self.params.acl_save:
            needed.append(("ACL", "SAVE"))
        if self.watching():
            needed += [("MONITOR",), ("CLIENT", "LIST")]
        for command in needed:
            try:
                verdict = client.execute_command("ACL", "DRYRUN", me, *command)
            except redis.exceptions.NoPermissionError:
                return [*problems, f"the bot's Redis user {me} may not run ACL DRYRUN (grant it +acl|dryrun)"]
            except redis.ResponseError as error:
                if "unknown subcommand" in str(error).lower():
                    return problems  # Redis before 7 has no ACL DRYRUN: grants will tell
                raise
            if verdict != "OK":
                wanted = " (activity capture needs it)" if command[0] in ("MONITOR", "CLIENT") else ""
                problems.append(f"the bot's Redis user {me} may not run {' '.join(command[:2])}{wanted}: {verdict}")
        return problems

    def _run(self, what: str, action: Callable[[redis.Redis], T], password: str | None = None) -> T:
        """``action`` on a fresh connection as the bot, with redis-py's errors turned into AdapterError."""
        client = self._connect()
        try:
            return action(client)
        except redis.RedisError as error:
            raise self._failure(what, error, password) from None
        finally:
            client.close()

    def _connect(self) -> redis.Redis:
        params = self.params
        return redis.Redis(
            host=params.host,
            port=params.port,
            username=params.username,
            password=params.password.get_secret_value() if params.password else None,
            ssl=params.tls,
            ssl_ca_certs=params.tls_ca_file,
            ssl_check_hostname=True,  # older redis-py does not check it by default
            socket_connect_timeout=params.connect_timeout,
            socket_timeout=params.timeout,
            retry=Retry(NoBackoff(), 0),  # the bot retries, with its own deadline
            decode_responses=True,
            **_NO_SETINFO,
        )

    def _failure(self, what: str, error: redis.RedisError, password: str | None = None) -> AdapterError:
        """``error`` as the AdapterError the bot acts on: retryable or not, and without a secret."""
        if isinstance(error, redis.AuthenticationError):
            return AdapterError(f"redis at {self._where} refused the bot's login ({error})", retryable=False)
        if isinstance(error, redis.exceptions.NoPermissionError):
            message = f"redis at {self._where} did not let the bot {what} ({self._redact(error, password)})"
            return AdapterError(message, retryable=False)
        if isinstance(error, redis.exceptions.BusyLoadingError):
            return AdapterError(f"redis at {self._where} is still loading its data", retryable=True)
        if isinstance(error, redis.TimeoutError):
            return AdapterError(f"redis at {self._where} timed out trying to {what}", retryable=True)
        if isinstance(error, redis.ConnectionError):
            message = f"cannot reach redis at {self._where} to {what} ({self._redact(error, password)})"
            return AdapterError(message, retryable=True)
        message = f"redis at {self._where} failed to {what} ({self._redact(error, password)})"
        return AdapterError(message, retryable=retryable(error))

    def _redact(self, error: Exception, password: str | None) -> str:
        # Together, longest first, so neither password can break the other apart (see bot.redaction).
        return Redactor([password, self.params.password]).scrub(str(error))

    def _instructions(self, user: str, ctx: GrantContext) -> str:
        command = ["redis-cli", "--user", user, "-h", self.params.host, "-p", str(self.params.port)]
        if self.params.tls:
            command.append("--tls")
        until = as_utc(ctx.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"Connect with `{shlex.join([*command, '--askpass'])}`; the password was sent to you privately. "
            f"Access ends at {until}, when the Redis user {user} is deleted and its connections are closed."
        )


def _user_and_rules(line: str) -> tuple[str, str]:
    """A line of ``ACL LIST`` (``user <name> <flags and rules>``) as the user's name and its rules, without what a
    grant sets for each user on its own: the on/off state and the passwords."""
    _, name, *rest = line.split(" ")
    kept = [token for token in rest if token not in ("on", "off", "nopass") and not token.startswith("#")]
    return name, " ".join(kept)
