"""`breakglass audit`: check the hash chain, export the trail for auditors and SIEMs, make a key.

Exit codes: 0 fine, 1 the chain is broken (verify), 2 the command could not run (settings, arguments, database).
"""

from __future__ import annotations

import csv
import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from bot.cli.app import cli, fail
from bot.cli.app import plain_settings as _settings
from bot.settings import SettingsError

audit_cli = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")
cli.add_typer(audit_cli, name="audit")

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula


@audit_cli.command()
def verify(
    expect: str | None = typer.Option(
        None,
        "--expect",
        metavar="SEQ:HASH",
        help="A head printed by an earlier verify (kept outside the database): the chain must still contain it.",
    ),
) -> None:
    """Check every event, its place and its link, and the head; print the head to keep as the next checkpoint."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store.chain import AuditSeal
    from bot.store.db import make_engine
    from bot.store.verify import has_chain, parse_checkpoint
    from bot.store.verify import verify as check

    settings = _settings()
    try:
        checkpoint = parse_checkpoint(expect) if expect is not None else None
    except ValueError as error:
        fail(f"--expect: {error}")
    try:
        key, previous = settings.audit_keys()
    except SettingsError as error:
        fail(str(error))
    engine = make_engine(settings.database_url)
    try:
        if not has_chain(engine):
            fail("the database has no audit chain yet; run `breakglass db upgrade`")
        verdict = check(engine, AuditSeal(key, previous), checkpoint)
    except SQLAlchemyError as error:
        fail(f"DATABASE_URL: cannot read the audit trail ({type(error).__name__})")
    finally:
        engine.dispose()
    typer.echo(verdict.line())
    raise typer.Exit(0 if verdict.ok else 1)


@audit_cli.command()
def export(
    format: str = typer.Option("jsonl", "--format", metavar="jsonl|csv", help="One JSON object a line, or CSV."),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help="2026-11-01, 2026-11-01T09:00Z or 7d."),
    until: str | None = typer.Option(None, "--until", metavar="WHEN", help="Events before this; same forms."),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="A file to write instead of stdout.")] = None,
) -> None:
    """Every event in chain order with its seq, prev_hash, hash and key_id, so an export can be checked too."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.clock import SystemClock
    from bot.store.audit import stream
    from bot.store.db import make_engine

    if format not in ("jsonl", "csv"):
        fail(f"--format: expected jsonl or csv, not '{format}'")
    now = SystemClock().now()
    try:
        start = parse_when(since, now) if since is not None else None
        end = parse_when(until, now) if until is not None else None
    except ValueError as error:
        fail(str(error))
    if start and end and start >= end:
        fail("--since must be before --until")
    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        with _opened(output) as out:
            rows = with_activity(engine, (exported(row._mapping) for row in stream(engine, start, end)))
            (write_csv if format == "csv" else write_jsonl)(rows, out)
    except SQLAlchemyError as error:
        fail(f"DATABASE_URL: cannot read the audit trail ({type(error).__name__})")
    finally:
        engine.dispose()


@audit_cli.command()
def keygen() -> None:
    """Print a new random key for BREAKGLASS_AUDIT_KEY; to rotate, keep the old one in the previous keys."""
    typer.echo(secrets.token_urlsafe(48))


def parse_when(text: str, now: datetime) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or a duration back from now: 7d, 12h, 1h30m."""
    from bot.clock import as_utc
    from bot.domain.durations import DurationError, parse_duration

    cleaned = text.strip()
    try:
        return now - parse_duration(cleaned)
    except DurationError:
        pass
    try:
        return as_utc(datetime.fromisoformat(cleaned))
    except ValueError:
        raise ValueError(
            f"'{text}' is neither a date or time like 2026-11-01 or 2026-11-01T09:00Z nor a duration like 7d or 12h"
        ) from None


def exported(row: Any) -> dict[str, Any]:
    from bot.store.audit import CHAIN, COLUMNS
    from bot.store.chain import instant

    values = {name: row[name] for name in (*COLUMNS, *CHAIN)}
    values["at"] = instant(values["at"])
    return values


ACTIVITY = "activity"  # the export's one field beyond the event: the actions an `activity_captured` event kept


def with_activity(engine: Any, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each event with the actions it vouches for: an ``activity_captured`` event gets the rows it kept (its
    ``first_id``..``last_id``, as ``bot.store.activity.row_data`` shows them), so a reader can recompute its
    ``sha256``; every other event gets null. Not part of the event's hash: the event's ``sha256`` covers them."""
    from sqlalchemy.orm import Session

    from bot.store.activity import batch, row_data

    for values in rows:
        detail = values.get("detail") or {}
        kept = None
        if values["action"] == "activity_captured" and detail.get("first_id") is not None:
            with Session(engine) as session:
                found = batch(session, values["request_id"], int(detail["first_id"]), int(detail["last_id"]))
                kept = [row_data(row) for row in found]
        values[ACTIVITY] = kept
        yield values


def write_jsonl(rows: Iterator[dict[str, Any]], out: IO[str]) -> None:
    for values in rows:  # ASCII only: no line separator inside a line, whatever the text holds
        out.write(json.dumps(values, ensure_ascii=True, separators=(",", ":")) + "\n")


def write_csv(rows: Iterator[dict[str, Any]], out: IO[str]) -> None:
    from bot.store.audit import CHAIN, COLUMNS

    writer = csv.writer(out)
    writer.writerow((*COLUMNS, *CHAIN, ACTIVITY))
    for values in rows:
        values["detail"] = json.dumps(values["detail"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        kept = values.get(ACTIVITY)
        values[ACTIVITY] = None if kept is None else json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
        writer.writerow(cell(value) for value in values.values())


def cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: reasons and names come from users, and '=HYPERLINK(...)' is text."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@contextmanager
def _opened(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    try:
        handle = output.open("w", encoding="utf-8", newline="")
    except OSError as error:
        fail(f"--output: cannot write {output} ({error.strerror})")
    with handle:
        yield handle
