"""The `breakglass` console script, run for real: `python -m bot` in a subprocess, from an empty directory
(so no .env is picked up) with a cleaned environment.

Starting an interpreter costs about a second, so every case is started at once when the module's first test
asks for its result, and each test then reads the finished run it is about."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.settings import VARIABLES
from bot.store import schema
from tests.conftest import POSTGRES_ENV

CLEARED = (*VARIABLES, "MISSING_VAR", "HOOK_SECRET", "HOOK_TOKEN", "API_KEY", "PG_PASSWORD")
TOKENS = {
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "SLACK_SIGNING_SECRET": "test-signing-secret",
    "BREAKGLASS_AUDIT_KEY": "cli-test-audit-key-0123456789abcdef",
}

GOOD_POLICY = """\
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: log
    approvers: [S0SRELEADS]
  payments-admin:
    adapter: log
    approvers: [U0ALICE01, U0CAROL]
    approvals_required: 2
"""

WEBHOOK_POLICY = """\
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: log
    approvers: [S0SRELEADS]
  hooked:
    adapter: webhook
    approvers: [S0SRELEADS]
    params:
      url: https://access.internal.example/hooks/breakglass
      secret: ${MISSING_VAR}
"""

MALFORMED_POLICY = GOOD_POLICY + "    max_duration: 4x\n"

# Real backends that refuse: a program that is not there, and a Redis port nobody listens on.
BACKENDS_POLICY = """\
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  gate:
    adapter: command
    approvers: [S0SRELEADS]
    params: {grant: [/nonexistent/gate], revoke: [/nonexistent/gate]}
  cache:
    adapter: redis
    approvers: [S0SRELEADS]
    users: {U0ALICE01: "alice smith"}
    params: {host: 127.0.0.1, port: 9, rules: ["+get"]}
"""


# Backends whose check fails and whose error quotes credentials: a program that echoes what it was given (the Slack
# token and another resource's webhook secret among it), and, when PostgreSQL is at hand, a login that is refused.
LEAKY_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-7318402956-1183750294618-Zt4qLm8vNc2xRb6yWp0sKd3f",
    "SLACK_SIGNING_SECRET": "5d1e0b9a7c3f48e2a6b0c9d8e7f61234",
    "HOOK_SECRET": "hook-secret-3f9a0c7e1b5d4a28",
    "HOOK_TOKEN": "hook-bearer-token-8c2e5a1f9d7b",
    "API_KEY": "api-key-for-the-program-4b7e0d2c",
    "PG_PASSWORD": "wrong-password-6e1c9a3f7b2d",
}
LEAKY_POLICY = """\
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  hooked:
    adapter: webhook
    approvers: [S0SRELEADS]
    params:
      url: http://127.0.0.1:9/hooks/breakglass
      secret: ${HOOK_SECRET}
      headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
  echo:
    adapter: command
    approvers: [S0SRELEADS]
    params:
      grant: [/bin/sh]
      revoke: [/bin/sh]
      check:
        - /bin/sh
        - -c
        - 'echo "refused: token $0 hook $1 key $API_KEY" >&2; exit 1'
        - ${SLACK_BOT_TOKEN}
        - ${HOOK_SECRET}
      env: {API_KEY: "${API_KEY}"}
"""


def _leaky_postgres() -> str:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        return ""
    url = urlsplit(base)
    return f"""\
  pg:
    adapter: postgres
    approvers: [S0SRELEADS]
    params:
      host: {url.hostname}
      port: {url.port or 5432}
      database: {url.path.lstrip("/") or "postgres"}
      user: breakglass_no_such_login
      password: ${{PG_PASSWORD}}
      roles: [breakglass_none]
