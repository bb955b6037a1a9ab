"""`breakglass policy lint` and `explain`: offline (no Slack token, no database), every problem at once, one line
each, and the exit codes CI keys on."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import cli

# No Slack token, no database: lint and explain must not need them.
OFFLINE = {"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": "", "DATABASE_URL": "", "BREAKGLASS_POLICY": ""}

BROKEN = """
channels: {approvals: X1, audit: C0SECURITY}
defaults: {min_duration: 5x}
resources:
  orders-db:
    adapter: log
    approvers: [U0ALICE01]
    approvals_required: 2
  list:
    adapter: log
    approvers: [U0ALICE01]
  web:
    adapter: nosuch
    approvers: [U0ALICE01]
    min_duration: 2h
    max_duration: 1h
  cache:
    adapter: log
    approvers: [U0ALICE01]
    colour: blue
"""

BAD_PARAMS = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: postgres
    params: {host: db.internal, port: nope, password: "${LINT_TEST_DB_PASSWORD}"}
    approvers: [U0ALICE01]
  web:
    adapter: nosuch
    approvers: [U0ALICE01]
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "breakglass.yml"
    path.write_text(files("bot").joinpath("defaults/breakglass.yml").read_text())
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return path


def test_lint_passes_a_good_policy(runner: CliRunner, good: Path) -> None:
    result = runner.invoke(cli, ["policy", "lint", str(good)], env=OFFLINE)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK: {good} has 2 resource(s)")


def test_lint_lists_every_problem_one_per_line(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    result = runner.invoke(cli, ["policy", "lint", str(path)], env=OFFLINE)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    expected = [
        f"{path}: channels.approvals: 'X1' is not a Slack channel id",
        f"{path}: defaults.min_duration: '5x' is not a duration",
        f"{path}: resources.cache.colour: unknown key",
        f"{path}: resources.orders-db.approvals_required: 2 are required but only 1 approver(s)",
        f"{path}: resources.list: 'list' is a /breakglass command",
        f"{path}: resources.web: expected min_duration <= default_duration <= max_duration",
    ]
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
    assert len(lines) == len(expected), lines


def test_lint_checks_adapters_offline_and_only_warns_of_missing_secrets(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, BAD_PARAMS)
    result = runner.invoke(cli, ["policy", "lint", str(path)], env={**OFFLINE, "LINT_TEST_DB_PASSWORD": None})
    assert result.exit_code == 1
    assert f"{path}: resources.orders-db.params.port: Input should be a valid integer" in result.stdout
    assert f"{path}: resources.orders-db.params.database: required key is missing" in result.stdout
    assert f"{path}: resources.web.adapter: unknown adapter 'nosuch'" in result.stdout
    assert "password" not in result.stdout  # filled by a stand-in while the variable is missing: not a problem
    assert "warning: resources.orders-db.params: environment variable LINT_TEST_DB_PASSWORD is not set" in (
        result.stderr
    )


def test_lint_of_a_good_policy_with_a_missing_secret_passes_with_a_warning(runner: CliRunner, tmp_path: Path) -> None:
    fixed = BAD_PARAMS.replace("port: nope", "port: 5432, database: orders, user: breakglass, roles: [reader]")
    path = write(tmp_path, fixed.replace("adapter: nosuch", "adapter: log"))
    result = runner.invoke(cli, ["policy", "lint", str(path)], env={**OFFLINE, "LINT_TEST_DB_PASSWORD": None})
    assert result.exit_code == 0, result.output
    assert "1 warning(s)" in result.stdout and "LINT_TEST_DB_PASSWORD" in result.stderr


def test_lint_of_a_file_that_is_not_there_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["policy", "lint", str(tmp_path / "missing.yml")], env=OFFLINE)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"breakglass: {tmp_path / 'missing.yml'}: cannot read the policy file (No such file or directory)"
    ]


def test_lint_of_broken_yaml_names_the_line(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, "channels: {approvals: C0A\nresources: [")
    result = runner.invoke(cli, ["policy", "lint", str(path)], env=OFFLINE)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: line ") and "not valid YAML" in result.stdout


def test_explain_shows_each_level_as_the_bot_applies_it(runner: CliRunner, good: Path) -> None:
    wide = {**OFFLINE, "COLUMNS": "200"}
    result = runner.invoke(cli, ["policy", "explain", "orders-db", "--policy", str(good)], env=wide)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    for said in (
        "orders-db (adapter demo-db)",
        "level read (the default)",
        "requesters: S0ONCALL",
        "approvers: 1 of S0SRELEADS, U0ALICE01",
        "duration: min 5m, default 1h, max 2h",
        "level write",
        "step 1 (team lead): 1 of S0SRELEADS",
        "step 2 (security): 1 of S0SECURITY",
        "emergency: may break the glass",
        "reason must match: (INC|CHG)-[0-9]+",
        "lapses undecided after 1d",
        "review: owed after every emergency grant",
    ):
        assert said in text, (said, result.stdout)


def test_explain_reads_the_policy_setting_by_default(runner: CliRunner, good: Path) -> None:
    chosen = {**OFFLINE, "BREAKGLASS_POLICY": str(good)}
    result = runner.invoke(cli, ["policy", "explain", "payments-admin"], env=chosen)
    assert result.exit_code == 0, result.output
    assert "payments-admin" in result.stdout


def test_explain_of_an_unknown_resource_names_the_ones_there_are(runner: CliRunner, good: Path) -> None:
    result = runner.invoke(cli, ["policy", "explain", "nope", "--policy", str(good)], env=OFFLINE)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"breakglass: {good} has no resource 'nope'; it has: orders-db, payments-admin"


def test_explain_of_a_broken_policy_points_to_lint(runner: CliRunner, tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    result = runner.invoke(cli, ["policy", "explain", "orders-db", "--policy", str(path)], env=OFFLINE)
    assert result.exit_code == 2
    assert f"`breakglass policy lint {path}` lists every problem" in result.stderr


@pytest.mark.parametrize("command", ["lint", "explain"])
def test_help_gives_an_example(runner: CliRunner, command: str) -> None:
    result = runner.invoke(cli, ["policy", command, "--help"], env={**OFFLINE, "COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"Example: breakglass policy {command}" in result.stdout
