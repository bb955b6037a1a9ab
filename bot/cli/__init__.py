"""The `breakglass` command. Each module registers its commands on the one typer app (``app.cli``):
``run`` (serve, check, demo, db), ``audit`` (the trail)."""

from bot.cli import audit, run  # noqa: F401  (registers their commands)
from bot.cli.app import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli()
