"""Activity capture for the postgres adapter: pgaudit session logging, turned on per login, read back from jsonlog.

Invariants kept here:

- Every session of a watched login is recorded. pgaudit.log is a role setting (``ALTER ROLE … SET``), which a session
  picks up only when it starts, so a ``watch`` that changes it then ends the login's open sessions.
- Watches of one login are counted. The role setting ``breakglass.watch`` holds, as JSON, the grants watching, the
  pgaudit.log value found before the first watch and whether the sessions from before the setting were ended; only
  the last ``unwatch`` puts that value back (or resets it). A repeated watch changes nothing and ends no session.
  Every change happens under a session advisory lock on the login, so two watches or unwatches cannot interleave.
- Reading never skips: the cursor is a log file and the byte offset after the last whole line read. A file is left
  for the next one only once a newer file exists (the logging collector writes to one file at a time), and only
  after it was read to its end. The cursor survives a restart of the bot; a log file removed before it was read is
  lost, and the log says so.
- Only audit lines whose session user is the login are returned: never the bot's own statements, never another
  login's. Statements are cut to MAX_ACTION characters and the bot's password is blanked.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import sql
from pydantic import SecretStr

from bot.adapters.base import MAX_ACTION, Activity, ActivityPage, AdapterError, redact

log = logging.getLogger("breakglass.adapters.postgres")

WATCH_SETTING = "breakglass.watch"
PAGE = 500  # activities per page
CHUNK = 1 << 20  # bytes read from the log at once
MAX_LINE = 16 << 20  # a longer log line (a huge statement) is reported, not parsed
BUDGET = 32 << 20  # bytes read per call at most; the rest waits for the next call (more=True)
CUT_MARK = " …[cut]"
_HEAD = re.compile(r'"timestamp":"([^"]+)".*?"user":"((?:[^"\\]|\\.)*)"')
AuditClass = Literal["read", "write", "function", "role", "ddl", "misc", "misc_set", "all"]  # pgaudit.log classes
_READ_FUNCTIONS = (
    "pg_current_logfile(text)",
    "pg_ls_logdir()",
    "pg_read_binary_file(text,bigint,bigint,boolean)",
)


def watch(conn: psycopg.Connection, login: str, grant_id: str, classes: Sequence[str], where: str) -> int:
    """Turn pgaudit on for ``login`` (idempotent) and end its sessions that started without it; the number ended."""
    _lock(conn, login)
    oid, settings = _role(conn, login, where)
    audit = settings.get("pgaudit.log")
    state = _state(settings) or {"before": audit, "grants": [], "ended": False}
    wanted = _merge(audit, classes)
    name = sql.Identifier(login)
    if wanted != audit:
        conn.execute(sql.SQL("ALTER ROLE {} SET pgaudit.log = {}").format(name, sql.Literal(wanted)))
        state["ended"] = False  # sessions from before this change record less than they should
    if grant_id not in state["grants"]:
        state["grants"].append(grant_id)
    if state != _state(settings):
        _save(conn, name, state)
    if state["ended"]:
        return 0
    # After the setting committed (autocommit), so a session ending here can only come back recorded. Without
    # pg_read_all_stats other logins' backend_start is hidden, so every session goes, not just the older ones; the
    # flag keeps a repeated watch from ending the sessions recorded since.
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        " WHERE usesysid = %s AND pid <> pg_backend_pid()",
        [oid],
    ).fetchone()
    state["ended"] = True
    _save(conn, name, state)
    return int(row[0]) if row else 0


def _save(conn: psycopg.Connection, name: sql.Identifier, state: dict[str, Any]) -> None:
    setting = sql.Identifier(*WATCH_SETTING.split("."))
    conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(name, setting, sql.Literal(json.dumps(state))))


def unwatch(conn: psycopg.Connection, login: str, grant_id: str) -> bool:
    """Forget ``grant_id``'s watch; the last one puts pgaudit.log back as it was. True if capture stopped."""
    _lock(conn, login)
    found = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", [login]).fetchone()
    if found is None:  # dropped by the revoke, and its settings with it
        return True
    settings = _settings(conn, int(found[0]))
    state = _state(settings)
    if state is None:
        return True
    name, setting = sql.Identifier(login), sql.Identifier(*WATCH_SETTING.split("."))
    state["grants"] = [grant for grant in state["grants"] if grant != grant_id]
    if state["grants"]:
        _save(conn, name, state)
        return False
    before = state.get("before")
    if before:
        conn.execute(sql.SQL("ALTER ROLE {} SET pgaudit.log = {}").format(name, sql.Literal(before)))
    else:
        conn.execute(sql.SQL("ALTER ROLE {} RESET pgaudit.log").format(name))
    conn.execute(sql.SQL("ALTER ROLE {} RESET {}").format(name, setting))
    return True


