"""Puts the requester in an LDAP group for the length of a grant: for anything that authorises by group membership.

Grant adds one value to the group's membership attribute (a modify/add): the principal's DN, built from the
``user_dn`` template with the principal escaped by ldap3's ``escape_rdn``, for ``member`` and ``uniqueMember``;
the principal itself for ``memberUid``. Revoke deletes that value (a modify/delete). A value that is already there
on grant, or already gone on revoke, is success, so both are idempotent. Before granting, the adapter reads the
principal's entry (``verify_user``): most directories accept a DN that names nobody, and such a grant would look
done while opening nothing.

``groupOfNames`` and ``groupOfUniqueNames`` must keep at least one member. When a revoke would remove the last one,
the adapter puts the group's own DN in its place in the same atomic modify: revoking never fails for that reason,
and the placeholder names no person.

A membership has no owner, so the grant also writes a mark on the group: the value ``breakglass-grant <principal>``
of its ``description`` (which groupOfNames, groupOfUniqueNames and posixGroup all allow), and the revoke deletes
it. That is how reconciliation tells the bot's memberships from standing ones. A bot that may not write
``description`` still grants, with a warning: the membership is then unmarked and looks standing, as do the
memberships granted before marks existed.

Verify (``Verifies``) asks the server whether the group's membership attribute still holds the principal's value
(a search of the group entry with an equality filter, so the server's own matching rule decides, as an
application's check would).

Reconciliation (``Lists``) reads the group's members and marks: marked members are the bot's, and with
``everything`` every member is listed (the group's own DN, the placeholder a revoke may leave, never). A member's
principal is read back from its DN through the ``user_dn`` template (``ldap_names.UserDn``); a DN the template does
not describe is listed under the DN itself.

LDAP has no expiry for a group membership, so the bot's revoke at ``expires_at`` is what ends it; the bot retries
a failed revoke and reports one that keeps failing. Applications that read membership only at login keep what
they saw until the user's next login.

The bot's own account needs to bind, read the group and the people entries, and write the membership attribute
of the group (see docs/adapters/ldap.md). Every call opens its own connection, with ``timeout`` for connecting
and for each reply, and unbinds when done.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, NONE, SIMPLE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn
from pydantic import ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator

from bot.adapters.base import AdapterError, AdapterParams, GrantContext, Holding, Receipt, redact
from bot.adapters.ldap_names import UserDn, dn_problem, same_dn, user_dn_problem
from bot.clock import as_utc

log = logging.getLogger("breakglass.adapters.ldap")

# LDAP result codes (RFC 4511) the adapter treats specially.
SUCCESS = 0
TIME_LIMIT_EXCEEDED = 3
ADMIN_LIMIT_EXCEEDED = 11
REFERRAL = 10
CONFIDENTIALITY_REQUIRED = 13
NO_SUCH_ATTRIBUTE = 16
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS_RIGHTS = 50
BUSY = 51
UNAVAILABLE = 52
OBJECT_CLASS_VIOLATION = 65
OTHER = 80
_RETRYABLE = {TIME_LIMIT_EXCEEDED, ADMIN_LIMIT_EXCEEDED, BUSY, UNAVAILABLE, OTHER}
_HINTS = {
    INSUFFICIENT_ACCESS_RIGHTS: "insufficient access rights",
    REFERRAL: "the server referred the change elsewhere: point url at a writable server, not a read-only replica",
    CONFIDENTIALITY_REQUIRED: "the server requires TLS: use ldaps:// or start_tls",
    OBJECT_CLASS_VIOLATION: "the group's object classes do not allow it",
}

# Which membership attribute the usual group object classes carry (lower-cased), for check().
_GROUP_CLASSES = {
    "groupofnames": "member",
    "groupofmembers": "member",
    "group": "member",
    "groupofuniquenames": "uniquemember",
    "posixgroup": "memberuid",
}
_POSIX_NAME = re.compile(r"[A-Za-z0-9._@][A-Za-z0-9._@-]*")
_PROBE = "breakglass-check-"  # values check() asks the server to delete: never a real member
MARK_ATTRIBUTE = "description"
MARK_PREFIX = "breakglass-grant "


class LdapParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be the password

    url: str
    bind_dn: str
    password: SecretStr = Field(min_length=1)  # an empty password is an anonymous bind
    group_dn: str
    member_attribute: Literal["member", "uniqueMember", "memberUid"] = "member"
    user_dn: str | None = None  # e.g. "uid={principal},ou=people,dc=example,dc=org"
    verify_user: bool = True
    start_tls: bool = False
    ca_file: FilePath | None = None
    timeout: float = Field(default=5, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ldap", "ldaps"):
            raise ValueError("must start with ldap:// or ldaps://")
        if not parts.hostname or parts.username or parts.password:
            raise ValueError("must name a host (and no user: the bot binds as bind_dn)")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("must be only ldap[s]://host[:port]: the group is given by group_dn")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("ca_file")
    @classmethod
    def _pem(cls, value: FilePath | None) -> FilePath | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, ValueError) as error:
                raise ValueError(f"not a PEM file of CA certificates ({error})") from None
        return value

    @field_validator("bind_dn", "group_dn")
    @classmethod
    def _dn(cls, value: str) -> str:
        problem = dn_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("user_dn")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        problem = user_dn_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LdapParams:
        if self.member_attribute != "memberUid" and self.user_dn is None:
            raise ValueError(f"user_dn is required: {self.member_attribute} holds the DNs of people")
        if self.start_tls and self.url.startswith("ldaps:"):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS from the start")
        return self


def _values(attributes: dict[str, Any], name: str) -> list[bytes]:
    """An attribute's raw values, whatever case the server spelt its name in."""
    return next((list(values) for key, values in attributes.items() if key.casefold() == name.casefold()), [])


