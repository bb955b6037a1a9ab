"""Real `breakglass serve` processes against one database, a Slack stand-in and a webhook backend on loopback.

The stand-in and the backend live in the test process, so they outlive every bot process the tests kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy import select

from bot.devtools.local_bot import BOT_TOKEN, GROUPS, PEOPLE, SIGNING_SECRET
from bot.devtools.ports import free_port
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookCall, WebhookReceiver
from bot.domain.states import FINAL, Status
from bot.store import replicas
from bot.store.db import Database
from bot.store.models import AuditEvent, Request

WEBHOOK_SECRET = "webhook-secret-for-resilience-0123456789"
AUDIT_KEY = "audit-key-for-resilience-0123456789abcdef"  # every replica seals with it
SWEEP_INTERVAL = 1.0  # seconds, for every bot process here
LEASE = 3  # seconds

POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 1s
  default_duration: 3s
  max_duration: 1h
review:
  required: emergency
  remind_every: 24h
resources:
  orders-db:
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 5
    approvers: [S0SRELEADS]
    emergency: true
    requesters: [S0ONCALL, U0OPS1, U0OPS2, U0OPS3, U0OPS4, U0OPS5, U0OPS6, U0OPS7, U0OPS8]
"""
# People who break the glass side by side: each holds one grant, as a person holds one live grant per resource.
ON_CALL = [f"U0OPS{n}" for n in range(1, 9)]
PEOPLE_ON_CALL = {
    **PEOPLE,
    **{user: {"name": user.lower(), "real_name": user, "email": f"{user.lower()}@example.com"} for user in ON_CALL},
}


def wall_time(call: WebhookCall) -> datetime:
    """A receiver call's arrival on the wall clock (the receiver records time.monotonic())."""
    return datetime.fromtimestamp(time.time() - time.monotonic() + call.received_at, UTC)


