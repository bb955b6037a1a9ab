"""Activity capture for the redis adapter: a MONITOR stream, attributed to ACL users, buffered in this process.

Invariants:

- A command is kept for a user only if Redis itself said (``CLIENT LIST``) that the connection which sent it was
  logged in as that user. MONITOR lines carry the client's address, not its user, and Redis 7 hides both arguments of
  ``AUTH`` and ``HELLO … AUTH``; so the address -> user map comes from ``CLIENT LIST``, taken once right after
  ``MONITOR`` starts (every connection older than the stream) and again each time the stream shows a login or an
  address not yet known. Lines are handled one at a time in stream order, so a lookup always precedes the lines
  after it. A connection that logs in and is gone before the lookup cannot be attributed: its commands are kept for
  nobody, and at its first command every watched user gets a note saying so (never another user's commands).
- One reader thread per adapter, running while at least one user is watched. Watching and unwatching one user never
  stops another's capture. ``watch`` returns only once the stream and the first map are live. A watch ends at
  ``unwatch``, or once its grant expired a grace period ago *and* nobody read it here for as long (so a replica that
  never sees the ``unwatch`` does not monitor for ever, and a bot whose clock is not this host's loses nothing while
  it still reads).
- Each watched user has a bounded buffer; past the bound the oldest commands are dropped and the next read says how
  many. A cursor names one buffer; a cursor from another process (or before a restart) is read by its time and the
  number of commands at that very time already returned, so what both processes recorded is neither skipped nor
  repeated.
- No password reaches the buffer: Redis already hides ``AUTH``/``HELLO`` secrets, and the adapter blanks every
  argument that is a password by position, and the bot's own password wherever it appears.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from bot.adapters.base import Activity, ActivityPage, AdapterError
from bot.adapters.redis_monitor import SCRIPTS, clients, named_login, parse_line, shown

log = logging.getLogger("breakglass.adapters.redis.activity")

PAGE = 500  # activities returned by one ``activity`` call
_POLL = 0.25  # seconds the reader waits for a line before it looks at its stop flag
_MAX_ADDRESSES = 10_000  # addresses remembered before those no longer connected are forgotten
GRACE = timedelta(minutes=10)  # how long past the grant's expiry, and unread, a watch lasts (for the last reads)


@dataclass
class _Buffer:
    """One watched user's commands, each with its number in this buffer (1, 2, …: a gap in a cursor's numbers is
    what the bound dropped). ``token`` names the buffer in cursors, so a cursor from another process or an earlier
    watch of the same user is read by its time instead."""

    items: deque[tuple[int, Activity]]
    token: str
    until: datetime  # the grant's expiry: past it (and GRACE unread) the watch ends by itself
    touched: float  # time.monotonic() of the last watch or read
    last: int = 0


class _Reader(threading.Thread):
    """One MONITOR connection and one side connection for ``CLIENT LIST``; hands attributed lines to ``deliver``."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        deliver: Callable[[_Reader, str | None, Activity], None],
        note_unknown: Callable[[_Reader, datetime, str], None],
        scrub: Callable[[str], str],
        tick: Callable[[_Reader], None],
    ) -> None:
        super().__init__(name="breakglass-redis-monitor", daemon=True)
        self._connect = connect
        self._deliver = deliver
        self._note_unknown = note_unknown
        self._scrub = scrub
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: redis.RedisError | None = None
        self.failed_at: datetime | None = None
        self.streaming = False  # MONITOR answered and the first map was taken: a failure from here on is a gap
        self.last_at: datetime | None = None  # the server's time on the latest line: notes are dated on its clock
        self._tick = tick
        self._users: dict[str, str | None] = {}  # address -> user (None: logged in, gone before it could be asked)
        self._script_caller: str | None = None
        self._unnamed: set[str] = set()  # addresses whose login nobody could name and whose commands are not yet noted

    def run(self) -> None:
        monitor = side = None
        connection = None
        try:
            monitor, side = self._connect(), self._connect()
            connection = monitor.connection_pool.get_connection()
            connection.send_command("MONITOR")
            if connection.read_response() not in ("OK", b"OK"):
                raise redis.ResponseError("MONITOR did not answer OK")
            self._side = side
            self._users = dict(self._lookup())  # after MONITOR: every connection older than the stream is in it
            self.streaming = True
            self.ready.set()
            while not self.stopping.is_set():
                if connection.can_read(timeout=_POLL):
                    line = connection.read_response()
                    self._handle(line.decode() if isinstance(line, bytes) else str(line))
                self._tick(self)
        except redis.RedisError as error:
            self.error, self.failed_at = error, datetime.now(UTC)
            if not self.stopping.is_set():
                log.warning("redis activity capture stopped: %s", self._scrub(str(error)))
        except Exception as error:  # a bug in parsing must end capture where activity() sees it, not silently
            self.error, self.failed_at = redis.RedisError(f"capture failed: {type(error).__name__}"), datetime.now(UTC)
            log.exception("redis activity capture failed")
        finally:
            self.ready.set()
            if connection is not None:
                connection.disconnect()
            for client in (monitor, side):
                if client is not None:
                    client.close()

    def _lookup(self) -> dict[str, str]:
        return clients(self._side.execute_command("CLIENT", "LIST"))

    def _handle(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            return
        at, db, addr, args = parsed
        self.last_at = at
        detail: dict[str, object] = {"addr": addr, "db": db}
        if addr == "lua":  # Redis writes the script's own commands right after the EVAL or FCALL line
            if self._script_caller is None:
                return
            addr, detail = self._script_caller, {"addr": self._script_caller, "db": db, "by_script": True}
        elif args and args[0].upper() in SCRIPTS:
            self._script_caller = addr
        login = named_login(args)
        if addr.startswith("unix:"):
            # Every Unix-socket client has the same address in MONITOR (and another in CLIENT LIST): none can be told
            # apart, so none is attributed.
            self._users[addr] = None
        elif login is not None or addr not in self._users:
            found = self._lookup()
            if len(self._users) > _MAX_ADDRESSES:  # long gone connections; the live ones are all in ``found``
                self._users = {}
            self._users.update(found)
            if addr not in found:
                # Gone before it could be asked. A named login could have been anyone; a connection that never
                # logged in in the stream (and was not there at the start) is the default user.
                self._users[addr] = None if login else "default"
        if login is not None:
            self._unnamed.discard(addr)
            if login and self._users.get(addr) is None:
                self._unnamed.add(addr)
        elif addr in self._unnamed:
            # Said once, at the first command Redis showed: a login followed by nothing shown (the bot's own short
            # connections run only administrative commands) is no news to anyone.
            self._unnamed.discard(addr)
            self._note_unknown(self, at, addr)
        action = self._scrub(shown(args))
        self._deliver(self, self._users.get(addr), Activity(at=at, principal="", action=action, detail=detail))


class RedisCapture:
    """The capture of one adapter: which users are watched, their buffers, and the reader that fills them."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        failure: Callable[[str, redis.RedisError], AdapterError],
        scrub: Callable[[str], str],
        wait: float,
        limit: int,
    ) -> None:
        self._connect = connect
        self._failure = failure
        self._scrub = scrub
        self._wait = wait
        self._limit = limit
        self._lock = threading.Lock()
        self._buffers: dict[str, _Buffer] = {}
        self._reader: _Reader | None = None
        self._next_tick = 0.0

    def watch(self, user: str, until: datetime) -> None:
        with self._lock:
            buffer = self._buffers.get(user)
            created = buffer is None
            if buffer is None:
                self._buffers[user] = _Buffer(deque(), uuid.uuid4().hex, until, time.monotonic())
            else:
                buffer.until = max(buffer.until, until)  # an extended grant is watched longer
                buffer.touched = time.monotonic()
        try:
            self._running()
        except AdapterError:
            if created:
                with self._lock:
                    self._buffers.pop(user, None)
            raise

    def unwatch(self, user: str) -> None:
        with self._lock:
            self._buffers.pop(user, None)
        self._stop_if_idle()

    def close(self) -> None:
        with self._lock:
            self._buffers.clear()
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.stopping.set()
            reader.join(self._wait + 2 * _POLL)

    def read(self, user: str, until: datetime, since: datetime, cursor: str | None) -> ActivityPage:
        with self._lock:
            known = user in self._buffers
        self.watch(user, until)
        if not known:  # another process watched it, or this one restarted: capture from now on, here
            started = "[capture started in this process: earlier commands were recorded elsewhere or not at all]"
            self._note(user, started, {"note": "started"})
        with self._lock:
            buffer = self._buffers.get(user)
            entries = list(buffer.items) if buffer else []
            token, last = (buffer.token, buffer.last) if buffer else ("", 0)
        after, at, ties = self._position(cursor, since, token)
        missing = 0
        if after is not None:
            chosen = [(number, item) for number, item in entries if number > after]
            missing = (entries[0][0] if entries else last + 1) - after - 1
        else:
            chosen = []
            for number, item in entries:
                if item.at == at and ties and "note" not in item.detail:  # returned by the cursor's own process
                    ties -= 1
                elif item.at >= at:
                    chosen.append((number, item))
        page = [item for _, item in chosen[:PAGE]]
        if missing > 0:
            note = f"[{missing} commands were not kept: the capture buffer ({self._limit}) was full]"
            page.insert(0, Activity(page[0].at if page else self._now(), user, note, {"dropped": missing}))
        if chosen:
            after, at = chosen[:PAGE][-1][0], chosen[:PAGE][-1][1].at
            ties = sum(1 for number, item in entries if item.at == at and number <= after and "note" not in item.detail)
        elif after is None:
            after = last  # everything buffered is older than ``since`` or already returned elsewhere
        cursor = json.dumps({"r": token, "s": after, "t": at.isoformat(), "n": ties})
        return ActivityPage(page, cursor, len(chosen) > PAGE)

    def _position(self, cursor: str | None, since: datetime, token: str) -> tuple[int | None, datetime, int]:
        """Where to go on from: a number in this buffer, or (a cursor from elsewhere, or none) a time and how many
        commands at exactly that time were already returned."""
        if cursor:
            try:
                data = json.loads(cursor)
                at = datetime.fromisoformat(data["t"])
                if data.get("r") == token:
                    return int(data["s"]), at, int(data.get("n", 0))
                return None, at, int(data.get("n", 0))
            except (ValueError, KeyError, TypeError):
                log.warning("redis activity: a cursor that is not ours; reading from the grant's start")
        return None, since, 0

    def _running(self) -> None:
        """Start the reader if none runs (or it died: every watched user then gets a note of the gap)."""
        gap = None
        with self._lock:
            reader = self._reader
            if reader is None or not reader.is_alive() or reader.error is not None:
                if reader is not None and reader.streaming and reader.failed_at is not None:
                    gap = (reader.failed_at, reader.error)
                reader = self._reader = _Reader(self._connect, self._deliver, self._unknown, self._scrub, self._tick)
                reader.start()
        # Also when another thread started it: "watching" means the stream is live, not about to be.
        if not reader.ready.wait(self._wait):
            reader.stopping.set()
            raise AdapterError("redis did not start the MONITOR stream in time", retryable=True)
        if reader.error is not None:
            raise self._failure("start the MONITOR stream", reader.error)
        if gap is not None:
            since, error = gap
            text = self._scrub(
                f"[capture was interrupted from {since:%H:%M:%S} UTC until now ({error}): commands in "
                "between were not recorded]"
            )
            for user in self._watched():
                self._note(user, text, {"note": "interrupted"})

    def _tick(self, reader: _Reader) -> None:
        """Ends watches whose grant expired GRACE ago and that were not read for as long, at most once a second, from
        the reader's loop."""
        if reader is not self._reader or time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + 1
        ended, unread = datetime.now(UTC) - GRACE, time.monotonic() - GRACE.total_seconds()
        with self._lock:
            done = [
                user for user, buffer in self._buffers.items() if buffer.until <= ended and buffer.touched <= unread
            ]
            for user in done:
                log.info("redis activity: %s is no longer watched here: its grant ended", user)
                del self._buffers[user]
        self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        with self._lock:
            reader = self._reader if not self._buffers else None
            if reader is not None:
                self._reader = None
        if reader is not None:
            reader.stopping.set()  # it ends within a poll; nobody waits for it

    def _watched(self) -> list[str]:
        with self._lock:
            return list(self._buffers)

    def _now(self) -> datetime:
        """The server's time as the stream last told it (so a note sorts among the commands), else this host's."""
        reader = self._reader
        return reader.last_at if reader is not None and reader.last_at is not None else datetime.now(UTC)

    def _note(self, user: str, text: str, detail: dict[str, object]) -> None:
        self._add(user, Activity(self._now(), user, text, detail))

    def _deliver(self, reader: _Reader, user: str | None, item: Activity) -> None:
        if user is not None and reader is self._reader:  # a reader being stopped must not fill a new watch twice
            self._add(user, Activity(item.at, user, item.action, item.detail))

    def _unknown(self, reader: _Reader, at: datetime, addr: str) -> None:
        if reader is not self._reader:
            return
        text = (
            f"[a connection from {addr} logged in and closed before Redis could say as whom: its commands are "
            "not shown for anyone]"
        )
        for user in self._watched():
            self._add(user, Activity(at, user, text, {"note": "unattributed", "addr": addr}))

    def _add(self, user: str, item: Activity) -> None:
        with self._lock:
            buffer = self._buffers.get(user)
            if buffer is None:
                return
            buffer.last += 1
            buffer.items.append((buffer.last, item))
            if len(buffer.items) > self._limit:
                buffer.items.popleft()
