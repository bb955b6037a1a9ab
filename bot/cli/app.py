"""The `breakglass` command itself: the typer app, its sub-apps, and how a command fails (one line, exit code)."""

from __future__ import annotations

import logging
from typing import NoReturn

import typer

from bot import redaction
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
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))  # a line per sweep
    redaction.install(redaction.collect(settings))  # the adapters' secrets join once the policy is read
    redaction.log_uncaught()
    return settings