@dataclass
class Replica:
    """One `breakglass serve` process."""

    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    ready_at: datetime | None = None
    # Settings of this replica that differ from the fleet's; None removes one, leaving the bot's default.
    settings: dict[str, str | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> datetime:
        """SIGKILL: no clean-up of any kind, as when a machine dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        return datetime.now(UTC)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code


@dataclass
class Fleet:
    database_url: str
    folder: Path
    slack: SlackStandIn
    backend: WebhookReceiver
    replicas: list[Replica] = field(default_factory=list)
    _names: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def __post_init__(self) -> None:
        self.policy_file = self.folder / "breakglass.yml"
        self.policy_file.write_text(POLICY)
        self.db = Database.from_url(self.database_url)

    def environ(self, replica: Replica) -> dict[str, str]:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BREAKGLASS_"))},
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack.api_url,
            "DATABASE_URL": self.database_url,
            "BREAKGLASS_POLICY": str(self.policy_file),
            "PORT": str(replica.port),
            "BREAKGLASS_INSTANCE": replica.name,
            "BREAKGLASS_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "BREAKGLASS_LEASE": f"{LEASE}s",
            "BREAKGLASS_BACKEND_TIMEOUT": "4",
            "BREAKGLASS_EXPIRY_WARNING": "1s",
            "BREAKGLASS_LOG_LEVEL": "INFO",
            "WEBHOOK_URL": self.backend.url,
            "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PYTHONUNBUFFERED": "1",
            "BREAKGLASS_AUDIT_KEY": AUDIT_KEY,
        }
        for name, value in replica.settings.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        return environ

    def replica(self, name: str | None = None, settings: dict[str, str | None] | None = None) -> Replica:
        name = name or f"replica-{next(self._names)}"
        replica = Replica(name, free_port(), self.folder / f"{name}.log", settings=dict(settings or {}))
        self.replicas.append(replica)
        return replica

    def start(self, replica: Replica, timeout: float = 60) -> Replica:  # returns once healthy
        """Start (or restart) a replica and wait until it answers /healthz."""
        replica.port = free_port()
        with replica.log.open("ab") as log:
            replica.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve"],
                env=self.environ(replica),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica.process.poll() is not None:
                raise RuntimeError(f"{replica.name} exited at start:\n{replica.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{replica.url}/healthz", timeout=1).status_code == 200:
                    replica.ready_at = datetime.now(UTC)
                    return replica
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{replica.name} did not become healthy:\n{replica.log.read_text()[-3000:]}")

    def leaked_secrets(self) -> list[str]:
        """Which configured secrets appear in any replica's output (by name and log file, never the value)."""
        if not self.replicas:
            return []
        secrets = {
            name: value
            for name, value in self.environ(self.replicas[0]).items()
            if name.startswith(("SLACK_", "BREAKGLASS_")) and any(w in name for w in ("TOKEN", "SECRET", "KEY"))
        }
        logs = {r.log.name: r.log.read_text(errors="replace") for r in self.replicas if r.log.exists()}
        return [f"{name} in {log}" for name, value in secrets.items() for log, text in logs.items() if value in text]

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.process is not None:
                replica.kill()
        self.db.dispose()

    # -- people ---------------------------------------------------------------------------------------------------

    def break_glass(self, replica: Replica, duration: str, user: str = "U0BOB") -> requests.Response:
        sender = SlackSender(replica.url, SIGNING_SECRET)
        return sender.command(
            f"orders-db {duration} INC-4211 checkout failing --emergency",
            user_id=user,
            user_name=PEOPLE_ON_CALL[user]["name"],
            channel_id="C0INCIDENT",
            response_url=self.slack.response_url(f"cmd-{time.monotonic_ns()}"),
        )

    # -- what the database says -----------------------------------------------------------------------------------

    def requests(self) -> list[Request]:
        with self.db.transaction() as session:
            rows = session.scalars(select(Request).order_by(Request.id)).all()
            session.expunge_all()
            return list(rows)

    def audit(self) -> list[AuditEvent]:
        with self.db.transaction() as session:
            rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
            session.expunge_all()
            return list(rows)

    def wait_until_settled(self, timeout: float = 60) -> list[Request]:  # returns once every request is final
        """Every request in a final state; the rows then."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.requests()
            if rows and all(Status(r.status) in FINAL for r in rows):
                return rows
            if time.monotonic() > deadline:
                open_rows = [(r.id, r.status, r.claimed_by) for r in rows if Status(r.status) not in FINAL]
                raise TimeoutError(f"requests still open after {timeout}s: {open_rows}")
            time.sleep(0.1)


@contextmanager
def fleet(database_url: str, folder: Path) -> Iterator[Fleet]:
    with (
        SlackStandIn(token=BOT_TOKEN, users=PEOPLE_ON_CALL, groups=GROUPS) as slack,
        WebhookReceiver(WEBHOOK_SECRET) as backend,
    ):
        running = Fleet(database_url, folder, slack, backend)
        try:
            yield running
        finally:
            running.stop_all()
        leaks = running.leaked_secrets()
        assert not leaks, f"secrets in the bot's output: {'; '.join(leaks)}"


# -- killing a replica in the middle of a backend call -------------------------------------------------------------

IN_FLIGHT = 4.0  # seconds the backend takes to answer the call the kill interrupts


def revoke(running: Fleet, replica: Replica, request_id: int) -> requests.Response:
    return SlackSender(replica.url, SIGNING_SECRET).command(
        f"revoke {request_id}",
        user_id="U0BOB",
        user_name=PEOPLE["U0BOB"]["name"],
        channel_id="C0INCIDENT",
        response_url=running.slack.response_url(f"revoke-{time.monotonic_ns()}"),
    )


def only_request(running: Fleet) -> Request:
    [request] = running.requests()
    return request


def wait_for_status(running: Fleet, status: Status, timeout: float = 30) -> Request:
    deadline = time.monotonic() + timeout
    while True:
        rows = running.requests()
        if rows and rows[0].status == status:
            return rows[0]
        assert time.monotonic() < deadline, f"still {[r.status for r in rows]}, not {status}"
        time.sleep(0.05)


def kill_mid_call(running: Fleet, holder: Replica, step: str) -> tuple[Request, datetime, datetime]:
    """Start a grant or a revoke on ``holder`` and SIGKILL it while the backend works on the call. Returns the row as
    the dead process left it, its last heartbeat and the moment of the kill."""
    if step == "grant":
        running.backend.respond_with(delay=IN_FLIGHT)
        assert running.break_glass(holder, "20s").status_code == 200
    else:
        assert running.break_glass(holder, "1h").status_code == 200
        wait_for_status(running, Status.ACTIVE)
        running.backend.respond_with(delay=IN_FLIGHT)
        assert revoke(running, holder, only_request(running).id).status_code == 200
    running.backend.wait_for(lambda calls: any(call.event == step for call in calls), timeout=15)
    killed_at = holder.kill()
    running.backend.respond_with(delay=0)
    left = only_request(running)
    assert left.status == (Status.GRANTING if step == "grant" else Status.REVOKING)
    with running.db.transaction() as session:
        last_seen = replicas.last_seen(session, left.claimed_by)
    assert last_seen is not None, "the dead holder had written its heartbeat"
    return left, last_seen, killed_at
