"""The database URL: which driver it means, and what is wrong with it before anything connects.

Every message here names what is wrong without quoting the URL: it may carry a password.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

# The stores Breakglass knows, and the extra that installs each one's driver (SQLite's comes with Python).
EXTRAS = {"sqlite": None, "postgresql": "postgres", "mysql": "mysql"}
# The driver a bare scheme means: the one its extra installs, not SQLAlchemy's default for the dialect.
_BARE = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
EXPECTED = "expected a URL such as sqlite:///breakglass.db or postgresql://user:password@host/db"


def engine_url(url: str) -> URL:
    """``url`` parsed, with a bare scheme turned into the driver Breakglass installs (``postgres://`` is what
    Heroku-style platforms hand out). Raises ArgumentError or ValueError when it cannot be parsed."""
    parsed = make_url(url)
    driver = _BARE.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot work, in one line without the URL itself; None when it can be tried."""
    try:
        parsed = engine_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return f"cannot parse it; {EXPECTED}"
    if parsed.host and "@" in parsed.host:
        # An '@' left unencoded in the password: the parser ends the password at the first '@' and takes the rest as
        # part of the host, which the driver would then quote in its error (and the redactor knows no such secret).
        return f"cannot parse it: an '@' in the user name or password must be written %40; {EXPECTED}"
    backend = parsed.get_backend_name()
    if backend not in EXTRAS:
        shown = f"'{backend}' " if backend.isascii() and backend.replace("_", "").isalnum() else ""
        return f"unknown database {shown}(the part before ://); {EXPECTED}"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return f"unknown {backend} driver '{parsed.get_driver_name()}'; {EXPECTED}"
    try:
        dialect.import_dbapi()
    except ImportError:
        return _missing_driver(backend, parsed.get_driver_name())
    if backend == "sqlite":
        return _sqlite_problem(parsed)
    return None


def _missing_driver(backend: str, driver: str) -> str:
    extra = EXTRAS[backend]
    if extra is None:
        return f"Python's {driver} module is missing; expected a Python built with SQLite"
    ours = _BARE[backend].partition("+")[2]
    if driver != ours:  # named explicitly: the extra would not help
        return f"the {backend} driver {driver} is not installed; write {backend}:// to use {ours} (breakglass[{extra}])"
    return f"the {backend} driver ({driver}) is not installed; install breakglass[{extra}]"


def _sqlite_problem(parsed: URL) -> str | None:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # in memory, or a URI whose own options decide
    folder = Path(database).parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist; create it, or point the SQLite path at a folder that does"
    return None


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for any other database, or one in memory)."""
    parsed = engine_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if parsed.database.startswith("file:") else Path(parsed.database)
