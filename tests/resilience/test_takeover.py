"""A dead replica is known dead within seconds, with default settings: real `breakglass serve` processes, killed
with SIGKILL in the middle of a grant and of a revoke, and either restarted (a new pid, so a new name) or survived by
a second replica. Every claim the dead process held is taken over because its heartbeat stopped, never earlier than
"dead after" past its last beat and without waiting for the 30 s lease; the backend hears the work once more at
most (the call the dead process had in flight), and every request settles.

The wall-time figures (takeover within sweep interval + 5 s on a restart, within 10 s by a survivor) are measured
by bench/takeover.py; here the mechanism is checked on the bots' own clocks, and the times are only printed.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.store import models
from bot.store.models import AuditEvent, Request
from tests.resilience.harness import Fleet, fleet, kill_mid_call

# The bot's defaults for everything takeover depends on: only what the harness needs stays set (ports, names).
DEFAULTS: dict[str, str | None] = {
    "BREAKGLASS_SWEEP_INTERVAL": None,
    "BREAKGLASS_LEASE": None,
    "BREAKGLASS_BACKEND_TIMEOUT": None,
    "BREAKGLASS_EXPIRY_WARNING": None,
}
NEW_NAME_EACH_START = {**DEFAULTS, "BREAKGLASS_INSTANCE": None}  # named by host and pid, as without configuration
TUNING = Tuning()


def check_taken_over(running: Fleet, left: Request, last_seen: datetime, step: str) -> AuditEvent:
    """The request settled after one takeover of the dead holder's claim, by heartbeat, no sooner than the holder
    counted as dead; and the backend heard the step at most twice (the dead process's call, then ours)."""
    settled = running.wait_until_settled(timeout=60)
    assert [r.status for r in settled] == ([Status.EXPIRED] if step == "grant" else [Status.REVOKED])
    [taken] = [e for e in running.audit() if e.action == "claim_taken_over"]
    assert taken.detail["previous"] == left.claimed_by and taken.detail["replica"] != left.claimed_by
    assert taken.detail["because"] == "heartbeat", "taken over on the heartbeat, not after the 30 s lease"
    assert taken.detail["last_seen"] == last_seen.isoformat()
    assert taken.at >= last_seen + TUNING.dead_after, "taken over before the holder counted as dead"
    assert left.lease_until is not None and taken.at < left.lease_until
    heard = Counter(call.event for call in running.backend.calls if call.event in ("grant", "revoke"))
    if step == "grant":  # granted again if time remained at the takeover, else undone; revoked in the end either way
        assert 1 <= heard["grant"] <= 2 and heard["revoke"] >= 1, heard
    else:
        assert heard["revoke"] == 2, heard
    return taken


@pytest.mark.parametrize("step", ["grant", "revoke"])
def test_a_restart_under_a_new_pid_takes_over_the_dead_process_claims(
    database_url: str, tmp_path: Path, step: str
) -> None:
    with fleet(database_url, tmp_path) as running:
        bot = running.start(running.replica("solo", settings=NEW_NAME_EACH_START))
        left, last_seen, killed_at = kill_mid_call(running, bot, step)
        running.start(bot)
        taken = check_taken_over(running, left, last_seen, step)
    after = (taken.at - killed_at).total_seconds()
    print(f"\nrestart after kill -9 mid-{step}: taken over {after:.1f} s after the kill")


@pytest.mark.postgres
@pytest.mark.parametrize("step", ["grant", "revoke"])
def test_the_survivor_takes_over_the_dead_replica_claims(postgres_url: str, tmp_path: Path, step: str) -> None:
    with fleet(postgres_url, tmp_path) as running:
        doomed = running.start(running.replica("replica-a", settings=DEFAULTS))
        survivor = running.start(running.replica("replica-b", settings=DEFAULTS))
        left, last_seen, killed_at = kill_mid_call(running, doomed, step)
        assert left.claimed_by == doomed.name
        taken = check_taken_over(running, left, last_seen, step)
        assert taken.detail["replica"] == survivor.name
    after = (taken.at - killed_at).total_seconds()
    print(f"\nsurvivor after kill -9 mid-{step}: taken over {after:.1f} s after the kill")


def test_a_clean_stop_leaves_no_heartbeat(database_url: str, tmp_path: Path) -> None:
    with fleet(database_url, tmp_path) as running:
        bot = running.start(running.replica("solo", settings=NEW_NAME_EACH_START))
        assert len(heartbeats(running)) == 1
        assert bot.terminate() == 0
        assert heartbeats(running) == []


def heartbeats(running: Fleet) -> list[str]:
    with running.db.transaction() as session:
        return list(session.scalars(select(models.Replica.instance)))
