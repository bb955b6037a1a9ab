"""Builds the running bot from settings: database, policy, adapters, Slack, services, scheduler."""

from __future__ import annotations

import contextlib
import logging
import socket as stdlib_socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from slack_bolt import App
from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

from bot.adapters import registry
from bot.clock import Clock, SystemClock
from bot.metrics import PrometheusMetrics
from bot.oncall.settings import connect as connect_oncall
from bot.policy import Policy, parse_policy
from bot.policy.loading import read_policy_text
from bot.redaction import collect as collect_secrets
from bot.scheduler import Scheduler
from bot.services import activity, heartbeat, leases
from bot.services.deps import Deps, Tuning, instance_name
from bot.services.drill_schedule import DrillScheduler
from bot.services.oncall import OnCallDesk
from bot.services.policy_book import Loaded, PolicyBook, close_adapters, version_of
from bot.services.policy_reload import POLL_EVERY, Reloader
from bot.services.ports import Metrics
from bot.services.reconcile import Reconciler
from bot.services.streaming import Shipper
from bot.services.sweep import Sweeper
from bot.settings import Settings, SettingsError
from bot.sinks import build_all as build_sinks
from bot.slack.after_ack import AfterAck
from bot.slack.app import DEFAULT_API_URL, build_app, home_from, web_client
from bot.slack.directory import SlackDirectory
from bot.slack.home_refresh import HomeRefresher
from bot.slack.link import SlackLink, TokenRefused
from bot.slack.metered import metered
from bot.slack.notifier import SlackNotifier
from bot.store import outbox, policy_versions, queries, schema
from bot.store.chain import AuditSeal, ChainError, check_head
from bot.store.db import Database
from bot.web import WebApp

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger("breakglass")


