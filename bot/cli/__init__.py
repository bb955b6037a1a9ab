"""The `breakglass` command. Each module registers its commands on the one typer app (``app.cli``):
``run`` (serve, check, demo, db), ``audit`` (the trail), ``drill`` (a drill now),
``operator`` (grants, show, revoke: acting while Slack is down), ``policy`` (lint and explain a policy file)."""

# Each import registers its module's commands: drill (`breakglass drill`), operator (`breakglass grants | show |
# revoke`), policy (`breakglass policy lint | explain`).
from bot.cli import audit, drill, operator, policy, run  # noqa: F401
from bot.cli.app import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli()