"""


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: dict[str, str]  # "{dir}" in a value becomes the case's working directory
    policy: str | None = None


CASES = {
    "serve-no-token": Case(("serve",), {"DATABASE_URL": "sqlite:///{dir}/x.db"}, GOOD_POLICY),
    "serve-bad-port": Case(("serve",), {"PORT": "abc", **TOKENS}, GOOD_POLICY),
    "check-good": Case(("check",), TOKENS, GOOD_POLICY),
    "check-missing-var": Case(("check",), TOKENS, WEBHOOK_POLICY),
    "check-malformed": Case(("check",), TOKENS, MALFORMED_POLICY),
    "check-no-file": Case(("check",), TOKENS),
    "check-backends": Case(("check",), TOKENS, BACKENDS_POLICY),
    "check-leaky": Case(
        ("check",), {**LEAKY_SECRETS, "BREAKGLASS_LOG_LEVEL": "DEBUG"}, LEAKY_POLICY + _leaky_postgres()
    ),
    "db-upgrade": Case(("db", "upgrade"), {"DATABASE_URL": "sqlite:///{dir}/x.db"}),
    "db-upgrade-unreachable": Case(("db", "upgrade"), {"DATABASE_URL": "postgresql://breakglass@127.0.0.1:9/bg"}),
}


@dataclass(frozen=True)
class Result:
    directory: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Result]]:
    inherited = {name: value for name, value in os.environ.items() if name not in CLEARED}
    started: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    try:
        for name, case in CASES.items():
            directory = tmp_path_factory.mktemp(name)
            if case.policy is not None:
                (directory / "breakglass.yml").write_text(case.policy, encoding="utf-8")
            env = {**inherited, **{key: value.format(dir=directory) for key, value in case.env.items()}}
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", *case.args],
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


def one_line_error(result: Result) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_serve_without_a_bot_token_says_so_in_one_line(results: dict[str, Result]) -> None:
    result = results["serve-no-token"]
    assert result.returncode == 2
    assert one_line_error(result).startswith("breakglass: SLACK_BOT_TOKEN: required")


def test_serve_with_a_bad_port_names_it(results: dict[str, Result]) -> None:
    result = results["serve-bad-port"]
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith("breakglass: PORT: ")
    assert "abc" not in line


def test_check_a_good_policy(results: dict[str, Result]) -> None:
    result = results["check-good"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: breakglass.yml has 2 resource(s)")


def test_check_lists_a_missing_environment_variable(results: dict[str, Result]) -> None:
    result = results["check-missing-var"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "1 problem(s):"
    assert "resources.hooked.params.secret" in lines[1]
    assert "MISSING_VAR" in lines[1]


def test_check_a_malformed_policy_names_the_key(results: dict[str, Result]) -> None:
    result = results["check-malformed"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    problem, line = result.stdout.strip().splitlines()
    assert problem == "1 problem(s):"
    assert "resources.payments-admin.max_duration" in line
    assert "'4x'" in line


def test_check_without_a_policy_file_says_so(results: dict[str, Result]) -> None:
    result = results["check-no-file"]
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[1].startswith("  - breakglass.yml: cannot read the policy file")


def test_db_upgrade_creates_the_schema(results: dict[str, Result]) -> None:
    result = results["db-upgrade"]
    assert result.returncode == 0, result.stderr
    assert f"Database at revision {schema.head()}." in result.stdout
    with sqlite3.connect(result.directory / "x.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == schema.head()
    assert tables - {"alembic_version"}


def test_db_upgrade_on_an_unreachable_database_names_the_variable(results: dict[str, Result]) -> None:
    result = results["db-upgrade-unreachable"]
    assert result.returncode == 1
    assert one_line_error(result).startswith("breakglass: DATABASE_URL: cannot upgrade the database")


def test_check_asks_every_backend_and_lists_each_problem(results: dict[str, Result]) -> None:
    result = results["check-backends"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "resources.gate: command: /nonexistent/gate is not an executable file here" in result.stdout
    assert "resources.cache: " in result.stdout  # the closed port
    assert "resources.cache: users.U0ALICE01: 'alice smith' cannot be an identity here" in result.stdout


def test_check_prints_no_secret_even_when_a_backend_quotes_one(results: dict[str, Result]) -> None:
    result = results["check-leaky"]
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    # The program's complaint is shown, with every credential in it blanked: the Slack token and the other
    # resource's webhook secret by the check's redaction, its own key by the command adapter.
    assert (
        "resources.echo: command check: /bin/sh exited with status 1: refused: token [redacted] hook [redacted] "
        "key [redacted]" in result.stdout
    )
    if os.environ.get(POSTGRES_ENV):
        assert "resources.pg: " in result.stdout  # the refused login is reported
    leaked = [name for name, value in LEAKY_SECRETS.items() if value in output]
    assert leaked == []
