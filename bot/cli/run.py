"""Running the bot and checking its set-up: `serve`, `check`, `demo`, `db upgrade`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import typer

from bot import redaction
from bot.cli.app import _settings, cli, db_cli, fail, logging_for
from bot.policy import Policy, PolicyError, Resource, load_policy
from bot.settings import SettingsError, load_leniently


@cli.command()
def serve() -> None:
    """Run the bot: HTTP on $PORT (/slack/events, /healthz, /metrics), or Socket Mode when SLACK_APP_TOKEN is set
    (then $PORT serves only /healthz and /metrics)."""
    settings = _settings()  # a wrong setting is one line before the slower imports
    from bot import runtime
    from bot.store.reachability import unreachable

    try:
        running = runtime.build(settings, os.environ)
    except (SettingsError, PolicyError) as error:
        fail(str(error))
    except Exception as error:
        if not unreachable(error):
            raise
        # Once running, the bot rides out an outage; at start it cannot even check its schema. A supervisor's
        # restart is the retry. The type alone: a driver's message is no place to risk quoting the URL.
        fail(f"DATABASE_URL: cannot reach the database ({type(error).__name__}); start again once it answers", 1)
    redaction.install(running.deps.redactor)
    running.start_alarms()
    signal.signal(signal.SIGTERM, lambda *_: running.stop())
    if running.reloader is not None:  # the handler only sets an event; the reload runs on the reloader's thread
        signal.signal(signal.SIGHUP, lambda *_: running.reloader.want() if running.reloader else None)
    try:
        if settings.socket_mode:
            assert settings.slack_app_token is not None
            _socket_mode(running, settings.slack_app_token.get_secret_value(), settings.port)
        else:
            logging.getLogger("breakglass").info("listening on port %s", settings.port)
            running.serve_http()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


def _socket_mode(running: Any, app_token: str, port: int) -> None:
    """Slack's requests over the socket; health checks and scrapes over HTTP on ``port``. Returns on SIGTERM (the
    caller's ``running.stop()`` closes the socket): the socket handler's own ``start()`` waits forever, so a stop
    would never reach the caller's clean-up. The tests' harness connects through the same ``connect_socket``."""
    running.serve_http(block=False)
    logging.getLogger("breakglass").info("Socket Mode; /healthz and /metrics on port %s", port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    running.connect_socket(app_token)
    stopping.wait()


@cli.command()
def check() -> None:
    """Check settings, the policy file and every adapter's configuration; exit 1 if anything is wrong."""
    from bot.adapters import registry
    from bot.policy.sinks import secret_problems
    from bot.store.probe import database_problems

    # Every problem in one run: a wrong setting is listed and its default stands in, so the rest is still checked.
    settings, problems, wrong = load_leniently()
    logging_for(settings)
    if not wrong & {"BREAKGLASS_AUDIT_KEY", "BREAKGLASS_AUDIT_PREVIOUS_KEYS"}:
        try:
            settings.audit_keys()
        except SettingsError as error:
            problems.append(str(error))
    if "DATABASE_URL" not in wrong:  # the default would be checked in its place
        problems += database_problems(settings.database_url, settings.auto_migrate)
    problems += settings.slack_problems()
    try:
        policy = load_policy(settings.policy_path)
    except PolicyError as error:
        _report([*problems, str(error)], redaction.collect(settings))
        return
    built: dict[str, Any] = {}
    for resource in policy.grantables():  # each level is an adapter of its own
        try:
            built[resource.label] = registry.build(resource.adapter, resource.params, _where(resource), os.environ)
        except PolicyError as error:
            built[resource.label] = error
    adapters = {name: adapter for name, adapter in built.items() if not isinstance(adapter, PolicyError)}
    # A backend's error may quote a credential (its own or another's): every line printed is scrubbed.
    redactor = redaction.collect(settings, adapters, policy, os.environ)
    redaction.install(redactor)
    for resource in policy.grantables():
        adapter = built[resource.label]
        if isinstance(adapter, PolicyError):
            problems.append(str(adapter))
        else:
            problems += [f"{_where(resource)}: {problem}" for problem in _check_adapter(adapter, resource)]
    problems += _check_oncall(policy)
    problems += secret_problems(policy.audit_sinks, os.environ)  # each audit webhook's key is set
    _report(problems, redactor)
    typer.echo(f"OK: {settings.policy_path} has {len(policy.resources)} resource(s); every adapter is configured.")


def _report(problems: list[str], redactor: redaction.Redactor) -> None:
    """Every problem, one a line (exit 1); nothing when there is none."""
    if not problems:
        return
    typer.echo(f"{len(problems)} problem(s):")
    for problem in problems:
        typer.echo(f"  - {redactor.scrub(problem)}")
    raise typer.Exit(1)


def _check_oncall(policy: Policy) -> list[str]:
    """The on-call service: its keys are set, and it answers for every schedule the policy names."""
    from bot.oncall.base import OnCallUnavailable
    from bot.oncall.settings import connect

    if policy.oncall is None:
        return []
    try:
        service = connect(policy.oncall, os.environ)
    except ValueError as error:
        return [str(error)]
    problems = []
    schedules = sorted({r.oncall.schedule for r in policy.grantables() if r.oncall is not None})
    for schedule in schedules:
        try:
            service.on_call(schedule)
        except OnCallUnavailable as error:
            problems.append(f"oncall: schedule {schedule}: {error}")
    return problems


def _where(resource: Resource) -> str:
    where = f"resources.{resource.name}"
    return where if resource.level is None else f"{where}.levels.{resource.level}"


def _check_adapter(adapter: Any, resource: Resource) -> list[str]:
    """The adapter's own check (credentials, reachability, privileges) and the identities the policy lists."""
    try:
        problems = list(adapter.check())
    except Exception as error:  # a buggy check must not hide the other resources' problems
        problems = [f"the adapter's check failed ({type(error).__name__})"]
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()
    judge = getattr(adapter, "principal_problem", None)
    for slack_id, principal in (resource.users or {}).items():
        why = judge(principal) if callable(judge) else None
        if why:
            problems.append(f"users.{slack_id}: '{principal}' cannot be an identity here: {why}")
    return problems


@cli.command()
def demo(
    pace: float = typer.Option(0.0, min=0, help="Seconds to pause between steps, to read along (0 or more)."),
) -> None:
    """Run the whole story locally: no Slack workspace, SQLite, a stand-in Slack API and the log adapter."""
    from bot.demo import run_demo

    sys.exit(run_demo(pace=pace))


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or bring it up to date."""
    from bot.store import schema
    from bot.store.db import make_engine

    settings = _settings()
    try:
        engine = make_engine(settings.database_url)
        schema.upgrade(engine)
    except Exception as error:
        fail(f"DATABASE_URL: cannot upgrade the database ({type(error).__name__})", code=1)
    typer.echo(f"Database at revision {schema.current(engine)}.")