class LdapAdapter:
    name: ClassVar[str] = "ldap"
    Params: ClassVar[type[AdapterParams]] = LdapParams
    default_principal: ClassVar[str] = "{email_local}"  # uid is usually the mailbox name

    def __init__(self, params: LdapParams) -> None:
        self.params = params
        parts = urlsplit(params.url)
        self._tls_from_start = parts.scheme == "ldaps"
        self._host = parts.hostname or ""
        self._port = parts.port or (636 if self._tls_from_start else 389)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._where = f"LDAP server {host}:{self._port}"
        self._tls = _VerifiedTls(self._host, str(params.ca_file) if params.ca_file else None)
        self._people = UserDn(params.user_dn) if params.user_dn and params.member_attribute != "memberUid" else None

    def __repr__(self) -> str:
        return f"LdapAdapter(server={self._where!r}, group_dn={self.params.group_dn!r})"

    def principal_problem(self, principal: str) -> str | None:
        if self.params.member_attribute == "memberUid":
            if not _POSIX_NAME.fullmatch(principal):
                return "memberUid holds a POSIX user name: letters, digits, '.', '_', '@' and '-' (not first) only"
            return None
        if principal != principal.strip():
            return "it begins or ends with a space, which the directory ignores in names"
        return None

    def _member_value(self, principal: str) -> str:
        """The value of the membership attribute that stands for ``principal``."""
        if self.params.member_attribute == "memberUid":
            return principal
        return self._user_dn(principal)

    def grant(self, ctx: GrantContext) -> Receipt:
        group, attribute = self.params.group_dn, self.params.member_attribute
        value = self._member_value(ctx.principal)
        with self._session() as conn:
            if self.params.verify_user and self.params.user_dn:
                self._require_entry(conn, ctx.principal)
            conn.modify(group, {attribute: [(MODIFY_ADD, [value])]})
            code = conn.result["result"]
            if code not in (SUCCESS, ATTRIBUTE_OR_VALUE_EXISTS):
                raise self._failed(f"adding {value} to {attribute} of {group}", conn.result)
            log.info("grant %s: %s added to %s of %s", ctx.grant_id, value, attribute, group)
            self._write_mark(conn, ctx, group, add=True)
        until = as_utc(ctx.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        return Receipt(
            data={"group_dn": group, "attribute": attribute, "value": value},
            instructions=(
                f"You are a member of the LDAP group {group} as {value} until {until}. Applications that read "
                "group membership when you log in see it from your next login."
            ),
        )

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        # The receipt says what was added, so a policy change in between cannot redirect the revoke.
        group = str(receipt.data.get("group_dn") or self.params.group_dn)
        attribute = str(receipt.data.get("attribute") or self.params.member_attribute)
        value = str(receipt.data.get("value") or self._member_value(ctx.principal))
        with self._session() as conn:
            conn.modify(group, {attribute: [(MODIFY_DELETE, [value])]})
            if conn.result["result"] == OBJECT_CLASS_VIOLATION and attribute != "memberUid":
                # The last member of a groupOfNames: leave the group's own DN in its place, atomically.
                conn.modify(group, {attribute: [(MODIFY_DELETE, [value]), (MODIFY_ADD, [group])]})
            if conn.result["result"] not in (SUCCESS, NO_SUCH_ATTRIBUTE):
                raise self._failed(f"removing {value} from {attribute} of {group}", conn.result)
            log.info("revoke %s: %s removed from %s of %s", ctx.grant_id, value, attribute, group)
            self._write_mark(conn, ctx, group, add=False)

    def _write_mark(self, conn: Connection, ctx: GrantContext, group: str, *, add: bool) -> None:
        """Add or delete the membership's mark. Only a retryable failure fails the call: a directory that refuses
        the mark (no write access to it, a single-valued description) still has the membership granted or gone."""
        mark = MARK_PREFIX + ctx.principal
        conn.modify(group, {MARK_ATTRIBUTE: [(MODIFY_ADD if add else MODIFY_DELETE, [mark])]})
        if conn.result["result"] in (SUCCESS, ATTRIBUTE_OR_VALUE_EXISTS if add else NO_SUCH_ATTRIBUTE):
            return
        error = self._failed(f"marking {MARK_ATTRIBUTE} of {group}", conn.result)
        if error.retryable:
            raise error
        if add:
            log.warning("grant %s: %s; reconciliation takes the membership as standing", ctx.grant_id, error)
        else:
            log.warning("revoke %s: %s; the membership is gone, its mark stays", ctx.grant_id, error)

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Whether the group still holds the principal's value (see the module docstring)."""
        group = str(receipt.data.get("group_dn") or self.params.group_dn)
        attribute = str(receipt.data.get("attribute") or self.params.member_attribute)
        value = str(receipt.data.get("value") or self._member_value(ctx.principal))
        with self._session() as conn:
            conn.search(group, f"({attribute}={escape_filter_chars(value)})", search_scope=BASE, attributes=["1.1"])
            if conn.result["result"] != SUCCESS:
                raise self._failed(f"reading {attribute} of {group}", conn.result)
            return len(conn.response or []) > 0

    def holdings(self, everything: bool) -> list[Holding]:
        """The group's members now: the marked ones, or with ``everything`` all (see the module docstring)."""
        group, attribute = self.params.group_dn, self.params.member_attribute
        with self._session() as conn:
            conn.search(group, "(objectClass=*)", search_scope=BASE, attributes=[attribute, MARK_ATTRIBUTE])
            if conn.result["result"] != SUCCESS or not conn.response:
                raise self._failed(f"reading the members of {group}", conn.result)
            found = conn.response[0]["raw_attributes"]
        members = [raw.decode(errors="replace") for raw in _values(found, attribute)]
        marks = [raw.decode(errors="replace") for raw in _values(found, MARK_ATTRIBUTE)]
        marked = {mark.removeprefix(MARK_PREFIX).casefold() for mark in marks if mark.startswith(MARK_PREFIX)}
        holdings = []
        for value in members:
            principal = (self._people.principal_in(value) if self._people else None) or value
            if principal == value and attribute != "memberUid" and same_dn(value, group):
                continue  # the placeholder a revoke of the last member leaves
            made = principal.casefold() in marked
            if made or everything:
                data = {"group_dn": group, "attribute": attribute, "value": value}
                holdings.append(Holding(principal, data, made_by_bot=made))
        return holdings

    def check(self) -> list[str]:
        try:
            with self._session() as conn:
                return self._problems(conn)
        except AdapterError as error:
            return [str(error)]

    def _problems(self, conn: Connection) -> list[str]:
        group, attribute = self.params.group_dn, self.params.member_attribute
        conn.search(group, "(objectClass=*)", search_scope=BASE, attributes=["objectClass"])
        if conn.result["result"] == NO_SUCH_OBJECT:
            return [f"group_dn: the group {group} does not exist on the {self._where}, or the bot cannot read it"]
        if conn.result["result"] != SUCCESS or not conn.response:
            return [str(self._failed(f"reading the group {group}", conn.result))]
        problems = []
        classes = {str(name).lower() for name in conn.response[0]["attributes"].get("objectClass", [])} - {"top"}
        if classes and classes <= set(_GROUP_CLASSES) and attribute.lower() not in {_GROUP_CLASSES[c] for c in classes}:
            problems.append(f"member_attribute: the group {group} ({', '.join(sorted(classes))}) has no {attribute}")
        # No dry run in LDAP: deleting a value that cannot be there makes the server check the bot's write access
        # (OpenLDAP checks ACLs first) and changes nothing. A server that checks values first passes it unseen.
        marker = f"{_PROBE}{uuid.uuid4().hex[:12]}"
        conn.modify(group, {attribute: [(MODIFY_DELETE, [self._member_value(marker)])]})
        if conn.result["result"] not in (SUCCESS, NO_SUCH_ATTRIBUTE):
            problems.append(str(self._failed(f"writing {attribute} of {group}", conn.result)))
        parent = self._user_parent()
        if self.params.verify_user and parent:
            conn.search(parent, "(objectClass=*)", search_scope=BASE, attributes=["1.1"])
            if conn.result["result"] != SUCCESS:
                problems.append(f"user_dn: the bot cannot read {parent}, where people's entries should be")
        return problems

    def _user_dn(self, principal: str) -> str:
        assert self.params.user_dn is not None  # the params' validator requires it in DN modes
        return self.params.user_dn.format(principal=escape_rdn(principal))

    def _user_parent(self) -> str | None:
        """The entry above the people's entries, when the principal is the first RDN of ``user_dn``."""
        if not self.params.user_dn:
            return None
        marker = f"P{uuid.uuid4().hex}"
        components = parse_dn(self.params.user_dn.format(principal=marker))
        if len(components) < 2 or components[0][1] != marker or components[0][2] != ",":
            return None
        return self.params.user_dn.partition("{principal},")[2] or None

    def _require_entry(self, conn: Connection, principal: str) -> None:
        dn = self._user_dn(principal)
        conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["1.1"])
        code = conn.result["result"]
        if code == NO_SUCH_OBJECT:
            raise AdapterError(
                f"there is no entry {dn} on the {self._where} (or the bot cannot read it), so membership would "
                "open nothing: check the resource's principal mapping and user_dn",
                retryable=False,
            )
        if code != SUCCESS:
            raise self._failed(f"reading {dn}", conn.result)

    @contextmanager
    def _session(self) -> Iterator[Connection]:
        """A connection bound as the bot; every LDAP library failure comes out as an AdapterError."""
        timeout = self.params.timeout
        server = Server(
            self._host,
            port=self._port,
            use_ssl=self._tls_from_start,
            tls=self._tls,
            get_info=NONE,
            connect_timeout=timeout,
        )
        conn = Connection(
            server,
            user=self.params.bind_dn,
            password=self.params.password.get_secret_value(),
            authentication=SIMPLE,
            client_strategy=SYNC,
            receive_timeout=math.ceil(timeout),  # ldap3 sets SO_RCVTIMEO from it, in whole seconds
            raise_exceptions=False,
            auto_referrals=False,
        )
        try:
            conn.open()
            if self.params.start_tls and not conn.start_tls():
                raise AdapterError(
                    f"the {self._where} did not start TLS ({self._redact(str(conn.last_error))})", retryable=False
                )
            if not conn.bind():
                raise self._bind_refused(conn.result)
            yield conn
        except (LDAPException, OSError) as error:
            raise self._communication(error) from None
        finally:
            with suppress(LDAPException, OSError):  # a connection that is gone has nothing left to release
                conn.unbind()
            if conn.socket is not None:  # ldap3 leaves the socket open when opening or StartTLS failed
                conn.socket.close()

    def _bind_refused(self, result: dict[str, Any]) -> AdapterError:
        if result["result"] == INVALID_CREDENTIALS:
            return AdapterError(
                f"the {self._where} refused the bot's bind as {self.params.bind_dn} (invalid credentials)",
                retryable=False,
            )
        return self._failed(f"binding as {self.params.bind_dn}", result)

    def _failed(self, what: str, result: dict[str, Any]) -> AdapterError:
        code = result["result"]  # always there: every caller has compared it already
        detail = _HINTS.get(code) or str(result.get("description") or f"result {code}")
        message = self._redact(str(result.get("message") or "").strip())
        if message and code not in _HINTS:
            detail += f": {message[:200]}"
        if code == NO_SUCH_OBJECT:
            detail = "no such entry, or the bot cannot see it"
        return AdapterError(f"the {self._where} refused {what} ({detail})", retryable=code in _RETRYABLE)

    def _communication(self, error: LDAPException | OSError) -> AdapterError:
        text = self._redact(str(error))
        if "CERTIFICATE_VERIFY_FAILED" in text:
            reason = text.partition("certificate verify failed:")[2].partition("(_ssl")[0].strip(" ,.'\")")
            if "mismatch" in reason:
                message = f"the TLS certificate of the {self._where} is not for {self._host}"
                return AdapterError(message, retryable=False)
            return AdapterError(
                f"the {self._where} presented a TLS certificate that could not be verified ({reason or 'untrusted'}):"
                " set ca_file to the CA that signed it",
                retryable=False,
            )
        if isinstance(error, LDAPCommunicationError | LDAPResponseTimeoutError | OSError):
            reason = re.sub(r"^\[Errno -?\d+\] ", "", text.rpartition(": ")[2].strip(" ,'\"()"))[:120]
            reason = reason or type(error).__name__
            return AdapterError(f"cannot reach the {self._where} ({reason})", retryable=True)
        return AdapterError(
            f"talking to the {self._where} failed ({type(error).__name__}: {text[:200]})", retryable=False
        )

    def _redact(self, text: str) -> str:
        return redact(text, self.params.password)


class _VerifiedTls(Tls):
    """ldap3's TLS with the certificate and host name checked by Python's ssl module during the handshake.

    ldap3 switches that check off and matches names itself afterwards, with the deprecated ``ssl.match_hostname``
    (gone in Python 3.12; ldap3's fallback ignores IP addresses), and leaks the socket when the name is wrong.
    """

    def __init__(self, host: str, ca_file: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self._host = host
        self._context = ssl.create_default_context(cafile=ca_file)  # the system CAs when ca_file is None

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_hostname=self._host, do_handshake_on_connect=do_handshake
        )
