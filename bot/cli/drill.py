"""`breakglass drill RESOURCE[:LEVEL]`: run a resource's drill now, from a shell, and exit 1 if it failed.

The drill runs in this process against the bot's database (at the schema this version expects) and the policy's
adapters, built as the other operator commands build them (bot/cli/offline.py). Its alert and report are owed in the
outbox like every message: sent from here when SLACK_BOT_TOKEN is set, otherwise left for the running bot to send (the
drill then says the alert is queued).
"""

from __future__ import annotations

import getpass
import os

import typer

from bot.cli.app import _settings, cli, fail
from bot.policy import PolicyError, load_policy
from bot.services.deps import Deps
from bot.settings import Settings, SettingsError

EXAMPLE = "breakglass drill orders-db:read"


def with_slack(deps: Deps, settings: Settings) -> None:
    """Where Slack is configured, send what the drill owes from here, so its alert check is Slack's own answer; a
    Slack that does not answer leaves it owed (the drill then fails its alert step, as it should)."""
    from bot.services.delivery import Courier
    from bot.slack.app import web_client
    from bot.slack.notifier import SlackNotifier

    if settings.slack_bot_token is None or not settings.slack_bot_token.get_secret_value():
        return
    deps.notifier = SlackNotifier(web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url))
    deps.courier = Courier(deps)


@cli.command(epilog=f"Example: {EXAMPLE}")
def drill(
    target: str = typer.Argument(
        ..., metavar="RESOURCE[:LEVEL]", help="The resource to drill, as the policy names it."
    ),
) -> None:
    """Run the policy's drill of a resource now: grant to the drill principal, verify, revoke, verify gone, check the
    alerts. Prints each step and its time; exit 1 if the drill failed, 2 if it could not be run."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from bot import redaction
    from bot.cli.offline import offline_deps
    from bot.cli.operator_views import plain
    from bot.clock import SystemClock
    from bot.domain.commands import LEVEL_NAME, RESOURCE_NAME
    from bot.domain.rules import Refused
    from bot.services.drills import Trigger, find, run_drill
    from bot.services.offline import keeping_claims
    from bot.slack.drill_notices import STEP_NAMES, seconds

    resource, _, level = target.partition(":")
    if not RESOURCE_NAME.fullmatch(resource) or (level and not LEVEL_NAME.fullmatch(level)):
        fail(f"'{target}' is not RESOURCE or RESOURCE:LEVEL (e.g. `{EXAMPLE}`)")
    settings = _settings()
    try:
        find(load_policy(settings.policy_path), resource, level or None)  # one line, before any connection
        with offline_deps(settings, os.environ, SystemClock(), acting=True) as deps:
            with_slack(deps, settings)
            redaction.install(deps.redactor)
            # A replica while it holds the drill's claims, as `breakglass revoke` is: its heartbeat and renewed leases
            # keep the bot from taking a claim over in the middle of a slow backend call, and a killed drill is found
            # dead by its stopped heartbeat within seconds rather than a lease later.
            with keeping_claims(deps):
                # As the operator commands name their operator: a name no Slack id can be, so nothing mentions anyone.
                result = run_drill(deps, resource, level or None, Trigger.CLI, f"cli:{getpass.getuser()}")
    except (SettingsError, PolicyError) as error:
        fail(str(error))
    except Refused as refusal:
        fail(str(refusal).replace("`", ""))
    # A step's detail is a backend's words: plain Text, never markup, so `[/x]` cannot crash the table after the drill
    # ran, nor `[link=…]` make a link, and no control character reaches the terminal.
    table = Table(title=Text(f"Drill of {plain(result.label)}: {'passed' if result.passed else 'FAILED'}"))
    for column in ("step", "time", "ok", "detail"):
        table.add_column(column)
    for step in result.steps:
        name = STEP_NAMES.get(step.name, step.name)
        table.add_row(name, seconds(step.seconds), "yes" if step.ok else "NO", Text(plain(step.detail)))
    Console(width=160).print(table)
    typer.echo(f"{'passed' if result.passed else 'FAILED'} in {seconds(result.seconds)} (run {result.run_id})")
    if not result.passed:
        raise typer.Exit(1)