@dataclass
class Runtime:
    settings: Settings
    deps: Deps
    app: App
    web: WebApp
    sweeper: Sweeper
    scheduler: Scheduler
    _server: BaseWSGIServer | None = field(default=None, repr=False)
    _server_thread: threading.Thread | None = field(default=None, repr=False)
    slack_link: SlackLink | None = field(default=None, repr=False)
    # Reloads the policy file on SIGHUP and when it changes; None when the policy was handed over, not read.
    reloader: Reloader | None = field(default=None, repr=False)
    shipper: Shipper | None = field(default=None, repr=False)  # the policy's audit_sinks, when it names any
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # for what a reloaded policy builds
    _socket: SocketModeHandler | None = field(default=None, repr=False)  # Slack's requests in Socket Mode
    after_ack: AfterAck = field(default_factory=AfterAck, repr=False)  # what listeners do once they have acked

    def start_alarms(self) -> None:
        """Take back claims left by an earlier life of this replica (same BREAKGLASS_INSTANCE), set an alarm for
        everything due before the periodic sweep sets the next ones, and start sweeping."""
        now = self.deps.now()
        taken_back = leases.release(self.deps.db, self.deps.tuning.instance, now)
        if taken_back:
            log.warning("took back %s claims this replica held before it stopped", taken_back)
        # Registered before the first sweep claims anything: a claim whose holder has no heartbeat row waits for its
        # lease. The first beat also sets alarms for the claims of a dead predecessor (a restart under a new pid).
        heartbeat.beat(self.deps)
        with self.deps.db.transaction() as session:  # not all: 100,000 grants would be as many jobs held in memory
            upcoming = queries.upcoming_times(session, now, until=now + self.sweeper.lookahead)
        self.scheduler.start(upcoming)
        # Every replica asks each sweep interval whether reconciliation is due; one of them runs it per period.
        self.scheduler.every("reconcile", self.settings.sweep_interval, Reconciler(self.deps).tick)
        # Every replica looks for watched grants due a read; the compare-and-set on each makes the per-grant period.
        self.scheduler.every("activity", activity.READ_TICK.total_seconds(), partial(activity.read_due, self.deps))
        if self.reloader is not None:  # the file's text is hashed every few seconds; the same text is no reload
            self.scheduler.every("policy-reload", POLL_EVERY, self.reloader.poll)
            self.reloader.start()
        # Every replica asks; each drill runs once per period (services/drill_schedule.py). Registered even with no
        # drills: the tick reads the policy in force, so a reload that adds one schedules it.
        self.scheduler.every("drills", self.settings.sweep_interval, DrillScheduler(self.deps).tick)
        if self.shipper is not None:  # a thread per sink, never on a request's path (services/streaming.py)
            self.shipper.start()

    def follow_sinks(self, old: Policy, new: Policy) -> None:
        """A reload that changed ``audit_sinks``: the old shipper hands back its holds, the new one starts where each
        sink's cursor is (a sink kept under its name resumes; a new name starts at the beginning of the chain)."""
        if [s.model_dump() for s in old.audit_sinks] == [s.model_dump() for s in new.audit_sinks]:
            return
        if self.shipper is not None:
            self.shipper.stop()
            self.shipper = None
        sinks = build_sinks(new, self.environ)
        if sinks:
            self.shipper = Shipper(self.deps, sinks, courier=self.sweeper.delivery)
            self.shipper.start()
        log.info("audit sinks now: %s", ", ".join(sink.name for sink in sinks) or "none")

    def beat(self) -> None:
        heartbeat.beat(self.deps)

    def renew_claims(self) -> None:
        deps = self.deps
        deps.leases.renew(deps.db, deps.tuning.instance, deps.now(), deps.tuning.lease)

    def serve_http(self, host: str = "0.0.0.0", port: int | None = None, block: bool = True) -> int:
        """Serve /slack/events (not in Socket Mode), /healthz and /metrics. Returns the port (useful with port 0)."""
        server = create_server(self.web, host=host, port=self.settings.port if port is None else port, threads=8)
        assert isinstance(server, BaseWSGIServer), "one host and port make a single-socket server"
        self._server = server
        bound = int(server.effective_port)  # type: ignore[attr-defined]  # set by waitress, missing from its stubs
        if block:
            server.run()
        else:
            self._server_thread = threading.Thread(target=server.run, name="http", daemon=True)
            self._server_thread.start()
        return bound

    def connect_socket(self, app_token: str) -> None:
        """Take Slack's requests over Socket Mode (``apps.connections.open`` with the app-level token, then a
        WebSocket the SDK keeps open and reconnects); returns once connected. ``stop`` closes it."""
        from slack_bolt.adapter.socket_mode import SocketModeHandler  # only Socket Mode pays for the import

        handler = SocketModeHandler(self.app, app_token)
        handler.connect()
        self._socket = handler

    def stop(self, grace: float | None = None) -> None:
        """Stop taking requests and starting work; give what is in flight ``grace`` seconds in all
        (``BREAKGLASS_STOP_GRACE``); hand back the claims still held; close connections. Idempotent."""
        deadline = time.monotonic() + (self.settings.stop_grace if grace is None else grace)

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        socket, self._socket = self._socket, None
        if socket is not None:  # first, like the HTTP server below: no new request reaches the bot
            _end_read(socket)
            socket.close()
        server, self._server = self._server, None
        if server is not None:
            server.task_dispatcher.shutdown(timeout=left())  # type: ignore[arg-type]  # seconds, int in its stubs
            # Sockets are closed by the server's own loop thread (through its trigger): closing them from here
            # would pull them out from under its select().
            # types-waitress has ``trigger`` as an int and no ``_map``: both are waitress's own, as used here.
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))  # type: ignore[attr-defined]
        if self._server_thread is not None and self._server_thread is not threading.current_thread():
            self._server_thread.join(timeout=left())
            self._server_thread = None
        if not self.after_ack.close(left()):  # commands and clicks already acknowledged may finish
            log.warning("stopping with work unfinished that followed an acknowledgement")
        if self.reloader is not None:  # first: a reload finishing later would start sinks we are about to stop
            self.reloader.stop()
        # Beating on while calls in flight finish: a silent heartbeat would let another replica take them over and
        # repeat them beside us.
        self.scheduler.stop_sweeping(left())
        still_running = self.sweeper.close(left())
        if still_running:
            log.warning("stopping with %s backend calls unfinished; their claims go back", len(still_running))
        if self.shipper is not None:  # a send in flight may finish; the sinks' holds go back
            self.shipper.stop(left())
        # Hand back whatever we still hold, so another replica (or our restart) need not wait for leases to end.
        handed_back = leases.release(self.deps.db, self.deps.tuning.instance, self.deps.now())
        if handed_back:
            log.info("handed back %s claims", handed_back)
        with self.deps.db.transaction() as session:  # still owed, and still in doubt: the next sender looks first
            outbox.release(session, self.deps.tuning.instance)
        self.scheduler.shutdown(wait=True)
        heartbeat.forget(self.deps)  # after the last beat: nothing of ours is left to watch
        if isinstance(self.deps.homes, HomeRefresher):  # a page being published may finish; the rest are dropped
            self.deps.homes.close(left())
        close_adapters(self.deps.adapters)
        if self.deps.book is not None:  # the versions live grants were still using
            self.deps.book.close(keep=self.deps.version)
        if self.slack_link is not None:
            self.slack_link.stop()
        self.deps.db.dispose()


