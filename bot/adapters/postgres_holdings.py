"""What the postgres adapter asks the server to verify a revoke and to list holdings for reconciliation.

Kept apart from ``postgres.py`` (which grants and revokes) because these are read-only questions, each one query:

- whether a principal still holds a grant's roles by any path (``pg_has_role … 'MEMBER'`` sees membership through
  another role and any grantor, not only the row the bot wrote);
- whether a temporary login is still there and can log in;
- who holds the resource's roles, and which of those holdings the bot can tell it made.

How the bot tells its own memberships from standing ones: ``pg_auth_members.grantor``. PostgreSQL records the role
that ran ``GRANT`` as its grantor, so a membership whose grantor is the bot's account is one the bot granted, and one
granted by a DBA (or through another admin role) is not. A comment cannot mark a membership (only roles), and
marking the person's own login would touch an account the bot does not own. Two limits, both on the safe side:
before PostgreSQL 16 a membership has one row, so a person who already held the role keeps the DBA as grantor and
is never listed as bot-made; and from 16 on a superuser's grants are recorded as the bootstrap superuser's, so a bot
running as a superuser cannot tell its grants from a DBA's and lists none as its own (with a warning).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from bot.adapters.base import Holding

log = logging.getLogger("breakglass.adapters.postgres")

GRANTOR_IS_BOOTSTRAP_VERSION = 160000  # PostgreSQL 16 records a superuser's grants as the bootstrap superuser's


def holds_any(conn: psycopg.Connection, login: str, roles: list[str]) -> bool:
    """Whether ``login`` is a member of any of ``roles`` by any path: directly, through another role, from any grantor.
    A login or role that does not exist holds nothing."""
    row: Any = conn.execute(
        "SELECT coalesce(bool_or(pg_has_role(m.oid, r.oid, 'MEMBER')), false)"
        " FROM pg_roles m CROSS JOIN pg_roles r WHERE m.rolname = %s AND r.rolname = ANY(%s)",
        [login, roles],
    ).fetchone()
    return bool(row[0])


def login_works(conn: psycopg.Connection, login: str, marker: str) -> bool:
    """Whether the temporary login ``login``, carrying ``marker``, exists and PostgreSQL would let it log in now
    (LOGIN, and VALID UNTIL not passed by the server's clock). A same-named role without the marker is not the
    grant's: the revoke never touches it either."""
    row: Any = conn.execute(
        "SELECT rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())"
        " FROM pg_roles WHERE rolname = %s AND shobj_description(oid, 'pg_authid') = %s",
        [login, marker],
    ).fetchone()
    return bool(row and row[0])


def list_holdings(
    conn: psycopg.Connection, roles: list[str], *, temporary: bool, prefix: str, marker_prefix: str, everything: bool
) -> list[Holding]:
    """Every direct member of ``roles`` other than the bot's account and the role's administrators, one holding per
    member with the roles it holds. Bot-made: temporary logins (``login_prefix`` and the marker comment) in temporary
    mode; memberships whose grantor is the bot in existing mode. Without ``everything`` only those are returned.

    The resource's name is not known here, so a temporary login is recognised by the marker's prefix, the
    ``login_prefix`` and membership of this resource's roles; a revoke still checks the full marker."""
    superuser_on_16 = _superuser_on_16(conn)
    if superuser_on_16 and not temporary:
        log.warning(
            "the bot's account is a superuser on PostgreSQL 16 or later, whose grants are recorded as the bootstrap "
            "superuser's: the memberships it granted cannot be told from a DBA's, so none is listed as its own"
        )
    set_option = "a.set_option" if conn.info.server_version >= GRANTOR_IS_BOOTSTRAP_VERSION else "true"
    rows = conn.execute(
        "SELECT m.rolname, r.rolname, a.grantor = u.oid, " + set_option + ", d.description"
        " FROM pg_auth_members a"
        " JOIN pg_roles r ON r.oid = a.roleid"
        " JOIN pg_roles m ON m.oid = a.member"
        " JOIN pg_roles u ON u.rolname = current_user"
        # shobj_description() is a query of its own per row: a join reads the comments once.
        " LEFT JOIN pg_shdescription d ON d.objoid = m.oid AND d.classoid = 'pg_authid'::regclass"
        " WHERE r.rolname = ANY(%s) AND m.oid <> u.oid AND NOT a.admin_option"
        " ORDER BY m.rolname, r.rolname",
        [roles],
    ).fetchall()
    found: dict[str, _Found] = {}
    for member, role, by_bot, settable, comment in rows:
        marked = temporary and member.startswith(prefix) and (comment or "").startswith(marker_prefix)
        made = marked or (not temporary and bool(by_bot) and not superuser_on_16)
        entry = found.setdefault(member, _Found(marked))
        entry.add(role, made=made, settable=bool(settable))
    holdings = []
    for member, entry in found.items():
        if not (everything or entry.made_roles):
            continue
        held = entry.all_roles if everything else entry.made_roles
        principal = member.removeprefix(prefix) if temporary and member.startswith(prefix) else member
        data = {
            "login": member,
            "mode": "temporary" if entry.marked else "existing",
            "roles": held,
            "set_role": entry.settable,
        }
        holdings.append(Holding(principal=principal, data=data, made_by_bot=set(held) <= set(entry.made_roles)))
    return holdings


class _Found:
    """One member's memberships of the resource's roles, as the listing gathers them."""

    def __init__(self, marked: bool) -> None:
        self.marked = marked
        self.all_roles: list[str] = []
        self.made_roles: list[str] = []
        self.settable = False

    def add(self, role: str, *, made: bool, settable: bool) -> None:
        # From PostgreSQL 16 a role can be granted to one member by several grantors: one row each.
        if role not in self.all_roles:
            self.all_roles.append(role)
        if made and role not in self.made_roles:
            self.made_roles.append(role)
        # Where any membership let a session SET ROLE, only ending sessions takes it back.
        self.settable = self.settable or settable


def _superuser_on_16(conn: psycopg.Connection) -> bool:
    if conn.info.server_version < GRANTOR_IS_BOOTSTRAP_VERSION:
        return False
    row: Any = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])
