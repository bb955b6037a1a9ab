"""What the mysql adapter reads to verify a revoke and to list holdings for reconciliation.

Kept apart from ``mysql.py`` (which grants and revokes): these are read-only questions about who holds which
privileges, answered from ``mysql.user`` (global), ``mysql.db`` (database level), ``mysql.tables_priv`` (table level)
and ``mysql.roles_mapping`` (roles, and the marks of temporary logins). The bot reads ``mysql.user`` only through a
column grant on ``User``, ``Host`` and the ``*_priv`` columns of the privileges it hands out, never the column that
holds the password hash; the other tables hold no secret. Privileges that have no ``*_priv`` column (``BINLOG
MONITOR``, ``SLAVE MONITOR``, ``CONNECTION ADMIN``, ``READ_ONLY ADMIN``) cannot be told at the global level: asked
about them, verify and listing raise instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bot.adapters.base import AdapterError

if TYPE_CHECKING:
    from bot.adapters.mysql import _Object, _Session

# A privilege's column in mysql.db, and its word in mysql.tables_priv.Table_priv (None: no table-level form).
_COLUMNS: dict[str, tuple[str, str | None]] = {
    "SELECT": ("Select_priv", "select"),
    "INSERT": ("Insert_priv", "insert"),
    "UPDATE": ("Update_priv", "update"),
    "DELETE": ("Delete_priv", "delete"),
    "CREATE": ("Create_priv", "create"),
    "DROP": ("Drop_priv", "drop"),
    "REFERENCES": ("References_priv", "references"),
    "INDEX": ("Index_priv", "index"),
    "ALTER": ("Alter_priv", "alter"),
    "CREATE TEMPORARY TABLES": ("Create_tmp_table_priv", None),
    "LOCK TABLES": ("Lock_tables_priv", None),
    "CREATE VIEW": ("Create_view_priv", "create view"),
    "SHOW VIEW": ("Show_view_priv", "show view"),
    "CREATE ROUTINE": ("Create_routine_priv", None),
    "ALTER ROUTINE": ("Alter_routine_priv", None),
    "EXECUTE": ("Execute_priv", None),
    "EVENT": ("Event_priv", None),
    "TRIGGER": ("Trigger_priv", "trigger"),
    "DELETE HISTORY": ("Delete_history_priv", "delete versioning rows"),
}
# Global only: their column in mysql.user.
_GLOBAL_COLUMNS: dict[str, str] = {
    "PROCESS": "Process_priv",
    "RELOAD": "Reload_priv",
    "SHUTDOWN": "Shutdown_priv",
    "FILE": "File_priv",
    "SUPER": "Super_priv",
    "SHOW DATABASES": "Show_db_priv",
    "CREATE USER": "Create_user_priv",
    "CREATE TABLESPACE": "Create_tablespace_priv",
    "REPLICATION CLIENT": "Repl_client_priv",
    "REPLICATION SLAVE": "Repl_slave_priv",
}
_ACCOUNT = "CAST(User AS BINARY) = CAST(%s AS BINARY)"  # user names are case-sensitive; the collation is not


def _wanted(privileges: Sequence[str], on: _Object) -> list[str]:
    if "ALL PRIVILEGES" in privileges:
        if on.database is None:
            return [*_COLUMNS, *_GLOBAL_COLUMNS]
        return [name for name, (_, word) in _COLUMNS.items() if on.table is None or word]
    unseen = [name for name in privileges if name not in _COLUMNS and name not in _GLOBAL_COLUMNS]
    if unseen:
        raise AdapterError(
            f"MySQL shows no column for {', '.join(unseen)} in mysql.user, so the bot cannot tell who holds it",
            retryable=False,
        )
    return list(privileges)


def global_columns(privileges: Sequence[str], on: _Object) -> list[str]:
    """The ``mysql.user`` columns verify and listing read for this resource: what ``check`` asks the bot may read."""
    return ["User", "Host", *(_column(name) for name in _wanted(privileges, on))]


def _column(name: str) -> str:
    return _COLUMNS[name][0] if name in _COLUMNS else _GLOBAL_COLUMNS[name]


def roles_of(db: _Session, login: str) -> list[str]:
    """The roles granted to any account of this user name, and the roles granted to those, and so on."""
    found: list[str] = []
    names = [login]
    while names:
        query = "SELECT DISTINCT Role FROM mysql.roles_mapping WHERE " + " OR ".join([_ACCOUNT] * len(names))
        rows = db.run("read the login's roles", query, names)
        names = [role for (role,) in rows if role not in found and role != login]
        found.extend(names)
    return found


def holds_any(db: _Session, login: str, privileges: Sequence[str], on: _Object) -> bool:
    """Whether any account named ``login`` (any host), or any role granted to it, still holds any of ``privileges``
    on ``on``: globally, on its database by any pattern that matches it (``%``, ``bg\\_%``), or at the table."""
    wanted = _wanted(privileges, on)
    names = [login, *roles_of(db, login)]
    accounts = " OR ".join([_ACCOUNT] * len(names))
    global_rows = db.run(
        "read global grants",
        f"SELECT {', '.join(_column(name) for name in wanted)} FROM mysql.user WHERE {accounts}",
        names,
    )
    if any(value == "Y" for row in global_rows for value in row):
        return True
    if on.database is None:
        return False
    columns = [_COLUMNS[name][0] for name in wanted]
    database_rows = db.run(
        "read database grants",
        f"SELECT {', '.join(columns)} FROM mysql.db WHERE ({accounts}) AND %s LIKE Db",
        [*names, on.database],
    )
    if any(value == "Y" for row in database_rows for value in row):
        return True
    if on.table is None:
        return False
    words = {_COLUMNS[name][1] for name in wanted} - {None}
    table_rows = db.run(
        "read table grants",
        f"SELECT Table_priv FROM mysql.tables_priv WHERE ({accounts}) AND Db = %s AND Table_name = %s",
        [*names, on.database, on.table],
    )
    return any(words & _words(row[0]) for row in table_rows)


def holders(db: _Session, privileges: Sequence[str], on: _Object) -> list[tuple[str, str]]:
    """Every account (user, host) holding all of ``privileges`` on exactly ``on``, as the bot grants them: roles
    (host '') and the bot's own login are left out."""
    wanted = _wanted(privileges, on)
    (me,) = db.run("read the bot's own account", "SELECT CURRENT_USER()")[0]
    bot = me.rpartition("@")[0]
    if on.database is None:
        condition = " AND ".join(f"{_column(name)} = 'Y'" for name in wanted)
        rows = db.run("read global grants", f"SELECT User, Host FROM mysql.user WHERE Host <> '' AND {condition}", [])
    elif on.table is None:
        condition = " AND ".join(f"{_COLUMNS[name][0]} = 'Y'" for name in wanted)
        # Only the grant as the bot writes it ('_' escaped): an unescaped name is a pattern that may cover other
        # databases, which a revoke of this resource must not take away.
        rows = db.run(
            "read database grants",
            f"SELECT User, Host FROM mysql.db WHERE Db = %s AND Host <> '' AND {condition}",
            [on.database.replace("_", "\\_") if on.database else ""],
        )
    else:
        table_rows = db.run(
            "read table grants",
            "SELECT User, Host, Table_priv FROM mysql.tables_priv WHERE Db = %s AND Table_name = %s AND Host <> ''",
            [on.database, on.table],
        )
        words = {_COLUMNS[name][1] for name in wanted}
        rows = tuple((user, host) for user, host, given in table_rows if words <= _words(given))
    return sorted({(str(user), str(host)) for user, host in rows if user != bot})


