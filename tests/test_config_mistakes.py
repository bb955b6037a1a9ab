"""The mistakes a new user makes, tried as they would: `python -m bot` in a subprocess, from an empty directory, with a
cleaned environment. Each is one line naming the setting and what it expects (exit 2 for `serve` and `db upgrade`),
and `check` lists every problem in one run. No case may quote the database password.

As in test_cli.py, every case is started at once when the first test asks, and each test reads its finished run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.settings import VARIABLES
from bot.store import schema

PASSWORD = "pw-9d41c7e2b8a3"
POLICY = """\
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: log
    approvers: [S0SRELEADS]
"""
GOOD = {
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "SLACK_SIGNING_SECRET": "test-signing-secret",
    "BREAKGLASS_AUDIT_KEY": "mistakes-test-audit-key-0123456789abcdef",
}
PG_URL = f"postgresql://breakglass:{PASSWORD}@127.0.0.1:9/bg"  # nobody listens on port 9
# `python -m bot` in an environment without psycopg: what an install without breakglass[postgres] looks like.
WITHOUT_PSYCOPG = "import runpy, sys; sys.modules['psycopg'] = None; runpy.run_module('bot', run_name='__main__')"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: dict[str, str]  # "{dir}" in a value becomes the case's working directory
    without_psycopg: bool = False
    database: str | None = None  # a SQLite file to make first: "empty", or "unknown" (at a revision nobody knows)


CASES = {
    "serve-garbage-url": Case(("serve",), {**GOOD, "DATABASE_URL": "garbage"}),
    "serve-sqlite-no-folder": Case(("serve",), {**GOOD, "DATABASE_URL": "sqlite:///{dir}/no/such/folder/bg.db"}),
    "serve-no-driver": Case(("serve",), {**GOOD, "DATABASE_URL": PG_URL}, without_psycopg=True),
    "upgrade-sqlite-no-folder": Case(("db", "upgrade"), {"DATABASE_URL": "sqlite:///{dir}/missing/bg.db"}),
    "upgrade-no-driver": Case(("db", "upgrade"), {"DATABASE_URL": PG_URL}, without_psycopg=True),
    "check-everything-wrong": Case(
        ("check",), {"DATABASE_URL": "garbage", "PORT": "abc", "BREAKGLASS_LOG_FORMAT": "xml"}
    ),
    "check-no-driver": Case(("check",), {**GOOD, "DATABASE_URL": PG_URL}, without_psycopg=True),
    "check-unreachable": Case(("check",), {**GOOD, "DATABASE_URL": PG_URL, "BREAKGLASS_AUDIT_KEY": "k3y-x9"}),
    "check-no-schema": Case(
        ("check",),
        {**GOOD, "DATABASE_URL": "sqlite:///{dir}/bg.db", "BREAKGLASS_AUTO_MIGRATE": "false"},
        database="empty",
    ),
    "check-unknown-revision": Case(("check",), {**GOOD, "DATABASE_URL": "sqlite:///{dir}/bg.db"}, database="unknown"),
    "check-json-log": Case(
        ("check",),
        {
            **GOOD,
            "DATABASE_URL": "sqlite:///{dir}/bg.db",
            "BREAKGLASS_LOG_FORMAT": "json",
            "SLACK_SIGNING_SECRET": "abc",
        },
    ),
    "demo-negative-pace": Case(("demo", "--pace", "-1"), {}),
}


@dataclass(frozen=True)
class Result:
    directory: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Result]]:
    inherited = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    started: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    try:
        for name, case in CASES.items():
            directory = tmp_path_factory.mktemp(name)
            (directory / "breakglass.yml").write_text(POLICY, encoding="utf-8")
            if case.database is not None:
                _make_database(directory / "bg.db", case.database)
            env = {**inherited, **{key: value.format(dir=directory) for key, value in case.env.items()}}
            command = ["-c", WITHOUT_PSYCOPG] if case.without_psycopg else ["-m", "bot"]
            process = subprocess.Popen(
                [sys.executable, *command, *case.args],
                env=env,
                cwd=directory,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            started[name] = (directory, process)
        finished = {}
        for name, (directory, process) in started.items():
            stdout, stderr = process.communicate(timeout=60)
            finished[name] = Result(directory, process.returncode, stdout, stderr)
        yield finished
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


def _make_database(path: Path, kind: str) -> None:
    with sqlite3.connect(path) as connection:
        if kind == "unknown":
            connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            connection.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    connection.close()


def one_line(result: Result, code: int) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert PASSWORD not in output
    assert result.returncode == code, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def problems(result: Result) -> list[str]:
    """check's list: every problem, one a line, exit 1, nothing on stderr but log lines."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert PASSWORD not in output
    assert result.returncode == 1, output
    head, *lines = result.stdout.strip().splitlines()
    assert head == f"{len(lines)} problem(s):"
    assert all(line.startswith("  - ") for line in lines)
    return [line.removeprefix("  - ") for line in lines]