def read(
    conn: psycopg.Connection,
    login: str,
    since: datetime,
    cursor: str | None,
    secret: SecretStr | None,
    where: str,
) -> ActivityPage:
    """``login``'s audit lines after ``cursor`` (or from ``since``), oldest first, at most PAGE of them."""
    current = _one(conn, "SELECT pg_current_logfile('jsonlog')")
    if not current:
        raise AdapterError(
            f"{where} writes no jsonlog file: capture needs logging_collector = on and 'jsonlog' in log_destination",
            retryable=False,
        )
    directory = current.rpartition("/")[0]
    listed = conn.execute(
        "SELECT name, modification FROM pg_ls_logdir() WHERE name LIKE '%%.json' ORDER BY name"
    ).fetchall()
    names = [name for name, _ in listed]
    floor = since.astimezone(UTC).replace(microsecond=since.microsecond // 1000 * 1000)
    if cursor:
        file, offset = _cursor(cursor)
    else:
        recent = [name for name, modified in listed if modified >= floor - timedelta(seconds=1)]
        file, offset = (f"{directory}/{recent[0]}" if recent else current), 0
    zone = _zone(_one(conn, "SELECT current_setting('log_timezone')"))
    items: list[Activity] = []
    budget = BUDGET
    while True:
        later = [name for name in names if f"{directory}/{name}" > file]
        finished = bool(later)  # the collector has moved on to a newer file, so this one gets nothing more
        before = offset
        offset, status = _read_file(conn, file, offset, finished, login, floor, zone, secret, items)
        budget -= max(offset - before, CHUNK)
        if status == "full":
            return _page(items, file, offset, more=True)
        if status == "end":
            if not finished:
                return _page(items, file, offset, more=False)
            file, offset = f"{directory}/{later[0]}", 0
        if budget <= 0:
            return _page(items, file, offset, more=True)


def problems(conn: psycopg.Connection, user: str, login_mode: str) -> list[str]:
    """What the server or the bot's account lacks for capture, in words a DBA can act on."""
    found: list[str] = []
    quoted = sql.Identifier(user).as_string(conn)
    superuser, createrole = conn.execute(
        "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    ).fetchone() or (False, False)
    # pg_settings, not current_setting: shared_preload_libraries is hidden from ordinary roles, and a loaded
    # pgaudit shows its own pgaudit.log (superuser context) where a mere placeholder would be user context.
    settings: dict[str, str] = dict(
        conn.execute(
            "SELECT name, setting || '/' || context FROM pg_settings WHERE name = ANY(%s)",
            [["pgaudit.log", "logging_collector", "log_destination"]],
        ).fetchall()
    )
    if not settings.get("pgaudit.log", "").endswith("/superuser"):
        return [
            "params.capture: pgaudit is not loaded on the server: add it to shared_preload_libraries in "
            "postgresql.conf and restart PostgreSQL"
        ]
    collector = settings.get("logging_collector", "").partition("/")[0]
    destinations = settings.get("log_destination", "").partition("/")[0]
    if collector != "on" or "jsonlog" not in [part.strip() for part in destinations.split(",")]:
        found.append(
            "params.capture: the server writes no JSON log: set logging_collector = on and add 'jsonlog' to "
            "log_destination (a restart is needed for logging_collector)"
        )
    for function in _READ_FUNCTIONS:
        if not superuser and not _one(conn, "SELECT has_function_privilege(%s, 'EXECUTE')", [function]):
            found.append(
                f"params.capture: the bot's account {user!r} cannot read the server log: "
                f"GRANT EXECUTE ON FUNCTION {function} TO {quoted}"
            )
    for parameter in ("pgaudit.log", WATCH_SETTING):
        if not superuser and not _one(conn, "SELECT has_parameter_privilege(%s, 'SET')", [parameter]):
            found.append(
                f"params.capture: the bot's account {user!r} cannot set {parameter} on logins: "
                f"GRANT SET ON PARAMETER {parameter} TO {quoted}"
            )
    if login_mode == "existing" and not (superuser or createrole):
        found.append(
            f"params.capture: the bot's account {user!r} cannot change other logins' settings: "
            f"ALTER ROLE {quoted} CREATEROLE"
        )
    if not superuser and not _one(conn, "SELECT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')"):
        found.append(
            f"params.capture: the bot's account {user!r} cannot end sessions opened before the capture: "
            f"GRANT pg_signal_backend TO {quoted}"
        )
    try:
        _zone(_one(conn, "SELECT current_setting('log_timezone')"))
    except AdapterError as error:
        found.append(f"params.capture: {error}")
    return found


def parse_line(line: str, login: str, zone: ZoneInfo, secret: SecretStr | None) -> Activity | None:
    """The activity in one jsonlog line, or None when it is not an audit line of ``login``'s."""
    try:
        record: dict[str, Any] = json.loads(line)
    except ValueError:
        return None
    message = record.get("message")
    if record.get("user") != login or not isinstance(message, str) or not message.startswith("AUDIT: "):
        return None
    fields = csv_fields(message.removeprefix("AUDIT: "))
    if len(fields) < 8:
        return None
    kind, statement_id, substatement_id, klass, command, object_type, object_name, statement = fields[:8]
    detail = {
        "audit": kind,
        "class": klass,
        "command": command,
        "object_type": object_type or None,
        "object": object_name or None,
        "database": record.get("dbname"),
        "session": record.get("session_id"),
        "statement_id": statement_id,
        "substatement_id": substatement_id,
    }
    return Activity(
        at=log_time(str(record.get("timestamp")), zone), principal=login, action=_cut(statement, secret), detail=detail
    )


def csv_fields(text: str) -> list[str]:
    """pgaudit's CSV, quoted fields and all: the csv module refuses fields over 128 KiB, and statements are longer."""
    fields: list[str] = []
    at = 0
    while at <= len(text):
        if text.startswith('"', at):
            pieces, at = [], at + 1
            while True:
                close = text.find('"', at)
                if close == -1:  # unterminated: take the rest
                    pieces.append(text[at:])
                    at = len(text)
                    break
                pieces.append(text[at:close])
                if text.startswith('"', close + 1):  # a doubled quote is one quote
                    pieces.append('"')
                    at = close + 2
                    continue
                at = close + 1
                break
            fields.append("".join(pieces))
            at = text.find(",", at)
            at = len(text) + 1 if at == -1 else at + 1
        else:
            comma = text.find(",", at)
            end = len(text) if comma == -1 else comma
            fields.append(text[at:end])
            at = end + 1
    return fields


def _read_file(
    conn: psycopg.Connection,
    file: str,
    offset: int,
    finished: bool,
    login: str,
    floor: datetime,
    zone: ZoneInfo,
    secret: SecretStr | None,
    items: list[Activity],
) -> tuple[int, str]:
    """Read a chunk of ``file`` from ``offset``, adding ``login``'s activities to ``items``: the offset after the last
    whole line used, and "full" (the page is full), "more" (the file goes on) or "end" (read to its end)."""
    chunk = _chunk(conn, file, offset, CHUNK)
    if chunk is None:
        log.warning("log file %s went before it was read to its end; what it held after byte %d is lost", file, offset)
        return offset, "end"
    end = chunk.rfind(b"\n")
    if end == -1 and len(chunk) == CHUNK:  # one line longer than a chunk: read it whole
        chunk = _chunk(conn, file, offset, MAX_LINE) or b""
        end = chunk.rfind(b"\n")
        if end == -1 and len(chunk) == MAX_LINE:
            _oversized(chunk, login, zone, items)
            log.warning("a line of log file %s at byte %d is over %d bytes and was not parsed", file, offset, MAX_LINE)
            return _skip_line(conn, file, offset + len(chunk)), "full" if len(items) >= PAGE else "more"
    position = 0
    for line in chunk[: end + 1].split(b"\n")[:-1]:
        position += len(line) + 1
        item = parse_line(line.decode("utf-8", "replace"), login, zone, secret)
        if item is None or item.at < floor:
            continue
        items.append(item)
        if len(items) >= PAGE:
            return offset + position, "full"
    if len(chunk) == CHUNK or len(chunk) == MAX_LINE:
        return offset + end + 1, "more"
    # A line without its newline is still being written, unless the collector has moved on to a newer file: then
    # nothing will finish it.
    return offset + (len(chunk) if finished else end + 1), "end"


def _chunk(conn: psycopg.Connection, file: str, offset: int, length: int) -> bytes | None:
    data = _one(conn, "SELECT pg_read_binary_file(%s, %s, %s, true)", [file, offset, length])
    return None if data is None else bytes(data)


def _skip_line(conn: psycopg.Connection, file: str, offset: int) -> int:
    """The offset after the newline that ends the line going on at ``offset``."""
    while True:
        chunk = _chunk(conn, file, offset, CHUNK) or b""
        end = chunk.find(b"\n")
        if end != -1:
            return offset + end + 1
        if len(chunk) < CHUNK:
            return offset + len(chunk)
        offset += len(chunk)


def _oversized(head: bytes, login: str, zone: ZoneInfo, items: list[Activity]) -> None:
    found = _HEAD.search(head[:4096].decode("utf-8", "replace"))
    if found and json.loads(f'"{found.group(2)}"') == login and b'"message":"AUDIT: ' in head[:8192]:
        action = f"[a statement too long to read: its log line is over {MAX_LINE // (1 << 20)} MiB]"
        items.append(Activity(at=log_time(found.group(1), zone), principal=login, action=action, detail={}))


def _page(items: list[Activity], file: str, offset: int, *, more: bool) -> ActivityPage:
    # Sessions write their lines in turn, so two of them can be a millisecond out of order.
    items.sort(key=lambda item: item.at)
    return ActivityPage(items=items, cursor=json.dumps({"file": file, "offset": offset}), more=more)


def _cursor(cursor: str) -> tuple[str, int]:
    try:
        value = json.loads(cursor)
        file, offset = value["file"], value["offset"]
    except (ValueError, KeyError, TypeError):
        raise AdapterError(f"not a postgres activity cursor: {cursor[:80]!r}", retryable=False) from None
    if not isinstance(file, str) or not isinstance(offset, int) or offset < 0 or ".." in file:
        raise AdapterError(f"not a postgres activity cursor: {cursor[:80]!r}", retryable=False)
    return file, offset


def log_time(stamp: str, zone: ZoneInfo) -> datetime:
    """A jsonlog timestamp ("2026-12-03 13:59:30.752 UTC", in log_timezone) as UTC."""
    clock, _, abbreviation = stamp.rpartition(" ")
    try:
        local = datetime.strptime(clock, "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        raise AdapterError(f"unreadable time in the server log: {stamp[:40]!r}", retryable=False) from None
    if abbreviation in ("UTC", "GMT"):
        return local.replace(tzinfo=UTC)
    # In the hour a clock goes back, the abbreviation tells the two readings apart.
    early = local.replace(tzinfo=zone, fold=0)
    chosen = early if early.tzname() == abbreviation else local.replace(tzinfo=zone, fold=1)
    return chosen.astimezone(UTC)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise AdapterError(
            f"log_timezone {name!r} is not a time zone the bot knows; set log_timezone = 'UTC'", retryable=False
        ) from None


def _cut(statement: str, secret: SecretStr | None) -> str:
    text = redact(statement, secret)
    return text if len(text) <= MAX_ACTION else text[: MAX_ACTION - len(CUT_MARK)] + CUT_MARK


def _merge(audit: str | None, classes: Sequence[str]) -> str:
    present = [part.strip() for part in (audit or "").split(",") if part.strip()]
    return ",".join(present + [name for name in classes if name not in present])


def _lock(conn: psycopg.Connection, login: str) -> None:
    # Session-level: held until the bot's connection closes, across the autocommitted statements below.
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{WATCH_SETTING}:{login}"])


def _role(conn: psycopg.Connection, login: str, where: str) -> tuple[int, dict[str, str]]:
    row = conn.execute("SELECT oid, rolsuper FROM pg_roles WHERE rolname = %s", [login]).fetchone()
    if row is None:
        raise AdapterError(f"{where} has no login {login!r} to watch", retryable=False)
    if row[1]:
        raise AdapterError(
            f"{where}: {login!r} is a superuser, whose pgaudit settings the bot cannot own", retryable=False
        )
    return int(row[0]), _settings(conn, int(row[0]))


def _settings(conn: psycopg.Connection, oid: int) -> dict[str, str]:
    row = conn.execute(
        "SELECT setconfig FROM pg_db_role_setting WHERE setrole = %s AND setdatabase = 0", [oid]
    ).fetchone()
    pairs = (item.partition("=") for item in (row[0] if row and row[0] else []))
    return {name: value for name, _, value in pairs}


def _state(settings: dict[str, str]) -> dict[str, Any] | None:
    raw = settings.get(WATCH_SETTING)
    if not raw:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("grants"), list):
        return None
    return state


def _one(conn: psycopg.Connection, query: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None
