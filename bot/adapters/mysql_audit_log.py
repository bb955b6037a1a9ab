"""Reading MariaDB's server_audit file through SQL, for the mysql adapter's activity capture (see mysql_activity).

Invariants: the file is read with ``LOAD_FILE`` on the bot's own connection, one file per query, and only the bytes
after the cursor are sent back. A cursor names the last complete line read (the offset just after it, its length and
its hash), never a file, so after a rotation the same line is found again in ``<file>.1`` (or an older copy) and
reading goes on from there through the newer copies: nothing is read twice or skipped, unless the line was rotated
out of every kept copy, which is logged. A line still being written (no newline yet) is left for the next call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.adapters.base import MAX_ACTION, Activity, AdapterError, leading_command

log = logging.getLogger("breakglass.adapters.mysql")

CHUNK = 4 * 1024 * 1024  # bytes of one file fetched per query
CUT = " …[cut]"
_STATEMENT_EVENTS = {"QUERY"}
_SESSION_EVENTS = {"CONNECT", "DISCONNECT", "FAILED_CONNECT", "CHANGEUSER"}
_LINE = re.compile(
    r"(?P<client>[^,]*),(?P<connection>\d+),(?P<query>\d+),(?P<event>[A-Z_]+),(?P<database>[^,]*),"
    r"(?P<object>.*),(?P<error>-?\d+)"
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPED = {"n": "\n", "r": "\r", "t": "\t"}
_UNKNOWN_VARIABLE = 1193


class Session(Protocol):
    def run(
        self, doing: str, sql: str, args: Sequence[Any] = (), *, ignore: Iterable[int] = (), secret: str | None = None
    ) -> tuple[tuple[Any, ...], ...]: ...


def unreadable(path: str) -> str:
    return (
        f"LOAD_FILE cannot read the audit file {path}: it must exist, be readable by everyone on the server's host "
        "(start the server with UMASK=0644), lie inside secure_file_priv and be smaller than max_allowed_packet"
    )


@dataclass(frozen=True)
class AuditFile:
    """Where the plugin writes, and how its local time stamps map to UTC."""

    path: str
    rotations: int
    local_offset: timedelta  # the server's local time minus UTC, now

    @classmethod
    def of(cls, db: Session, where: str) -> AuditFile:
        rows = db.run(
            "read the audit file's place",
            "SELECT @@GLOBAL.server_audit_file_path, @@GLOBAL.server_audit_file_rotations, @@GLOBAL.datadir, "
            "TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', 'SYSTEM'))",
            ignore={_UNKNOWN_VARIABLE},
        )
        if not rows:
            raise AdapterError(
                f"{where}: the server_audit plugin is not loaded, so activity cannot be read", retryable=False
            )
        path, rotations, datadir, offset = rows[0]
        path = str(path or "server_audit.log")
        if path.endswith("/"):
            path += "server_audit.log"
        if not path.startswith("/"):  # the plugin writes relative to the data directory, its working directory
            path = str(datadir).rstrip("/") + "/" + path
        return cls(path, int(rotations), timedelta(seconds=int(offset or 0)))

    def file(self, age: int) -> str:
        """0 is the file being written; 1 the newest rotated copy, and so on."""
        return self.path if age == 0 else f"{self.path}.{age}"


@dataclass(frozen=True)
class Cursor:
    """The last line read: the file offset just after it, its length, and its hash (to find it after a rotation)."""

    end: int
    length: int
    digest: str
    latest: int = 0  # the time (epoch seconds) of the newest activity returned so far

    @classmethod
    def after(cls, line: bytes, end: int) -> Cursor:
        return cls(end, len(line) + 1, _digest(line + b"\n"))

    @classmethod
    def parse(cls, text: str, where: str) -> Cursor:
        try:
            data = json.loads(text)
            cursor = cls(int(data["end"]), int(data["length"]), str(data["digest"]), int(data.get("latest", 0)))
        except (ValueError, KeyError, TypeError):
            raise AdapterError(f"{where}: the stored activity cursor is not valid", retryable=False) from None
        if cursor.length < 1 or cursor.end < cursor.length:
            raise AdapterError(f"{where}: the stored activity cursor is not valid", retryable=False)
        return cursor

    def dump(self) -> str:
        return json.dumps({"end": self.end, "length": self.length, "digest": self.digest, "latest": self.latest})


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class Reader:
    """Complete lines of the audit files after a cursor, oldest first, each with the cursor just after it."""

    def __init__(self, db: Session, where: str, audit: AuditFile) -> None:
        self.db, self.where, self.audit = db, where, audit

    def _load(self, age: int, start: int, check: Cursor | None = None) -> tuple[int | None, bool, bytes]:
        """The file's length, whether ``check``'s line ends at its offset there, and up to CHUNK bytes from
        ``start``: one LOAD_FILE per call, so all three come from the same read of the file."""
        self.db.run("load the audit file", "SET @breakglass_audit = LOAD_FILE(%s)", (self.audit.file(age),))
        try:
            at = check.end - check.length + 1 if check else 1
            size = check.length if check else 0
            length, seen, chunk = self.db.run(
                "read the audit file",
                "SELECT LENGTH(@breakglass_audit), SUBSTRING(@breakglass_audit, %s, %s), "
                "SUBSTRING(@breakglass_audit, %s, %s)",
                (at, size, start + 1, CHUNK),
            )[0]
        finally:
            self.db.run("let go of the audit file", "SET @breakglass_audit = NULL")
        matches = check is not None and seen is not None and _digest(bytes(seen)) == check.digest
        return (None if length is None else int(length)), matches, bytes(chunk or b"")

    def _resume(self, cursor: Cursor | None) -> tuple[int, int, bytes | None]:
        """(age, offset, first chunk if already fetched) to go on from."""
        ages = range(self.audit.rotations + 1)
        if cursor is None:
            oldest = 0
            for age in ages[1:]:
                length, _, _ = self._load(age, 0)
                if length is None:
                    break
                oldest = age
            return oldest, 0, None
        for age in ages:
            length, matches, chunk = self._load(age, cursor.end, cursor)
            if length is None:
                if age == 0:
                    raise AdapterError(f"{self.where}: {unreadable(self.audit.path)}", retryable=True)
                break
            if matches:
                return age, cursor.end, chunk
        oldest = max(0, age - 1 if length is None else age)
        log.warning(
            "activity on %s: the audit line after which reading stopped has been rotated out of every kept copy of "
            "%s; reading on from the oldest copy, and what was in between is lost",
            self.where,
            self.audit.path,
        )
        return oldest, 0, None

    def lines(self, cursor: Cursor | None) -> Iterator[tuple[bytes, Cursor]]:
        age, offset, chunk = self._resume(cursor)
        while True:
            if chunk is None:
                length, _, chunk = self._load(age, offset)
                if length is None:
                    if age == 0:
                        raise AdapterError(f"{self.where}: {unreadable(self.audit.path)}", retryable=True)
                    return  # rotated while we read: the next call finds its place by the cursor
            complete = chunk[: chunk.rfind(b"\n") + 1]
            for line in complete.split(b"\n")[:-1]:
                offset += len(line) + 1
                yield line, Cursor.after(line, offset)
            full = len(chunk) == CHUNK
            chunk = None
            if full and complete:
                continue  # more of this file
            if age == 0:
                return  # the end of what is written (a last line still being written waits for the next call)
            age, offset = age - 1, 0


def parse_line(raw: bytes, login: str, local_offset: timedelta) -> Activity | None:
    line = raw.decode("utf-8", errors="replace")
    stamp, _, rest = line.partition(",")
    _server, _, rest = rest.partition(",")
    if not rest.startswith(login + ","):
        return None
    fields = _LINE.fullmatch(rest[len(login) + 1 :])
    if fields is None:
        return None
    event = fields["event"]
    if event in _STATEMENT_EVENTS:
        action = _unquote(fields["object"])
    elif event in _SESSION_EVENTS:
        action = event
    else:
        return None  # TABLE events (READ, WRITE …) repeat what the statement says
    try:
        at = datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=UTC) - local_offset
    except ValueError:
        return None
    detail: dict[str, Any] = {
        "event": event,
        "database": fields["database"] or None,
        "connection": int(fields["connection"]),
        "client": fields["client"],
        "error": int(fields["error"]),
    }
    if len(action) > MAX_ACTION:  # what the statement does survives the cut, for alert_on to see
        detail["command"] = leading_command(action)
    return Activity(at=at, principal=login, action=cut(action), detail=detail)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        text = text[1:-1]
    replace: Callable[[re.Match[str]], str] = lambda match: _UNESCAPED.get(match[1], match[1])  # noqa: E731
    return _ESCAPE.sub(replace, text)


def cut(action: str) -> str:
    return action if len(action) <= MAX_ACTION else action[: MAX_ACTION - len(CUT)] + CUT
