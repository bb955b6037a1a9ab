"""`breakglass grants | show | revoke`: acting on access from a shell when Slack is down.

An operator with the bot's environment (DATABASE_URL, BREAKGLASS_POLICY, BREAKGLASS_AUDIT_KEY and the backends'
variables) sees what is live and ends it. Revokes take the bot's own path (bot/services/offline.py); Slack hears of
them from the outbox once the bot runs with Slack answering.

Exit codes: 0 done; 1 the request is not in a state for it, or the revoke was not confirmed (it stays with the bot,
which retries); 2 the command could not run (settings, policy, database, arguments, an id that names no request).
"""

from __future__ import annotations

import getpass
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from bot import redaction
from bot.cli import operator_views as views
from bot.cli.app import cli, fail, plain_settings
from bot.cli.offline import offline_deps
from bot.clock import Clock, SystemClock
from bot.domain.commands import clean
from bot.domain.rules import MAX_REASON
from bot.policy import PolicyError
from bot.services import offline
from bot.services.deps import Deps
from bot.settings import Settings, SettingsError
from bot.store.reachability import unreachable

# Where "now" comes from; tests put the bot's manual clock here.
CLOCK: Clock = SystemClock()

# Who acted, as the audit trail and Slack show it: "cli:" and a login name. Slack ids are never this shape, so a
# message names the operator as text instead of mentioning someone. 28 characters keep "cli:<name>" within the
# 32 that ``ended_by`` holds.
OPERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,27}")
ACTOR_PREFIX = "cli:"

T = TypeVar("T")


def _settings() -> Settings:
    """The settings, with logging kept to errors: each command says in its own line what happened, and the bot's
    warnings about the same thing would say it twice (BREAKGLASS_LOG_LEVEL=DEBUG shows everything)."""
    settings = plain_settings()
    level = logging.DEBUG if settings.log_level == "DEBUG" else logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redaction.install(redaction.collect(settings))  # the adapters' secrets join once the policy is read
    redaction.log_uncaught()
    return settings