def test_serve_with_a_url_that_is_not_one(results: dict[str, Result]) -> None:
    line = one_line(results["serve-garbage-url"], 2)
    assert line.startswith("breakglass: DATABASE_URL: cannot parse it; expected a URL such as sqlite:///")


def test_serve_with_sqlite_in_a_missing_folder(results: dict[str, Result]) -> None:
    result = results["serve-sqlite-no-folder"]
    line = one_line(result, 2)
    assert line == (
        f"breakglass: DATABASE_URL: the folder {result.directory}/no/such/folder does not exist; create it, "
        "or point the SQLite path at a folder that does"
    )
    assert not (result.directory / "no").exists()


def test_serve_with_postgresql_but_no_driver(results: dict[str, Result]) -> None:
    line = one_line(results["serve-no-driver"], 2)
    assert (
        line
        == "breakglass: DATABASE_URL: the postgresql driver (psycopg) is not installed; install breakglass[postgres]"
    )


def test_db_upgrade_says_the_same_in_one_line(results: dict[str, Result]) -> None:
    assert one_line(results["upgrade-sqlite-no-folder"], 2).startswith("breakglass: DATABASE_URL: the folder ")
    assert one_line(results["upgrade-no-driver"], 2).endswith("install breakglass[postgres]")


def test_check_lists_every_problem_in_one_run(results: dict[str, Result]) -> None:
    listed = problems(results["check-everything-wrong"])
    assert [line.partition(":")[0] for line in listed] == [
        "DATABASE_URL",
        "PORT",
        "BREAKGLASS_LOG_FORMAT",
        "BREAKGLASS_AUDIT_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
    ]
    assert listed[0].startswith("DATABASE_URL: cannot parse it")
    assert listed[3].startswith("BREAKGLASS_AUDIT_KEY: required;")
    # The default URL stood in for the wrong one, and was not checked in its place (nor created).
    assert not (results["check-everything-wrong"].directory / "breakglass.db").exists()


def test_check_names_the_missing_driver(results: dict[str, Result]) -> None:
    assert problems(results["check-no-driver"]) == [
        "DATABASE_URL: the postgresql driver (psycopg) is not installed; install breakglass[postgres]"
    ]


def test_check_reaches_for_the_database_and_weighs_the_audit_key(results: dict[str, Result]) -> None:
    first, second = problems(results["check-unreachable"])
    assert first.startswith("BREAKGLASS_AUDIT_KEY: too short (6 characters)")
    assert second.startswith("DATABASE_URL: cannot connect to the database (OperationalError: ")
    assert "Connection refused" in second or "connection refused" in second


def test_check_sees_a_database_without_the_schema(results: dict[str, Result]) -> None:
    assert problems(results["check-no-schema"]) == [
        f"DATABASE_URL: the database is at revision none (no schema yet), expected {schema.head()}; run "
        "`breakglass db upgrade` (BREAKGLASS_AUTO_MIGRATE is off)"
    ]


def test_check_sees_a_schema_newer_than_the_code(results: dict[str, Result]) -> None:
    (line,) = problems(results["check-unknown-revision"])
    assert line.startswith("DATABASE_URL: the database is at revision 9999_from_the_future, which this version")


def test_check_logs_json_lines_when_asked(results: dict[str, Result]) -> None:
    """A signing secret too short to redact is worth a warning: in JSON, one object on its line."""
    result = results["check-json-log"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: breakglass.yml has 1 resource(s)")
    entries = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert entries, "the short secret was not warned about"
    assert all(entry.keys() >= {"ts", "level", "logger", "message"} for entry in entries)
    assert any(
        entry["level"] == "WARNING" and entry["message"].startswith("slack_signing_secret is shorter than 4")
        for entry in entries
    ), entries


def test_demo_refuses_a_negative_pace(results: dict[str, Result]) -> None:
    result = results["demo-negative-pace"]
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "Invalid value for '--pace'" in result.stderr
    assert "greater than or equal to 0" in result.stderr
