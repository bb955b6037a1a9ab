"""The `breakglass` command itself: the typer app, its sub-apps, and how a command fails (one line, exit code)."""

from __future__ import annotations

from typing import NoReturn

import typer

from bot import logs, redaction
from bot.settings import Settings, SettingsError, load_settings

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Breakglass: just-in-time access from Slack.",
)
db_cli = typer.Typer(no_args_is_help=True, help="The database schema.")
cli.add_typer(db_cli, name="db")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"breakglass: {message}", err=True)
    raise typer.Exit(code)


def plain_settings() -> Settings:
    """The settings, or one line naming the variable that is wrong (exit 2); logging left as it is."""
    try:
        return load_settings()
    except SettingsError as error:
        fail(str(error))


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as error:
        fail(str(error))
    return logging_for(settings)


def logging_for(settings: Settings) -> Settings:
    """Logging set up as the settings say (text or JSON), scrubbed of the secrets known so far."""
    logs.configure(settings)
    redaction.install(redaction.collect(settings))  # the adapters' secrets join once the policy is read
    redaction.log_uncaught()
    return settings
