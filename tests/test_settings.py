"""Settings from the environment: defaults, one-line errors naming the variable, and secrets kept secret."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import _NAMES, Settings, SettingsError, load_settings
from bot.settings import VARIABLES as READ_BY_THE_CODE

VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "DATABASE_URL",
    "BREAKGLASS_POLICY",
    "PORT",
    "BREAKGLASS_SWEEP_INTERVAL",
    "BREAKGLASS_EXPIRY_WARNING",
    "BREAKGLASS_INSTANCE",
    "BREAKGLASS_LEASE",
    "BREAKGLASS_BACKEND_TIMEOUT",
    "BREAKGLASS_BACKEND_CONCURRENCY",
    "BREAKGLASS_STOP_GRACE",
    "BREAKGLASS_REVOKE_ALERT_AFTER",
    "BREAKGLASS_AUTO_MIGRATE",
    "BREAKGLASS_LOG_LEVEL",
    "BREAKGLASS_LOG_FORMAT",
    "BREAKGLASS_AUDIT_KEY",
    "BREAKGLASS_AUDIT_PREVIOUS_KEYS",
    "SLACK_TEAM_ID",
    "SLACK_ENTERPRISE_ID",
    "BREAKGLASS_REQUESTS_PER_HOUR",
    "BREAKGLASS_ACTIONS_PER_MINUTE",
    "BREAKGLASS_REFUSALS_ALERT",
    "BREAKGLASS_RECONCILE_EVERY",
)
SECRETS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "BREAKGLASS_AUDIT_KEY",
    "BREAKGLASS_AUDIT_PREVIOUS_KEYS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env, whatever load_settings is asked for


def settings_error(env_file: str | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=env_file)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    settings = load_settings(env_file=None)
    assert settings.database_url == "sqlite:///breakglass.db"
    assert settings.policy_path == Path("breakglass.yml")
    assert settings.port == 3000
    assert settings.sweep_interval == 15
    assert settings.expiry_warning == timedelta(minutes=10)
    assert settings.revoke_alert_after == 3
    assert settings.auto_migrate is True
    assert settings.log_level == "INFO"
    assert settings.slack_bot_token is None
    assert settings.slack_signing_secret is None
    assert settings.slack_app_token is None
    assert settings.slack_api_url is None
    assert settings.socket_mode is False


def test_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://bg@db/bg")
    monkeypatch.setenv("BREAKGLASS_POLICY", "/etc/breakglass/policy.yml")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("BREAKGLASS_SWEEP_INTERVAL", "2.5")
    monkeypatch.setenv("BREAKGLASS_EXPIRY_WARNING", "15m")
    monkeypatch.setenv("BREAKGLASS_AUTO_MIGRATE", "false")
    monkeypatch.setenv("BREAKGLASS_LOG_LEVEL", "debug")
    settings = load_settings(env_file=None)
    assert settings.database_url == "postgresql+psycopg://bg@db/bg"
    assert settings.policy_path == Path("/etc/breakglass/policy.yml")
    assert settings.port == 8080
    assert settings.sweep_interval == 2.5
    assert settings.expiry_warning == timedelta(minutes=15)
    assert settings.auto_migrate is False
    assert settings.log_level == "DEBUG"


def test_names_are_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("port", "8080")
    assert load_settings(env_file=None).port == 3000


def test_env_file_is_read_when_asked_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("PORT=4000\nBREAKGLASS_SWEEP_INTERVAL=5\n", encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_SWEEP_INTERVAL", "7")
    settings = load_settings(env_file=str(env_file))
    assert settings.port == 4000
    assert settings.sweep_interval == 7
    assert load_settings(env_file=None).port == 3000


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "abc", "integer"),
        ("PORT", "0", "greater than or equal to 1"),
        ("PORT", "65536", "less than or equal to 65535"),
        ("BREAKGLASS_SWEEP_INTERVAL", "often", "number"),
        ("BREAKGLASS_SWEEP_INTERVAL", "0", "greater than 0"),
        ("BREAKGLASS_SWEEP_INTERVAL", "-1", "greater than 0"),
        ("BREAKGLASS_SWEEP_INTERVAL", "3601", "less than or equal to 3600"),
        ("SLACK_API_URL", "slack.com/api", "expected an http(s) URL"),
        ("SLACK_API_URL", "ftp://slack.com/api/", "expected an http(s) URL"),
        ("BREAKGLASS_EXPIRY_WARNING", "soon", "90s, 45m"),
        ("BREAKGLASS_REVOKE_ALERT_AFTER", "0", "greater than or equal to 1"),
        ("BREAKGLASS_AUTO_MIGRATE", "perhaps", "boolean"),
        ("BREAKGLASS_LOG_LEVEL", "loud", "DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_a_bad_value_names_the_variable_first(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    message = settings_error()
    assert message.startswith(f"{name}: ")
    assert expected in message


@pytest.mark.parametrize("name", ["PORT", "BREAKGLASS_SWEEP_INTERVAL", "SLACK_API_URL"])
def test_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    value = "xoxb-looks-like-a-pasted-token-123"
    monkeypatch.setenv(name, value)
    message = settings_error()
    assert message.startswith(f"{name}: ")
    assert value not in message
    assert "looks-like" not in message


def test_a_bad_value_in_the_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=eighty\n", encoding="utf-8")
    message = settings_error(str(env_file))
    assert message.startswith("PORT: ")
    assert "eighty" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://slack.example/api", "https://slack.example/api/"),
        ("http://127.0.0.1:9/api/", "http://127.0.0.1:9/api/"),
        ("  ", None),
    ],
)
def test_slack_api_url_ends_in_a_slash(monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None) -> None:
    monkeypatch.setenv("SLACK_API_URL", value)
    assert load_settings(env_file=None).slack_api_url == expected


def test_secrets_are_secret_str_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-bot-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret-value")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-secret-app-token")
    settings = load_settings(env_file=None)
    for field in (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token):
        assert isinstance(field, SecretStr)
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-secret-bot-token"
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("xoxb-secret-bot-token", "signing-secret-value", "xapp-secret-app-token"):
        assert secret not in shown


@pytest.mark.parametrize("name", SECRETS)
def test_blank_secrets_count_as_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "   ")
    field = next(field for field, variable in _NAMES.items() if variable == name)
    assert getattr(load_settings(env_file=None), field) is None


def slack(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return load_settings(env_file=None)


def require_slack_error(settings: Settings) -> str:
    with pytest.raises(SettingsError) as caught:
        settings.require_slack()
    return str(caught.value)


def test_require_slack_http_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = slack(monkeypatch, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="shh")
    settings.require_slack()
    assert settings.socket_mode is False


def test_require_slack_socket_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = slack(monkeypatch, SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1")
    settings.require_slack()
    assert settings.socket_mode is True


def test_require_slack_without_a_bot_token(monkeypatch: pytest.MonkeyPatch) -> None:
    message = require_slack_error(slack(monkeypatch, SLACK_SIGNING_SECRET="shh"))
    assert message.startswith("SLACK_BOT_TOKEN: required")
    assert "xoxb-" in message


def test_require_slack_with_a_wrong_kind_of_bot_token(monkeypatch: pytest.MonkeyPatch) -> None:
    message = require_slack_error(slack(monkeypatch, SLACK_BOT_TOKEN="xoxp-user-token-999", SLACK_SIGNING_SECRET="s"))
    assert message.startswith("SLACK_BOT_TOKEN: expected a bot token starting with xoxb-")
    assert "user-token-999" not in message


def test_require_slack_with_a_wrong_kind_of_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    message = require_slack_error(slack(monkeypatch, SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xoxb-app-999"))
    assert message.startswith("SLACK_APP_TOKEN: expected an app-level token starting with xapp-")
    assert "app-999" not in message


def test_require_slack_http_mode_needs_the_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    message = require_slack_error(slack(monkeypatch, SLACK_BOT_TOKEN="xoxb-1"))
    assert message.startswith("SLACK_SIGNING_SECRET: required in HTTP mode")
    assert "SLACK_APP_TOKEN" in message


def test_reconcile_runs_every_ten_minutes_unless_told_and_a_bad_period_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BREAKGLASS_RECONCILE_EVERY", raising=False)
    assert load_settings(env_file=None).reconcile_every == timedelta(minutes=10)
    monkeypatch.setenv("BREAKGLASS_RECONCILE_EVERY", "1h")
    assert load_settings(env_file=None).reconcile_every == timedelta(hours=1)
    monkeypatch.setenv("BREAKGLASS_RECONCILE_EVERY", "often")
    with pytest.raises(SettingsError, match=r"^BREAKGLASS_RECONCILE_EVERY: "):
        load_settings(env_file=None)


def test_the_code_reads_exactly_the_documented_variables() -> None:
    assert sorted(READ_BY_THE_CODE) == sorted(VARIABLES)


AUDIT_KEY = "audit-key-0123456789abcdef0123456789abcdef"
RETIRED = "retired-audit-key-0123456789abcdef0123456789"


def audit_keys_error(monkeypatch: pytest.MonkeyPatch, **values: str) -> str:
    settings = slack(monkeypatch, **values)
    with pytest.raises(SettingsError) as caught:
        settings.audit_keys()
    message = str(caught.value)
    assert "\n" not in message
    for value in values.values():
        assert value not in message
    return message


def test_audit_keys_current_and_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = slack(
        monkeypatch, BREAKGLASS_AUDIT_KEY=AUDIT_KEY, BREAKGLASS_AUDIT_PREVIOUS_KEYS=f" {RETIRED} ,, {AUDIT_KEY[::-1]},"
    )
    assert settings.audit_keys() == (AUDIT_KEY, [RETIRED, AUDIT_KEY[::-1]])
    assert slack(monkeypatch, BREAKGLASS_AUDIT_PREVIOUS_KEYS=" ").audit_keys() == (AUDIT_KEY, [])
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert AUDIT_KEY not in shown and RETIRED not in shown


def test_audit_keys_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    message = audit_keys_error(monkeypatch)
    assert message.startswith("BREAKGLASS_AUDIT_KEY: required;")
    assert "breakglass audit keygen" in message


def test_a_short_audit_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = audit_keys_error(monkeypatch, BREAKGLASS_AUDIT_KEY="only-twenty-chars-xx")
    assert message.startswith("BREAKGLASS_AUDIT_KEY: too short (20 characters)")


def test_a_short_retired_audit_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = audit_keys_error(
        monkeypatch, BREAKGLASS_AUDIT_KEY=AUDIT_KEY, BREAKGLASS_AUDIT_PREVIOUS_KEYS=f"{RETIRED},old-short-key"
    )
    assert message.startswith("BREAKGLASS_AUDIT_PREVIOUS_KEYS: expected a comma-separated list")


# -- configuration mistakes: every one named, the URL never echoed ------------------------------------------------


def test_log_format_is_text_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(env_file=None).log_format == "text"
    monkeypatch.setenv("BREAKGLASS_LOG_FORMAT", " JSON ")
    assert load_settings(env_file=None).log_format == "json"
    monkeypatch.setenv("BREAKGLASS_LOG_FORMAT", "xml")
    assert settings_error() == "BREAKGLASS_LOG_FORMAT: expected text or json"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("garbage", "DATABASE_URL: cannot parse it; expected a URL such as sqlite:///"),
        ("postgresql://breakglass:hunter2-secret@db.internal:port/bg", "DATABASE_URL: cannot parse it;"),
        ("oracle://breakglass:hunter2-secret@db.internal/bg", "DATABASE_URL: unknown database 'oracle'"),
        ("postgresql+nosuch://breakglass:hunter2-secret@db.internal/bg", "DATABASE_URL: unknown postgresql driver"),
        ("postgresql+psycopg2://breakglass:hunter2-secret@db.internal/bg", "DATABASE_URL: the postgresql driver psyc"),
        ("sqlite:///no/such/folder/bg.db", "DATABASE_URL: the folder no/such/folder does not exist"),
    ],
)
def test_a_database_url_that_cannot_work_is_named_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    message = settings_error()
    assert message.startswith(expected)
    assert "hunter2" not in message and "db.internal" not in message


def test_a_missing_database_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an install without breakglass[postgres] looks like
    monkeypatch.setenv("DATABASE_URL", "postgres://breakglass:hunter2-secret@db.internal/bg")
    message = settings_error()
    assert message == "DATABASE_URL: the postgresql driver (psycopg) is not installed; install breakglass[postgres]"


def test_database_urls_that_can_work_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for url in (
        f"sqlite:///{tmp_path}/bg.db",
        "sqlite:///relative.db",
        "sqlite://",
        "postgresql://u:p@127.0.0.1:9/bg",
        "postgres://u:p@127.0.0.1/bg",
        "mysql://u:p@127.0.0.1/bg",
    ):
        monkeypatch.setenv("DATABASE_URL", url)
        assert load_settings(env_file=None).database_url == url


def test_every_wrong_setting_is_listed_and_its_default_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import load_leniently

    monkeypatch.setenv("DATABASE_URL", "garbage")
    monkeypatch.setenv("PORT", "abc")
    monkeypatch.setenv("BREAKGLASS_LOG_FORMAT", "xml")
    monkeypatch.setenv("BREAKGLASS_SWEEP_INTERVAL", "7")
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == caught.value.problems[0]
    assert [line.partition(":")[0] for line in caught.value.problems] == [
        "DATABASE_URL",
        "PORT",
        "BREAKGLASS_LOG_FORMAT",
    ]
    settings, problems, wrong = load_leniently(env_file=None)
    assert problems == caught.value.problems
    assert wrong == {"DATABASE_URL", "PORT", "BREAKGLASS_LOG_FORMAT"}
    assert (settings.database_url, settings.port, settings.log_format) == ("sqlite:///breakglass.db", 3000, "text")
    assert settings.sweep_interval == 7  # what was right is kept


def test_every_slack_problem_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)
    problems = settings.slack_problems()
    assert [line.partition(":")[0] for line in problems] == ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]
    with pytest.raises(SettingsError) as caught:
        settings.require_slack()
    assert caught.value.problems == problems