def _reflowed(command: Callable[..., None]) -> Callable[..., None]:
    """The help as paragraphs the terminal wraps to its width (typer keeps a docstring's line breaks as they are)."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    command.__doc__ = "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)
    return command


@contextmanager
def _deps(acting: bool) -> Iterator[Deps]:
    """Deps for one command, or one line saying what is wrong (exit 2)."""
    settings = _settings()
    try:
        with offline_deps(settings, os.environ, CLOCK, acting=acting) as deps:
            redaction.install(deps.redactor)
            yield deps
    except (SettingsError, PolicyError) as error:
        fail(str(error))
    except SQLAlchemyError as error:
        # The type alone: a driver's message is no place to risk quoting the URL.
        what = "cannot reach the database" if unreachable(error) else "the database refused a statement"
        fail(f"DATABASE_URL: {what} ({type(error).__name__})")


def _run(deps: Deps, work: Callable[[], T]) -> T:
    try:
        return work()
    except offline.NoSuchRequest as missing:
        fail(f"{missing}; `breakglass grants` lists the live ones")
    except offline.NotRevoked as refused:
        fail(views.plain(deps.redactor.scrub(str(refused))), code=1)  # a backend's words may span lines


@cli.command()
@_reflowed
def grants(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
    resource: str | None = typer.Option(None, "--resource", "-r", metavar="NAME", help="Only this resource."),
    live: bool = typer.Option(False, "--live", help="Only grants that hold (or may hold) access."),
    waiting: bool = typer.Option(False, "--waiting", help="Only requests waiting for approval or for their grant."),
) -> None:
    """A table of live grants and of requests waiting, without Slack.

    Live: granting, active, revoking, revoke_failed; waiting: pending, approved. Oldest first: id, what, who asked
    (Slack id and name), principal, state, asked, granted and expires (UTC, and how long ago or from now),
    emergency.

    With --json, each request is an object with exactly these keys (null when unknown): id, resource, level, label,
    state, emergency, requester_id, requester_name, principal, reason, created_at, granted_at, expires_at (times
    ISO 8601 with their UTC offset).

    Example: breakglass grants --resource orders-db --live
    """
    states = (offline.LIVE if live else ()) + (offline.WAITING if waiting else ())
    with _deps(acting=False) as deps:
        found = _run(deps, lambda: offline.board_of(deps, states or (*offline.LIVE, *offline.WAITING), resource))
        now = deps.now()
    if as_json:
        typer.echo(views.grants_json(found))
    elif not found:
        typer.echo("No live grants and no requests waiting" + (f" for {views.plain(resource)}." if resource else "."))
    else:
        views.console().print(views.grants_table(found, now))


@cli.command()
@_reflowed
def show(
    request_id: int = typer.Argument(..., metavar="ID", min=1, max=2**31 - 1, help="The request's number."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the page."),
    activity: int = typer.Option(50, "--activity", min=0, metavar="N", help="Show the last N captured actions."),
) -> None:
    """Everything about one request: fields, decisions, timeline, activity, review.

    The timeline is every audit event of the request in order (action, actor, time, details, with secrets blanked);
    the activity is what the grant's principal did on the backend, as captured; the Slack messages it still owes are
    counted.

    With --json: an object with keys request, decisions, timeline, activity (watching, seen, kept), review and
    slack_owed.

    Example: breakglass show 42
    """
    with _deps(acting=False) as deps:
        found = _run(deps, lambda: offline.dossier(deps, request_id))
        now = deps.now()
    if as_json:
        typer.echo(views.show_json(found))
    else:
        views.console().print(views.show_page(found, now, activity))


@cli.command()
@_reflowed
def revoke(
    request_id: int = typer.Argument(..., metavar="ID", min=1, max=2**31 - 1, help="The request's number."),
    reason: str = typer.Option(..., "--reason", metavar="TEXT", help="Why, for the audit trail. Required."),
    operator: str | None = typer.Option(
        None, "--as", metavar="NAME", help="Who you are, if not your login name; recorded as cli:NAME."
    ),
) -> None:
    """End an active grant now, exactly as the bot would, and record you as who did it.

    The backend is told and asked to confirm, the request ends revoked, the audit trail names you (cli:NAME), a
    review is owed where the policy says so, and the messages for the requester, the request's thread and the
    audit channel wait in the outbox until the bot sends them.

    Pending and ending requests are not touched: the command says where they stand (exit 1). A revoke the backend
    does not confirm is left to the bot to retry (exit 1).

    Example: breakglass revoke 42 --reason "INC-123: Slack down, laptop lost"
    """
    actor = ACTOR_PREFIX + _operator(operator)
    why = " ".join(clean(reason).split())
    if not why:
        fail("--reason: say why; it goes into the audit trail")
    if len(why) > MAX_REASON:
        fail(f"--reason: too long ({len(why)} characters; at most {MAX_REASON})")
    with _deps(acting=True) as deps:
        ended = _run(deps, lambda: offline.revoke(deps, request_id, actor, why))
        owed = _run(deps, lambda: offline.dossier(deps, request_id)).owed
    typer.echo(
        f"Revoked request #{ended.id} ({views.plain(ended.label)}) of "
        f"{views.person(ended.requester_id, ended.requester_name)} as {actor}; the backend confirmed it."
    )
    if owed:
        typer.echo(f"{owed} Slack message(s) wait in the outbox; the bot sends them once it runs and Slack answers.")


def _operator(given: str | None) -> str:
    if given is None:
        try:
            given = getpass.getuser()
        except (OSError, KeyError):  # no login name in the environment or the password database
            fail("--as: your login name cannot be found; say who you are with --as NAME")
        option = "your login name"
    else:
        option = "--as"
    if not OPERATOR.fullmatch(given):
        fail(f"{option} '{views.plain(given, 40)}': expected letters, digits and . _ @ - (at most 28); use --as NAME")
    return given
