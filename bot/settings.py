"""Settings from the environment and an optional .env file. Read once at start; nothing else reads the
environment. A bad setting stops start-up with one line naming the variable and what it expects."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.policy import Duration
from bot.store.urls import url_problem


class SettingsError(ValueError):
    """One line: the variable and what it expects. ``problems`` holds every such line when several settings are
    wrong (the first is the message), for `breakglass check` to list them all in one run."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def _blank_is_unset(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


Optional = Annotated[SecretStr | None, BeforeValidator(_blank_is_unset)]


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    slack_bot_token: Optional = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: Optional = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: Optional = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str | None = Field(None, validation_alias=_env("SLACK_API_URL"))
    database_url: str = Field("sqlite:///breakglass.db", validation_alias=_env("DATABASE_URL"))
    policy_path: Path = Field(Path("breakglass.yml"), validation_alias=_env("BREAKGLASS_POLICY"))
    port: int = Field(3000, ge=1, le=65535, validation_alias=_env("PORT"))
    sweep_interval: float = Field(15.0, gt=0, le=3600, validation_alias=_env("BREAKGLASS_SWEEP_INTERVAL"))
    expiry_warning: Duration = Field(timedelta(minutes=10), validation_alias=_env("BREAKGLASS_EXPIRY_WARNING"))
    revoke_alert_after: int = Field(3, ge=1, le=100, validation_alias=_env("BREAKGLASS_REVOKE_ALERT_AFTER"))
    instance: str | None = Field(None, max_length=64, validation_alias=_env("BREAKGLASS_INSTANCE"))
    lease: Duration = Field(timedelta(seconds=30), validation_alias=_env("BREAKGLASS_LEASE"))
    backend_timeout: float = Field(20.0, gt=0, le=600, validation_alias=_env("BREAKGLASS_BACKEND_TIMEOUT"))
    backend_concurrency: int = Field(4, ge=1, le=64, validation_alias=_env("BREAKGLASS_BACKEND_CONCURRENCY"))
    stop_grace: float = Field(10.0, gt=0, le=600, validation_alias=_env("BREAKGLASS_STOP_GRACE"))
    auto_migrate: bool = Field(True, validation_alias=_env("BREAKGLASS_AUTO_MIGRATE"))
    log_level: str = Field("INFO", validation_alias=_env("BREAKGLASS_LOG_LEVEL"))
    log_format: str = Field("text", validation_alias=_env("BREAKGLASS_LOG_FORMAT"))
    audit_key: Optional = Field(None, validation_alias=_env("BREAKGLASS_AUDIT_KEY"))
    audit_previous_keys: Optional = Field(None, validation_alias=_env("BREAKGLASS_AUDIT_PREVIOUS_KEYS"))
    slack_team_id: str | None = Field(None, pattern=r"^T[A-Z0-9]{2,20}$", validation_alias=_env("SLACK_TEAM_ID"))
    slack_enterprise_id: str | None = Field(
        None, pattern=r"^E[A-Z0-9]{2,20}$", validation_alias=_env("SLACK_ENTERPRISE_ID")
    )
    requests_per_hour: int = Field(20, ge=1, le=10_000, validation_alias=_env("BREAKGLASS_REQUESTS_PER_HOUR"))
    actions_per_minute: int = Field(30, ge=1, le=10_000, validation_alias=_env("BREAKGLASS_ACTIONS_PER_MINUTE"))
    refusals_alert: int = Field(5, ge=1, le=1000, validation_alias=_env("BREAKGLASS_REFUSALS_ALERT"))
    reconcile_every: Duration = Field(timedelta(minutes=10), validation_alias=_env("BREAKGLASS_RECONCILE_EVERY"))

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value.strip().lower() not in ("text", "json"):
            raise ValueError("expected text or json")
        return value.strip().lower()

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("slack_team_id", "slack_enterprise_id", mode="before")
    @classmethod
    def _blank_id(cls, value: object) -> object:
        return _blank_is_unset(value)

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def require_slack(self) -> None:
        """What `serve` needs beyond the defaults."""
        problems = self.slack_problems()
        if problems:
            raise SettingsError(problems[0], problems)

    def slack_problems(self) -> list[str]:
        problems = []
        token = self.slack_bot_token
        if token is None:
            problems.append("SLACK_BOT_TOKEN: required; expected the bot token (xoxb-…) of your Slack app")
        elif not token.get_secret_value().startswith("xoxb-"):
            problems.append("SLACK_BOT_TOKEN: expected a bot token starting with xoxb-")
        if self.slack_app_token is not None:
            if not self.slack_app_token.get_secret_value().startswith("xapp-"):
                problems.append("SLACK_APP_TOKEN: expected an app-level token starting with xapp- (Socket Mode)")
        elif self.slack_signing_secret is None:
            problems.append(
                "SLACK_SIGNING_SECRET: required in HTTP mode; expected your app's signing secret "
                "(or set SLACK_APP_TOKEN to use Socket Mode)"
            )
        return problems

    def audit_keys(self) -> tuple[str, list[str]]:
        """The key that seals new audit events, and retired keys that older events were sealed with."""
        key = self.audit_key.get_secret_value() if self.audit_key else ""
        if len(key) < MIN_AUDIT_KEY:
            problem = "required" if not key else f"too short ({len(key)} characters)"
            raise SettingsError(
                f"BREAKGLASS_AUDIT_KEY: {problem}; expected at least {MIN_AUDIT_KEY} random characters kept outside "
                "the database (make one with `breakglass audit keygen`)"
            )
        previous = self.audit_previous_keys.get_secret_value() if self.audit_previous_keys else ""
        retired = [part.strip() for part in previous.split(",") if part.strip()]
        if any(len(old) < MIN_AUDIT_KEY for old in retired):
            raise SettingsError(
                f"BREAKGLASS_AUDIT_PREVIOUS_KEYS: expected a comma-separated list of earlier audit keys, "
                f"each at least {MIN_AUDIT_KEY} characters"
            )
        return key, retired