def marks(db: _Session, marker_prefix: str) -> dict[tuple[str, str], str]:
    """The mark (``breakglass:<resource>``) of every temporary login, by (user, lower-cased host)."""
    rows = db.run(
        "read the marks of temporary logins",
        "SELECT User, Host, Role FROM mysql.roles_mapping WHERE Role LIKE %s",
        [marker_prefix.replace("_", "\\_") + "%"],
    )
    return {(str(user), str(host).lower()): str(role) for user, host, role in rows}


def expiry_events(db: _Session, schema: str | None, logins: Iterable[str]) -> dict[str, str]:
    """The expiry event (``schema.name``) the bot made for each of ``logins``, found by the login its body names, so
    a reconciliation's revoke drops it too: left behind, it would end a later grant of the same login early."""
    if schema is None:
        return {}
    rows: Any = db.run(
        "read the expiry events",
        "SELECT EVENT_NAME, EVENT_DEFINITION FROM information_schema.EVENTS"
        " WHERE EVENT_SCHEMA = %s AND EVENT_NAME LIKE 'breakglass\\_%%'",
        [schema],
    )
    found: dict[str, str] = {}
    for login in logins:
        literal = "'" + login.replace("\\", "\\\\").replace("'", "\\'") + "'"
        for name, body in rows:
            if body and literal in body:
                found.setdefault(login, f"{schema}.{name}")
    return found


def _words(value: Any) -> set[str]:
    if isinstance(value, set):
        return {str(word).lower() for word in value}
    return {word.lower() for word in str(value or "").split(",") if word}
