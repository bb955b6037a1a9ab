"""How the `breakglass` command logs: plain text lines as ever, or one JSON object per line for a log collector
(``BREAKGLASS_LOG_FORMAT=json``), carrying the request id, resource and actor of the work in hand where known.

The context is set where the work on one request begins (a Slack command or click, a sweep's step on one row) with
`log_context`, and read by the formatter from context variables, so no call to ``log.info`` has to pass it along.
A thread does not inherit the context of the thread that started it: work handed to another thread sets its own.

Secrets: `bot.redaction` puts its filter on the handler, and a handler's filters run before its formatter, so both
formats format the message and exception text after they were scrubbed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("request_id", "resource", "actor")

_context: ContextVar[dict[str, Any] | None] = ContextVar("breakglass_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within the block, every record logged from this thread (or task) carries ``fields`` (None ones left out),
    on top of the context already set."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"log_context takes {', '.join(FIELDS)}, not {', '.join(sorted(unknown))}")
    token = _context.set(
        {**(_context.get() or {}), **{key: value for key, value in fields.items() if value is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts, level, logger, message, then request_id, resource and actor
    where known, and exc (the traceback) when there is one. A field passed in ``extra=`` wins over the context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get() or {}
        for name in FIELDS:
            value = getattr(record, name, None)
            value = context.get(name) if value is None else value
            if value is not None:
                entry[name] = value if isinstance(value, int | float | bool) else str(value)
        # The redacting filter leaves a scrubbed exc_text (and drops exc_info when it had to change it): use that
        # text rather than formatting the exception afresh.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # ASCII, as the audit export writes it: json.dumps escapes only C0 controls, and a raw U+2028, U+2029 or NEL
        # (in a reason, a display name) ends the line for Python's splitlines and many collectors.
        return json.dumps(entry, ensure_ascii=True, default=str)


class _Ours(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """The handler `configure` installs, so configuring again replaces it and leaves others (pytest's) alone."""


def configure(settings: Settings, stream: Any = None) -> logging.Handler:
    """Log to stderr (or ``stream``) in the configured format and level; returns the handler, for `redaction.install`
    to put its filter on (it covers every handler of the root logger, this one included)."""
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if isinstance(handler, _Ours)]:
        root.removeHandler(old)
    handler = _Ours(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    quiet = max(logging.WARNING, root.level)
    logging.getLogger("apscheduler").setLevel(quiet)  # a line per sweep otherwise
    logging.getLogger("alembic.runtime.plugins").setLevel(quiet)  # seven lines of set-up on importing alembic
    # A warning a library emits goes through logging, so it is scrubbed and, in JSON, is a JSON line too.
    logging.captureWarnings(True)
    return handler
