"""SIGTERM: the bot stops taking work, gives what is in flight a bounded time, and hands back what it claimed, so
the next replica starts on it at once instead of waiting for leases to run out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.store.models import Request
from tests.resilience.harness import LEASE, ON_CALL, POLICY, Fleet, fleet

GRANTS = 8  # twice the lane width: some revokes are in flight at the stop, the rest wait their turn


def test_sigterm_hands_back_claims_and_exits_in_bounded_time(database_url: str, tmp_path: Path) -> None:
    with fleet(database_url, tmp_path) as running:
        # Revokes hang until released, and neither the adapter nor the bot gives up on them first: how busy the
        # machine is cannot end a revoke before the stop finds it in flight.
        running.policy_file.write_text(POLICY.replace("timeout: 5\n", "timeout: 120\n"))
        # A short grace: the revokes in flight hang past any grace, so its length only sets how long the test waits.
        stopping = {"BREAKGLASS_BACKEND_TIMEOUT": "120", "BREAKGLASS_STOP_GRACE": "2"}
        old = running.start(running.replica("old-pod", settings=stopping))
        for user in ON_CALL[:GRANTS]:
            assert running.break_glass(old, "1h", user).status_code == 200
        running.backend.wait_for(lambda calls: sum(c.event == "grant" for c in calls) >= GRANTS)
        running.backend.hang(600)
        with running.db.transaction() as session:  # all due now, however long granting them took
            session.query(Request).update({Request.expires_at: datetime.now(UTC)})
        running.backend.wait_for(lambda calls: sum(c.event == "revoke" for c in calls) >= 4, timeout=60)
        wait_until_all_claimed(running)  # four in flight, four queued behind them

        started = time.monotonic()
        assert old.terminate(timeout=30) == 0
        took = time.monotonic() - started
        stopped_at = datetime.now(UTC)
        with running.db.transaction() as session:
            still_leased = session.query(Request).filter(Request.lease_until > stopped_at).count()
        assert still_leased == 0, "a stopped replica must not keep claims"

        running.backend.release()
        new = running.start(running.replica("new-pod"))
        assert new.ready_at is not None
        running.wait_until_settled()
        taken = [e for e in running.audit() if e.action == "claim_taken_over"]
        # Handed back, so taken at once: nowhere near a lease's wait.
        assert taken, "the revokes still queued at the stop should have been handed over"
        assert all(e.at - new.ready_at < timedelta(seconds=LEASE) for e in taken)
    print(f"\nSIGTERM with {GRANTS} revokes claimed against a hung backend: exited in {took:.1f} s, 0 claims kept")


def wait_until_all_claimed(running: Fleet, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(r.status == "revoking" for r in running.requests()) < GRANTS:
        assert time.monotonic() < deadline, "the expired grants were never all claimed"
        time.sleep(0.05)