def build(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    clock: Clock | None = None,
    policy: Policy | None = None,
    tuning: Tuning | None = None,
) -> Runtime:
    settings.require_slack()
    audit_key, retired_keys = settings.audit_keys()
    policy_text: str | None = None
    if policy is None:
        policy_text = read_policy_text(settings.policy_path)
        policy = parse_policy(policy_text, source=str(settings.policy_path))
    adapters = registry.build_all(policy, environ)
    sinks = build_sinks(policy, environ)  # a webhook key missing is a policy error, said at start
    db = Database.from_url(settings.database_url, AuditSeal(audit_key, retired_keys))
    if settings.auto_migrate:
        schema.upgrade(db.engine)
    try:
        check_head(db.engine, db.seal)  # a key rotated without keeping the old one fails here, not at the first event
    except ChainError as error:
        raise SettingsError(f"BREAKGLASS_AUDIT_KEY: {error}") from None
    clock = clock or SystemClock()
    book, version = PolicyBook(db, environ), None
    if policy_text is not None:  # kept by version, so grants made under it are revoked as it says after a reload
        version = version_of(policy_text)
        with db.transaction() as session:
            policy_versions.remember(session, version, policy_text, clock.now())
        book.add(Loaded(version, policy, adapters))
    assert settings.slack_bot_token is not None
    metrics = PrometheusMetrics()  # a registry per runtime: several bots in one process (tests) keep theirs apart
    after_ack = AfterAck()  # post-ack work pauses at each transaction and Slack call while acks are being made
    give_way = after_ack.acks_first.give_way
    client = web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url, metrics, give_way)
    tuning = tuning or Tuning(
        instance=settings.instance or instance_name(),
        lease=settings.lease,
        call_timeout=settings.backend_timeout,
        lane_width=settings.backend_concurrency,
        expiry_warning=settings.expiry_warning,
        revoke_alert_after=settings.revoke_alert_after,
        refusals_alert=settings.refusals_alert,
        requests_per_hour=settings.requests_per_hour,
        actions_per_minute=settings.actions_per_minute,
        reconcile_every=settings.reconcile_every,
    )
    deps = Deps(
        db=db,
        policy=policy,
        adapters=adapters,
        notifier=SlackNotifier(client),
        directory=SlackDirectory(client, clock),
        clock=clock,
        tuning=tuning,
        redactor=collect_secrets(settings, adapters, policy, environ),
        version=version,
        book=book,
        metrics=metrics,
    )
    metrics.watch(deps)
    deps.homes = HomeRefresher(deps, client)  # Home tabs are published from a thread of their own
    if policy.oncall is not None:
        try:
            service = connect_oncall(policy.oncall, environ)
        except ValueError as error:  # names the variable that is missing, never a value
            raise SettingsError(str(error)) from None
        deps.oncall = OnCallDesk(service, deps.directory, clock)
    sweeper = Sweeper(deps, lookahead=timedelta(seconds=2 * settings.sweep_interval))
    deps.courier = sweeper.courier  # a person's thread sends what its action owes; background work hands it over
    scheduler = Scheduler(
        sweeper.kick,
        settings.sweep_interval,
        renew_every=tuning.lease.total_seconds() / 3,
        beat_every=tuning.heartbeat.total_seconds(),
        tick=sweeper.tick,
    )
    deps.alarms = scheduler
    secret = None if settings.socket_mode else settings.slack_signing_secret
    link = slack_link(settings, metrics)
    deps.db.before_each = give_way
    app = build_app(client, secret.get_secret_value() if secret else None, deps, link, after_ack, give_way)
    web = WebApp(
        app,
        deps,
        secret.get_secret_value() if secret else None,
        slack=link,
        metrics=metrics.page,
        events=not settings.socket_mode,  # Slack's requests come over the socket; HTTP serves health and metrics
        acks_first=after_ack.acks_first,
    )
    running = Runtime(
        settings, deps, app, web, sweeper, scheduler, slack_link=link, environ=environ, after_ack=after_ack
    )
    if policy_text is not None:
        running.reloader = Reloader(deps, settings.policy_path, environ)
        running.reloader.followers.append(running.follow_sinks)
    if sinks:  # an alert about a sink is handed to the delivery thread: a sink's thread never waits on Slack
        running.shipper = Shipper(deps, sinks, courier=sweeper.delivery)
    scheduler.renew = running.renew_claims
    scheduler.beat = running.beat
    return running


def slack_link(settings: Settings, metrics: Metrics | None = None) -> SlackLink:
    """Check the bot token with Slack and keep checking in the background. A token Slack refuses stops start-up; a
    Slack that cannot be reached does not (one log line), so revokes go on during a Slack outage."""
    assert settings.slack_bot_token is not None
    configured = home_from(settings.slack_team_id, settings.slack_enterprise_id)
    link = SlackLink.for_token(
        settings.slack_bot_token.get_secret_value(), settings.slack_api_url or DEFAULT_API_URL, configured
    )
    if metrics is not None:  # its auth.test calls are Slack calls too
        link.client = metered(link.client, metrics)
    try:
        link.connect()
    except TokenRefused as refused:
        raise SettingsError(
            f"SLACK_BOT_TOKEN: Slack refused the token ({refused}); expected the bot token of an installed app"
        ) from None
    link.start()
    return link


def _end_read(handler: SocketModeHandler) -> None:
    """slack_sdk closes its WebSocket only between reads, and a read waits up to three seconds for a frame: a bot
    stopping in a quiet moment would wait those out. Shut the socket down first (no reconnecting from here on), so the
    read returns at once and the close that follows finds nothing to wait for."""
    client = handler.client
    client.closed = True
    client.auto_reconnect_enabled = False
    raw = getattr(client.current_session, "sock", None)
    if raw is not None:
        with contextlib.suppress(OSError):  # already closed by Slack's side: nothing to hurry
            raw.shutdown(stdlib_socket.SHUT_RDWR)
