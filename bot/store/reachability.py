"""Telling "the database is unreachable" from every other failure, and saying so once rather than in a flood.

While PostgreSQL is down every sweep, lease renewal and Slack request fails the same way. A traceback for each
would bury the one line an operator needs, so the first failure of each kind during an outage is logged as one
line, the rest quietly, and the return of the database as one line more. Any other error keeps its traceback.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import exc

log = logging.getLogger("breakglass.database")


# What a person's request or /healthz may spend on the database before saying it is unreachable: under Slack's 3 s,
# and above the 2 s connect timeout (bot/store/db.py), so a refused or timed-out connect is still reported as such.
ANSWER_WITHIN = 2.5  # seconds


class NoAnswer(TimeoutError):
    """The database took the connection but did not answer in time: a hung server, or a route that went silent
    under an open connection (no connect timeout covers that, and libpq has no read timeout)."""


def unreachable(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) means the database could not be reached or the connection died.

    OperationalError is what drivers raise for a refused or lost connection and a connect timeout; a pool that
    waited in vain for a connection raises TimeoutError. Constraint violations and programming errors are ours.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoAnswer | exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
            return True
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


class OutageLog:
    """Remembers which kinds of work already said the database is unreachable, until it is reachable again."""

    def __init__(self) -> None:
        self._told: set[str] = set()
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        with self._lock:
            return bool(self._told)

    def failed(self, logger: logging.Logger, doing: str, error: BaseException, kind: str | None = None) -> None:
        """Log a failure of ``doing``: a traceback, unless the database is unreachable; then one line for the first
        failure of its ``kind`` (``doing`` unless given) in this outage, and the rest at DEBUG."""
        if not unreachable(error):
            logger.error("%s failed", doing, exc_info=error)
            return
        kind = kind or doing
        with self._lock:
            first = kind not in self._told
            self._told.add(kind)
        # The driver's message names host and port, never the password; the type is enough to tell refused from
        # timed out at a glance, and the message says which server.
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "%s failed: the database is unreachable (%s); will try again", doing, _short(error))

    def reachable(self) -> None:
        """The database answered: the next outage is reported afresh."""
        with self._lock:
            was_down, self._told = bool(self._told), set()
        if was_down:
            log.warning("the database is reachable again")


def _short(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {first_line[:200]}" if first_line else type(original).__name__


# One per process: what it remembers is only which outage lines were already written.
database_outage = OutageLog()