MIN_AUDIT_KEY = 32


def _variable(name: str, field: FieldInfo) -> str:
    """The one environment variable a setting reads (named with ``_env``)."""
    alias = field.validation_alias
    if not isinstance(alias, AliasChoices) or not isinstance(alias.choices[0], str):
        raise TypeError(f"setting {name} must read one environment variable, named with _env")
    return alias.choices[0]


_NAMES = {name: _variable(name, field) for name, field in Settings.model_fields.items()}
VARIABLES = tuple(_NAMES.values())  # every environment variable Breakglass reads


def load_settings(env_file: str | None = ".env") -> Settings:
    """The settings, or SettingsError: its message the first wrong setting, its ``problems`` every one."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as error:
        problems = _lines(error)
        raise SettingsError(problems[0], problems) from None


def load_leniently(env_file: str | None = ".env") -> tuple[Settings, list[str], set[str]]:
    """Settings with every wrong value replaced by its default, the lines saying what was wrong, and the variables
    that were: `breakglass check` goes on to check everything else, and skips what a defaulted value would fake."""
    try:
        return Settings(_env_file=env_file), [], set()
    except ValidationError as error:
        wrong = {_wrong_variable(item["loc"]) for item in error.errors()}
        fields = {variable: name for name, variable in _NAMES.items()}
        fallback = {name: Settings.model_fields[fields[name]].default for name in wrong if name in fields}
        try:
            settings = Settings(_env_file=env_file, **fallback)
        except ValidationError:  # not expected (every default is valid): the defaults alone, then
            settings = Settings.model_construct()
        return settings, _lines(error), wrong


def _wrong_variable(loc: tuple[int | str, ...]) -> str:
    """The variable an error is about: pydantic names it by its alias (the variable) or, now and then, the field."""
    name = str(loc[0]) if loc else "settings"
    return _NAMES.get(name, name)


def _lines(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        # The value itself is never echoed: it may be a secret.
        lines.append(f"{_wrong_variable(item['loc'])}: {item['msg'].removeprefix('Value error, ')}")
    return list(dict.fromkeys(lines))
