"""`breakglass check`'s look at the database: the URL can work, the database answers within a few seconds, and its
schema is one this version can run on. Each problem is one line naming DATABASE_URL; none quotes the URL."""

from __future__ import annotations

import logging
import threading

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from bot.store import schema
from bot.store.db import make_engine
from bot.store.urls import sqlite_file, url_problem

ANSWER_WITHIN = 5.0  # seconds: PostgreSQL's own connect timeout is 2 s; this also covers a server that never answers


def database_problems(url: str, auto_migrate: bool, within: float = ANSWER_WITHIN) -> list[str]:
    problem = url_problem(url)
    if problem:
        return [f"DATABASE_URL: {problem}"]
    file = sqlite_file(url)
    if file is not None and not file.exists():  # connecting would create it: check changes nothing
        if auto_migrate:
            return []  # serve creates it at start
        return [f"DATABASE_URL: there is no database at {file} yet; create it with `breakglass db upgrade`"]
    revision, failure = _revision(url, within)
    if failure:
        return [f"DATABASE_URL: cannot connect to the database ({failure})"]
    return _schema_problems(revision, auto_migrate)


def _schema_problems(revision: str | None, auto_migrate: bool) -> list[str]:
    head = schema.head()
    if revision == head:
        return []
    if revision is not None and not _known(revision):
        return [
            f"DATABASE_URL: the database is at revision {revision}, which this version of Breakglass does not know "
            f"(its newest is {head}); run the version that migrated it, or a newer one"
        ]
    if auto_migrate:
        return []  # serve applies the missing migrations at start
    return [
        f"DATABASE_URL: the database is at revision {revision or 'none (no schema yet)'}, expected {head}; run "
        "`breakglass db upgrade` (BREAKGLASS_AUTO_MIGRATE is off)"
    ]


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(schema.alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _revision(url: str, within: float) -> tuple[str | None, str | None]:
    """(the schema's revision, None), or (None, why the database did not answer) after at most ``within`` seconds."""
    found: dict[str, str | None] = {}

    def ask() -> None:
        # Reading the revision announces "Context impl …" at INFO: noise in check's answer, so check has it quiet.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
        engine = make_engine(url)
        try:
            found["revision"] = schema.current(engine)
        except Exception as error:
            found["failure"] = _short(error)
        finally:
            engine.dispose()

    # A thread, so a server that takes the connection and then says nothing cannot hold `check` up: it is a daemon,
    # and the process exits without waiting for it.
    asking = threading.Thread(target=ask, name="check-database", daemon=True)
    asking.start()
    asking.join(within)
    if asking.is_alive():
        return None, f"no answer within {within:g} s"
    return found.get("revision"), found.get("failure")


def _short(error: BaseException) -> str:
    # The driver's first line says why (refused, unknown host, a login refused) and names host and port; the
    # password, when a driver quotes the URL, is scrubbed by check's redactor before anything is printed.
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0][:200]}" if lines else type(original).__name__
