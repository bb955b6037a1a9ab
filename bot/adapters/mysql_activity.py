"""Activity capture for the mysql adapter, from MariaDB's ``server_audit`` plugin (``capture: server_audit``).

Invariants:

- The plugin logs only the logins named in its global include-list (``server_audit_incl_users``), which several
  grants, resources and bot replicas share. Every change to it is made under one server-wide lock
  (``GET_LOCK``), from a table of watches (``<capture_database>.breakglass_watches``, one row per grant): a login
  leaves the list only when no watch of any grant names it, so unwatching one grant never stops another's capture,
  and a repeated watch or unwatch changes nothing. Names in the list that the bot did not add are kept. An empty
  list means "everyone" to the plugin, so the bot never leaves it empty: it puts a placeholder name there instead.
- The list is re-checked on every read: a server restart resets it to the configured value, and the watched login
  is put back (the statements in between are lost, and the docs say so).
- Reading is ``mysql_audit_log``'s: the audit file through ``LOAD_FILE``, with a cursor that survives rotation and a
  bot restart. Activities come oldest first: a line the plugin stamped a second earlier than the one above it takes
  that line's second.
- Only lines whose user is the grant's login are returned, and the bot's own login can never be a grant's login
  (``principal_problem``), so the bot's statements are never returned.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime

from bot.adapters import mysql_audit_log as audit_log
from bot.adapters.base import Activity, ActivityPage, AdapterError
from bot.adapters.mysql_audit_log import Session

log = logging.getLogger("breakglass.adapters.mysql")

TABLE = "breakglass_watches"
LOCK = "breakglass:capture"  # GET_LOCK names are server-wide: every bot on this server serialises on it
LOCK_WAIT = 10  # seconds
IDLE = "breakglass:no-one"  # stands in for an empty include-list, which the plugin reads as "log everyone"
PAGE = 500  # activities per page
_UNKNOWN_VARIABLE = 1193
_NO_SUCH_TABLE = 1146
_BAD_VALUE = 1231
_LIST_SEPARATORS = re.compile(r"[,\s]+")  # how the plugin splits its include-list


def login_problem(login: str) -> str | None:
    """Why the plugin cannot be told to log ``login``: its include-list is split at commas and spaces."""
    if _LIST_SEPARATORS.search(login):
        return f"the login '{login}' contains a comma or a space, which server_audit's include-list cannot hold"
    if login == IDLE:
        return f"'{IDLE}' is the placeholder Breakglass keeps in server_audit's include-list"
    return None


def watch(db: Session, where: str, database: str, grant_id: str, login: str) -> None:
    problem = login_problem(login)
    if problem:
        raise AdapterError(f"{where}: cannot capture activity: {problem}", retryable=False)
    with _locked(db, where):
        create = (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (grant_id VARCHAR(191) NOT NULL PRIMARY KEY, "
            "login VARCHAR(128) NOT NULL, since TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"  # user names are case-sensitive
        )
        db.run(f"create the table of watches {database}.{TABLE}", create)
        record = f"INSERT IGNORE INTO `{database}`.`{TABLE}` (grant_id, login) VALUES (%s, %s)"
        db.run("record the watch", record, (grant_id, login))
        _change_list(db, where, add=login)


def unwatch(db: Session, where: str, database: str, grant_id: str, login: str) -> None:
    with _locked(db, where):
        others = f"SELECT COUNT(*) FROM `{database}`.`{TABLE}` WHERE login = %s AND grant_id <> %s"
        found = db.run("count the login's other watches", others, (login, grant_id), ignore={_NO_SUCH_TABLE})
        if found and found[0][0]:
            log.info("unwatch %s: %r is still watched for another grant on %s", grant_id, login, where)
        else:
            _change_list(db, where, remove=login)
        # Last: if the list could not be changed, the row stays and a retry finds it.
        forget = f"DELETE FROM `{database}`.`{TABLE}` WHERE grant_id = %s"
        db.run("forget the watch", forget, (grant_id,), ignore={_NO_SUCH_TABLE})


def read(
    db: Session, where: str, database: str, grant_id: str, login: str, since: datetime, cursor: str | None
) -> ActivityPage:
    _still_included(db, where, database, grant_id, login)
    place = audit_log.AuditFile.of(db, where)
    reader = audit_log.Reader(db, where, place)
    start = audit_log.Cursor.parse(cursor, where) if cursor else None
    items: list[Activity] = []
    last = start
    latest = start.latest if start else 0
    floor = since.astimezone(UTC).replace(microsecond=0)
    for line, cursor_after in reader.lines(start):
        activity = audit_log.parse_line(line, login, place.local_offset)
        if activity is not None and activity.at >= floor:
            stamped = int(activity.at.timestamp())
            if stamped < latest:
                # The plugin stamps an event before it queues for the file, so a line can carry the second before
                # the line above it. Oldest first is the promise: such a line takes its predecessor's second.
                at = datetime.fromtimestamp(latest, UTC)
                activity = replace(activity, at=at, detail={**activity.detail, "stamped": activity.at.isoformat()})
            latest = max(latest, stamped)
            items.append(activity)
        last = replace(cursor_after, latest=latest)
        if len(items) == PAGE:
            return ActivityPage(items, last.dump(), more=True)
    return ActivityPage(items, last.dump() if last else None, more=False)


def problems(db: Session, me: str, database: str, held_there: set[str], held_everywhere: set[str]) -> list[str]:
    """What stops capture on this server, in plain words; empty when it can run."""
    found: list[str] = []
    status = db.run(
        "look up the server_audit plugin",
        "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'SERVER_AUDIT'",
    )
    if not status or status[0][0] != "ACTIVE":
        return [
            "capture: the server_audit plugin is not loaded (INSTALL SONAME 'server_audit', or plugin_load_add = "
            "server_audit in the server's configuration)"
        ]
    settings = db.run(
        "read the server_audit settings",
        "SELECT @@GLOBAL.server_audit_logging, @@GLOBAL.server_audit_output_type, @@GLOBAL.server_audit_events, "
        "@@GLOBAL.server_audit_file_rotate_size, @@GLOBAL.max_allowed_packet, @@GLOBAL.server_audit_incl_users",
    )
    logging_on, output, events, rotate_size, packet, included = settings[0]
    if str(logging_on).upper() not in ("ON", "1"):  # a boolean: read back as 1 or 0
        found.append(
            "capture: server_audit_logging is OFF, so nothing is recorded (SET GLOBAL it ON, and in the config)"
        )
    if str(output).lower() != "file":
        found.append(f"capture: server_audit_output_type is {output}; the bot reads the audit file, so set it to file")
    chosen = {event.strip().upper() for event in str(events or "").split(",") if event.strip()}
    if chosen and not chosen & {"QUERY", "QUERY_DDL", "QUERY_DML", "QUERY_DCL", "QUERY_DML_NO_SELECT"}:
        found.append(f"capture: server_audit_events is '{events}': add QUERY, or statements are not recorded")
    if int(rotate_size) > int(packet):
        found.append(
            f"capture: server_audit_file_rotate_size ({rotate_size}) is larger than max_allowed_packet ({packet}), "
            "so LOAD_FILE cannot read a full audit file"
        )
    if not str(included or "").strip():
        found.append(
            "capture: server_audit_incl_users is empty, so the plugin logs every login's statements (the bot's "
            "too); the first watch narrows it to the watched logins"
        )
    if "FILE" not in held_everywhere:
        found.append(f"capture: the bot's login {me} lacks FILE on *.*, which reading the audit file needs")
    if "SUPER" not in held_everywhere:
        found.append(f"capture: the bot's login {me} lacks SUPER, which changing server_audit_incl_users needs")
    lacking = [p for p in ("CREATE", "SELECT", "INSERT", "DELETE") if p not in held_there]
    if lacking:
        found.append(
            f"capture: the bot's login {me} lacks {', '.join(lacking)} on {database}.*, where it keeps watches"
        )
    if not found:
        try:
            place = audit_log.AuditFile.of(db, "the server")
            (length,) = db.run("read the audit file", "SELECT LENGTH(LOAD_FILE(%s))", (place.path,))[0]
        except AdapterError as error:
            return [f"capture: {error}"]
        if length is None:
            found.append(f"capture: {audit_log.unreadable(place.path)}")
    return found


@contextmanager
def _locked(db: Session, where: str) -> Iterator[None]:
    ((got,),) = db.run("take the capture lock", "SELECT GET_LOCK(%s, %s)", (LOCK, LOCK_WAIT))
    if got != 1:
        raise AdapterError(f"{where}: another bot held the capture lock for {LOCK_WAIT} s; try again", retryable=True)
    try:
        yield
    finally:
        # A failure here must not hide the one that got us here; the lock ends with the connection anyway.
        with suppress(AdapterError):
            db.run("release the capture lock", "SELECT RELEASE_LOCK(%s)", (LOCK,))


def _included(db: Session, where: str) -> list[str]:
    rows = db.run(
        "read server_audit_incl_users",
        "SELECT @@GLOBAL.server_audit_incl_users",
        ignore={_UNKNOWN_VARIABLE},
    )
    if not rows:
        raise AdapterError(
            f"{where}: the server_audit plugin is not loaded, so activity cannot be captured", retryable=False
        )
    return [name for name in _LIST_SEPARATORS.split(rows[0][0] or "") if name]


def _change_list(db: Session, where: str, *, add: str | None = None, remove: str | None = None) -> None:
    before = _included(db, where)
    names = [name for name in before if name not in (IDLE, remove)]
    if add is not None and add not in names:
        names.append(add)
    names = names or [IDLE]
    if names == before:
        return
    value = ",".join(names)
    try:
        db.run("set server_audit_incl_users", "SET GLOBAL server_audit_incl_users = %s", (value,))
    except AdapterError as error:
        if f"({_BAD_VALUE}:" in str(error):
            raise AdapterError(
                f"{where}: server_audit_incl_users is full ({len(value)} characters; the plugin keeps 1024): too many "
                "logins are watched at once",
                retryable=False,
            ) from None
        raise


def _still_included(db: Session, where: str, database: str, grant_id: str, login: str) -> None:
    if login in _included(db, where):
        return
    with _locked(db, where):
        mine = f"SELECT COUNT(*) FROM `{database}`.`{TABLE}` WHERE grant_id = %s"
        watched = db.run("look up the watch", mine, (grant_id,), ignore={_NO_SUCH_TABLE})
        if watched and watched[0][0]:  # the server restarted (or someone edited the list): watch again
            log.warning("activity %s: %r had left server_audit_incl_users on %s; added again", grant_id, login, where)
            _change_list(db, where, add=login)
